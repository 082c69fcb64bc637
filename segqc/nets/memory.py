"""Networks checked before training: valid settings, and memory the machine has.

A network that cannot be built (an unknown key, a value of the wrong type, a
size the levels cannot halve) or that cannot fit in memory (``nf: 100000``)
should fail in the first second with its config key named, not after the data
were read or with an allocation error. The network is built on PyTorch's
``meta`` device, which records shapes without allocating, and a forward pass
there counts the values its layers produce. The estimate of training memory is

    parameters x 4 bytes x 6 (weights, gradients, two AdamW moments, the EMA
    copy and the best checkpoint) + activations per case x batch size x bytes
    per value (2 under bfloat16 autocast on CUDA, else 4),

a lower bound of what training needs (temporary buffers come on top); a
network is refused when even that exceeds the device's total memory.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from segqc.errors import ConfigError, did_you_mean
from segqc.nets.ncsnpp import NCSNpp

_STATE_COPIES = 6
_SET_BY_SEGQC = ("spatial_dims", "image_channels", "num_classes", "input_size")
MAX_NETWORK_NUMBER = 2**20
"""Largest whole number in ``model.network`` (a width, a multiplier, a resolution): larger ones would overflow
PyTorch's 64-bit sizes before the memory check could refuse them."""
MAX_RES_BLOCKS = 100
"""Most residual blocks per level (``num_res_blocks``; the NCSN++ paper uses 2 to 4): more take minutes to build."""


def device_memory(device: torch.device) -> int:
    """Total memory in bytes of a CUDA device, or of the machine for the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _gib(count: float) -> str:
    return f"{count / 2**30:,.1f} GiB"


def count_values(module: nn.Module, forward: Callable[[], Any]) -> int:
    """Values the leaf layers of ``module`` output during ``forward()`` (run it on the meta device)."""
    total = 0

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    handles = [leaf.register_forward_hook(hook) for leaf in module.modules() if not any(leaf.children())]
    try:
        forward()
    finally:
        for handle in handles:
            handle.remove()
    return total


def check_training_memory(what: str, module: nn.Module, values_per_case: int, batch_size: int,
                          device: torch.device, amp: bool, advice: str) -> int:
    """Refuse a network whose training would need more memory than ``device`` has.

    Args:
        what: The config key to name, e.g. ``"model.network"``.
        module: The network, built on the meta device.
        values_per_case: Activation values one case produces (:func:`count_values`).
        batch_size: Cases per training step.
        device: Where training runs.
        amp: Whether bfloat16 autocast is on (halves activations on CUDA).
        advice: What to lower, for the message.

    Returns:
        The estimate in bytes.

    Raises:
        ConfigError: The estimate exceeds the device's total memory.
    """
    parameters = sum(parameter.numel() for parameter in module.parameters())
    per_value = 2 if amp and device.type == "cuda" else 4
    needed = parameters * 4 * _STATE_COPIES + values_per_case * batch_size * per_value
    available = device_memory(device)
    if needed > available:
        raise ConfigError(f"{what}: training needs at least {_gib(needed)} ({parameters:,} parameters, "
                          f"{values_per_case:,} activation values per case x batch {batch_size}), more than the "
                          f"{_gib(available)} of the {device.type.upper()}; {advice}")
    return needed


def _check_network_numbers(key: str, value: Any) -> None:
    """Refuse a whole number in ``model.network.KEY`` (alone or in a list) beyond what a network can have."""
    largest = MAX_RES_BLOCKS if key == "num_res_blocks" else MAX_NETWORK_NUMBER
    numbers = value if isinstance(value, (list, tuple)) else [value]
    for number in numbers:
        if isinstance(number, int) and not isinstance(number, bool) and not 0 <= number <= largest:
            raise ConfigError(f"model.network.{key}: invalid value {value!r}; expected whole numbers in "
                              f"0..{largest:,}")


def check_image_network(network: Mapping[str, Any], spatial_dims: int, spatial_size: Sequence[int],
                        image_channels: int, num_classes: int, batch_size: int, device: torch.device,
                        amp: bool) -> int:
    """Build the image network on the meta device and check it fits the data and the device's memory.

    Args:
        network: The ``model.network`` settings (keyword arguments of :class:`NCSNpp`).
        spatial_dims: 2 or 3.
        spatial_size: The model's input size (``data.spatial_size``).
        image_channels: Channels of the images.
        num_classes: Mask classes.
        batch_size: Cases per training step.
        device: Where training runs.
        amp: Whether bfloat16 autocast is on.

    Returns:
        The training memory estimate in bytes.

    Raises:
        ConfigError: An unknown key, a wrong type or value, a ``spatial_size``
            the network cannot take, or more memory than the device has.
    """
    known = [name for name in inspect.signature(NCSNpp).parameters if name not in _SET_BY_SEGQC]
    for key in network:
        if key not in known:
            raise ConfigError(f"model.network.{key}: unknown setting{did_you_mean(str(key), known)}; "
                              f"known: {', '.join(known)}")
        _check_network_numbers(key, network[key])
    try:
        with torch.device("meta"):
            net = NCSNpp(spatial_dims, image_channels, num_classes, input_size=spatial_size[0], **network)
            batch = (torch.zeros(1, image_channels, *spatial_size), torch.zeros(1, num_classes, *spatial_size),
                     torch.ones(1))
            values = count_values(net, lambda: net(*batch))
    except (TypeError, ValueError) as err:
        reason = " ".join(str(err).split())
        raise ConfigError(f"model.network: cannot build the network for data.spatial_size "
                          f"{list(spatial_size)} ({reason})") from None
    return check_training_memory("model.network", net, values, batch_size, device, amp,
                                 "lower model.network nf or ch_mult, training.batch_size or data.spatial_size")
