"""Worker for test_ddp.py: trains a tiny image score model under torchrun (gloo)."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from segqc import noise
from segqc.config import TrainingConfig
from segqc.fitting.device import init_distributed_from_env
from segqc.fitting.trainer import Trainer
from segqc.scoremodels.image import ImageScoreModel


def main(out_prefix: str) -> None:
    torch.set_num_threads(1)
    assert init_distributed_from_env(torch.device("cpu"))
    torch.manual_seed(0)
    model = ImageScoreModel(2, 1, 3, noise.geometric_levels(20, 2, 3), torch.tensor([0.9, 0.45, 0.0]),
                            network={"nf": 8, "ch_mult": [1, 2], "input_size": 8})
    generator = torch.Generator().manual_seed(1)
    images, masks = torch.randn(32, 1, 8, 8, generator=generator), torch.randint(0, 3, (32, 8, 8), generator=generator)
    config = TrainingConfig(steps=20, batch_size=4, val_every=10, device="cpu")
    result = Trainer(model, config).fit((images, masks), (images[:8], masks[:8]))
    torch.save({"model": model.state_dict(), "ema": result.state_dict, "world": dist.get_world_size()},
               f"{out_prefix}{dist.get_rank()}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
