"""The segmenter interface and helpers shared by the built-in segmenters.

A segmenter turns a batch of images ``(B, C, *spatial)`` (float32, in the
images' own intensity scale) into label maps ``(B, *spatial)`` (int64 class
indices) of the same spatial size. Built-ins wrap a ``torch.nn.Module`` with
:class:`ModuleSegmenter`; third-party segmenters only need to satisfy
:class:`Segmenter`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from segqc.config import read_mapping_file
from segqc.errors import ConfigError, InputError, SchemaError
from segqc.torchfile import load_torch_file

WEIGHTS_OPTION = "--weights"
"""Command-line option that gives a segmenter's weights file (named in error messages)."""
OPTIONS_OPTION = "--segmenter-options"
"""Command-line option that gives a segmenter's options file (named in error messages)."""
NORMALIZE_MODES = ("none", "zscore", "minmax")
_CHECKPOINT_KEYS = ("state_dict", "model", "net")


@runtime_checkable
class Segmenter(Protocol):
    """A pretrained segmentation model.

    Attributes:
        class_names: Name of each class index the segmenter outputs (index 0 first).
        spatial_dims: 2 for images ``(H, W)``, 3 for volumes ``(D, H, W)``.
    """

    class_names: list[str]
    spatial_dims: int

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """Label a batch of images.

        Args:
            images: float32 ``(B, C, *spatial)`` in the images' own intensity scale.

        Returns:
            int64 ``(B, *spatial)`` class indices, same spatial size as ``images``.
        """
        ...

    def to(self, device: str | torch.device) -> Segmenter:
        """Move the model to ``device`` and return ``self``."""
        ...


class ModuleSegmenter:
    """A :class:`Segmenter` around a ``torch.nn.Module`` that outputs class logits.

    Subclasses override :meth:`prepare` (input normalisation) and/or
    :meth:`predict` (the forward pass, e.g. sliding-window inference).

    Attributes:
        network: The model, in eval mode.
        class_names: Class names; filled with ``class_0 ... class_{K-1}`` on the
            first call when not known in advance.
        spatial_dims: Number of spatial axes of the inputs.
        name: The spec the segmenter was loaded from (used in error messages).
        device: Where the network runs.
    """

    def __init__(self, network: torch.nn.Module, class_names: Sequence[str], spatial_dims: int, name: str) -> None:
        self.network = network.eval()
        self.class_names = list(class_names)
        self.spatial_dims = spatial_dims
        self.name = name
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> ModuleSegmenter:
        """Move the network to ``device``; return ``self``."""
        self.device = torch.device(device)
        self.network.to(self.device)
        return self

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Network input from raw images ``(B, C, *spatial)``; identity by default."""
        return images

    def predict(self, inputs: torch.Tensor) -> Any:
        """Raw network output for ``inputs`` ``(B, C', *spatial)``."""
        return self.network(inputs)

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """Label a batch of images.

        Args:
            images: float32 ``(B, C, *spatial)`` with ``spatial_dims`` spatial axes.

        Returns:
            int64 ``(B, *spatial)`` class indices on the device of ``images``.

        Raises:
            SchemaError: Wrong number of axes or channels, or the output does
                not match the class names.
        """
        check_input(images, self.spatial_dims, self.name)
        with torch.inference_mode():
            inputs = self.prepare(images.to(self.device, torch.float32))
            labels, classes = to_labels(self.predict(inputs), tuple(images.shape[2:]), self.name)
        if classes is not None:
            self._check_classes(classes)
        return labels.to(images.device)

    def _check_classes(self, classes: int) -> None:
        """Fill default class names, or check the known ones against the output's class count."""
        if not self.class_names:
            self.class_names = default_class_names(classes)
        else:
            check_class_count(classes, self.class_names, self.name)


def check_class_count(classes: int | None, class_names: Sequence[str], name: str) -> None:
    """Refuse logits of ``classes`` classes when class names of another count are given.

    Args:
        classes: The output's class count (``None``: it held labels, nothing to check).
        class_names: The segmenter's class names (none: any count goes).
        name: The segmenter spec, for error messages.

    Raises:
        SchemaError: The counts differ.
    """
    if classes is not None and class_names and len(class_names) != classes:
        raise SchemaError(f"{name}: returned logits of {classes} classes but {len(class_names)} class "
                          f"names are given; expected one name per output channel")


def default_class_names(count: int) -> list[str]:
    """``["class_0", ..., "class_{count-1}"]``."""
    return [f"class_{index}" for index in range(count)]


def check_input(images: torch.Tensor, spatial_dims: int, name: str) -> None:
    """Reject a batch that is not ``(B, C, *spatial)`` with ``spatial_dims`` spatial axes.

    Raises:
        SchemaError: Wrong number of axes.
    """
    if images.ndim != spatial_dims + 2:
        raise SchemaError(f"{name}: expected a batch (B, C, {'D, ' if spatial_dims == 3 else ''}H, W) of "
                          f"{spatial_dims}D images, found shape {tuple(images.shape)}")


def to_labels(output: Any, spatial: tuple[int, ...], name: str) -> tuple[torch.Tensor, int | None]:
    """Label maps from a model's output.

    Args:
        output: Logits ``(B, K, *spatial')`` (or a dict with ``"out"``, or a
            tuple/list whose first item is the logits), or integer labels
            ``(B, *spatial')``.
        spatial: The input's spatial size; outputs of another size are
            resized to it with nearest-neighbour interpolation.
        name: The segmenter spec, for error messages.

    Returns:
        int64 labels ``(B, *spatial)`` and the class count ``K`` (``None`` when
        the output already held labels).

    Raises:
        SchemaError: The output is not a tensor of a usable shape.
    """
    if isinstance(output, Mapping):
        output = output.get("out")
    elif isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise SchemaError(f"{name}: model returned {type(output).__name__}; expected a tensor of logits "
                          f"(B, K, *spatial) or labels (B, *spatial)")
    classes = None
    if output.ndim == len(spatial) + 2:
        classes = output.shape[1]
        output = output.argmax(dim=1)
    elif output.ndim != len(spatial) + 1 or output.is_floating_point():
        size = ", ".join(map(str, spatial))
        raise SchemaError(f"{name}: model returned shape {tuple(output.shape)} ({output.dtype}); expected logits "
                          f"(B, K, {size}) or integer labels (B, {size})")
    if tuple(output.shape[1:]) != spatial:
        output = F.interpolate(output[:, None].float(), size=spatial, mode="nearest")[:, 0]
    return output.long(), classes


def normalize_intensity(images: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-image, per-channel intensity normalisation.

    Args:
        images: ``(B, C, *spatial)``.
        mode: ``"none"``, ``"zscore"`` (zero mean, unit variance) or
            ``"minmax"`` (to ``[0, 1]``).

    Returns:
        The normalised images, same shape.
    """
    if mode == "none":
        return images
    axes = tuple(range(2, images.ndim))
    if mode == "zscore":
        mean, std = images.mean(dim=axes, keepdim=True), images.std(dim=axes, keepdim=True)
        return (images - mean) / std.clamp_min(1e-8)
    low, high = images.amin(dim=axes, keepdim=True), images.amax(dim=axes, keepdim=True)
    return (images - low) / (high - low).clamp_min(1e-8)


def read_options(path: Path | None, allowed: Sequence[str], name: str) -> dict[str, Any]:
    """Read a segmenter options file (JSON, or YAML for other suffixes).

    Args:
        path: The file, or ``None`` for no options.
        allowed: The keys the segmenter understands.
        name: The segmenter spec, for error messages.

    Returns:
        The options (empty without a file).

    Raises:
        InputError: The file is missing.
        ConfigError: The file is not valid JSON/YAML, not a mapping, or has an unknown key.
    """
    if path is None:
        return {}
    data = read_mapping_file(path, allowed, f"segmenter options file of {name} ({OPTIONS_OPTION})")
    names = data.get("class_names")
    if names is not None and (not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names)):
        raise ConfigError(f"{path}: 'class_names' must be a non-empty list of strings")
    if data.get("spatial_dims", 2) not in (2, 3):
        raise ConfigError(f"{path}: 'spatial_dims' is {data['spatial_dims']!r}; expected 2 or 3")
    mode = data.get("normalize", "none")
    if "normalize" in allowed and mode not in NORMALIZE_MODES:
        raise ConfigError(f"{path}: 'normalize' is {mode!r}; expected one of {', '.join(NORMALIZE_MODES)}")
    return data


def load_state_dict(path: Path, name: str) -> dict[str, torch.Tensor]:
    """Read a checkpoint's state dict without unpickling arbitrary objects.

    Accepts a plain state dict or a dict holding it under ``"state_dict"``,
    ``"model"`` or ``"net"``; strips a ``"module."`` prefix (DataParallel / DDP).

    Args:
        path: The checkpoint file.
        name: The segmenter spec, for error messages.

    Returns:
        Parameter name -> tensor.

    Raises:
        InputError: The file is missing or not a PyTorch checkpoint.
        SchemaError: The file holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: weights file for {name} not found ({WEIGHTS_OPTION})")
    data = load_torch_file(path, f"a PyTorch state_dict for {name}")
    if isinstance(data, dict):
        data = next((data[key] for key in _CHECKPOINT_KEYS if isinstance(data.get(key), dict)), data)
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise SchemaError(f"{path}: expected a state_dict (parameter name -> tensor) for {name}, "
                          f"found {type(data).__name__}")
    if all(key.startswith("module.") for key in data):
        data = {key.removeprefix("module."): value for key, value in data.items()}
    return data


def load_into(network: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, name: str) -> None:
    """Load ``state`` into ``network`` strictly, with a one-line error on mismatch.

    Raises:
        SchemaError: Missing or unexpected parameters, or parameters of another shape.
    """
    expected = network.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}" for key, value in expected.items()
             if key in state and state[key].shape != value.shape]
    problems = [f"{label} {_few(keys)}" for label, keys in
                (("missing", missing), ("unexpected", unexpected), ("shape (file vs model)", wrong)) if keys]
    if problems:
        raise SchemaError(f"{path}: state_dict does not fit {name}: {'; '.join(problems)}")
    network.load_state_dict(state)


def _few(items: Sequence[str]) -> str:
    """Up to three items and the count."""
    return f"{len(items)} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})"
