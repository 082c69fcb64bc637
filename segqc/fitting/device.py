"""Where computation runs: the torch device and the ``torchrun`` process group."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from segqc.config import DEVICE_NAME
from segqc.errors import ConfigError, InputError


def resolve_device(name: str) -> torch.device:
    """Turn ``auto``/``cpu``/``cuda[:i]`` into a device, checking CUDA exists.

    Under ``torchrun`` a bare ``cuda`` (or ``auto`` with CUDA) means this
    process's GPU, ``cuda:LOCAL_RANK``.
    """
    if not DEVICE_NAME.fullmatch(name):
        raise ConfigError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return torch.device(name)


def distributed_context() -> tuple[int, int]:
    """``(rank, world_size)`` of the running process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed_from_env(device: torch.device) -> bool:
    """Join the process group announced by ``torchrun``'s environment, if any.

    Returns:
        True when running distributed.
    """
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


@contextmanager
def distributed_session(device: torch.device) -> Iterator[bool]:
    """:func:`init_distributed_from_env` for a block; the process group is destroyed after it.

    Every rank leaves the group cleanly (a gloo process that exits with its group
    still open can abort with "terminate called without an active exception").

    Yields:
        True when running distributed.
    """
    sharded = init_distributed_from_env(device)
    try:
        yield sharded
    finally:
        if sharded and dist.is_initialized():
            dist.destroy_process_group()
