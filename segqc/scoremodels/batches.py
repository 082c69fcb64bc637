"""Running an image score model over many cases in batches whose network passes all have one shape.

Convolution and attention kernels are chosen by shape, so a case's results
would otherwise depend, in the last digits, on how many cases share its batch
(a chunk, a ``torchrun`` shard). :func:`in_batches` therefore gives every batch
``batch_size`` cases and pads the last one with copies of its first case (whose
results are dropped) up to a whole number of passes (:func:`pass_plan`).
Convolutions run in full fp32: with cuDNN's TF32, GPU scores drifted from CPU
scores by about 4 % of their spread. Weights and images are laid out
channels-last, which the CPU convolution kernels run 1.4-1.6 times faster.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from segqc.errors import SchemaError
from segqc.scoremodels.image import pass_plan


def as_pairs(images: Any, masks: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Images float32 ``(N, C, *spatial)`` and masks int64 ``(N, *spatial)`` from array-likes.

    Raises:
        SchemaError: The shapes do not pair up.
    """
    images = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    masks = torch.as_tensor(np.asarray(masks)).long()
    if images.ndim not in (4, 5) or masks.shape != images.shape[:1] + images.shape[2:]:
        raise SchemaError(f"expected images (N, C, *spatial) and masks (N, *spatial) with the same N and spatial "
                          f"shape, got {tuple(images.shape)} and {tuple(masks.shape)}")
    return images, masks


def _padded(batch: torch.Tensor, size: int) -> torch.Tensor:
    """``batch`` with copies of its first row appended up to ``size`` rows."""
    missing = size - len(batch)
    return torch.cat([batch, batch[:1].expand(missing, *batch.shape[1:])]) if missing > 0 else batch


def _laid_out(tensor: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """Images ``(B, C, *spatial)`` in ``layout``; masks (one axis fewer) as they are."""
    return tensor.contiguous(memory_format=layout) if tensor.ndim == (4 if layout == torch.channels_last else 5) \
        else tensor


@torch.inference_mode()
def in_batches(model: nn.Module, run: Callable[..., Any], tensors: tuple[torch.Tensor, ...], batch_size: int,
               device: torch.device) -> list[Any]:
    """``run(model, batch_size, *batch)`` for each batch of ``tensors`` (on ``device``, eval mode, channels-last).

    Args:
        model: The score model (moved to ``device`` and put in eval mode).
        run: What to compute on one batch; returns a tensor or a tuple of tensors with the batch first.
        tensors: Inputs, each ``(N, ...)``; the first is ``(N, C, *spatial)`` images.
        batch_size: Cases per batch.
        device: Where to compute.

    Returns:
        ``run``'s output per batch, padding rows dropped.
    """
    layout = torch.channels_last if tensors[0].ndim == 4 else torch.channels_last_3d
    model = model.to(device).eval().to(memory_format=layout)
    unit = pass_plan(math.prod(tensors[0].shape[2:]), batch_size, 1)[0]
    outputs = []
    with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
        for start in range(0, len(tensors[0]), batch_size):
            count = min(batch_size, len(tensors[0]) - start)
            batch = [_padded(tensor[start:start + batch_size], -(-count // unit) * unit).to(device)
                     for tensor in tensors]
            output = run(model, batch_size, *(_laid_out(tensor, layout) for tensor in batch))
            outputs.append(tuple(part[:count] for part in output) if isinstance(output, tuple) else output[:count])
    return outputs
