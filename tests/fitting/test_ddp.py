"""Data-parallel training with 2 CPU processes (torchrun, gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch


def test_two_process_training_keeps_replicas_in_sync(tmp_path) -> None:
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               str(worker), str(tmp_path / "rank")]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert first["world"] == second["world"] == 2
    for key in ("model", "ema"):
        for name, value in first[key].items():
            torch.testing.assert_close(value, second[key][name])
    # The output convolution starts at zero: training moved it, identically on both ranks.
    assert first["model"]["net.conv_out.weight"].abs().sum() > 0
