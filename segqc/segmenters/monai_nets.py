"""Segmenters built from ``monai.networks.nets``, spec ``monai:NAME``.

The options file gives the network's constructor arguments and how to run it::

    {"args": {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [16, 32], "strides": [2]},
     "class_names": ["background", "liver", "tumour"],
     "roi_size": [96, 96, 96], "sw_batch_size": 4, "overlap": 0.25, "normalize": "zscore"}

With ``roi_size`` the network runs by sliding-window inference over patches
of that size (inputs smaller than a patch are padded), which segments volumes
larger than the network's training patches.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from segqc.errors import ConfigError, SchemaError, did_you_mean
from segqc.segmenters.base import (
    OPTIONS_OPTION,
    WEIGHTS_OPTION,
    ModuleSegmenter,
    default_class_names,
    load_into,
    load_state_dict,
    normalize_intensity,
    read_options,
)

_OPTIONS = ("args", "class_names", "roi_size", "sw_batch_size", "overlap", "normalize")


class MonaiSegmenter(ModuleSegmenter):
    """A MONAI network, run whole or by sliding window.

    Attributes:
        in_channels: Channels the network expects, when known.
        roi_size: Sliding-window patch size, or ``None`` to run on whole images.
        sw_batch_size: Patches per forward pass.
        overlap: Overlap of neighbouring patches, in ``[0, 1)``.
        normalize: Intensity normalisation (see :func:`~segqc.segmenters.base.normalize_intensity`).
    """

    def __init__(self, network: torch.nn.Module, class_names: list[str], spatial_dims: int, name: str,
                 settings: dict[str, Any]) -> None:
        super().__init__(network, class_names, spatial_dims, name)
        self.in_channels: int | None = settings.get("args", {}).get("in_channels")
        self.roi_size: list[int] | None = settings.get("roi_size")
        self.sw_batch_size: int = settings.get("sw_batch_size", 4)
        self.overlap: float = settings.get("overlap", 0.25)
        self.normalize: str = settings.get("normalize", "none")

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Check the channel count of ``(B, C, *spatial)`` images and normalise them."""
        if self.in_channels is not None and images.shape[1] != self.in_channels:
            raise SchemaError(f"{self.name}: images have {images.shape[1]} channels; the network expects "
                              f"in_channels={self.in_channels}")
        return normalize_intensity(images, self.normalize)

    def predict(self, inputs: torch.Tensor) -> Any:
        """Logits ``(B, K, *spatial)``, by sliding window when ``roi_size`` is set."""
        if self.roi_size is None:
            return self.network(inputs)
        from monai.inferers import sliding_window_inference

        return sliding_window_inference(inputs, self.roi_size, self.sw_batch_size, self.network, overlap=self.overlap)


def network_names() -> list[str]:
    """Names of the ``torch.nn.Module`` classes in ``monai.networks.nets``."""
    import monai.networks.nets as nets

    return sorted(name for name in dir(nets) if not name.startswith("_") and isinstance(getattr(nets, name), type)
                  and issubclass(getattr(nets, name), torch.nn.Module))


def _check_settings(settings: dict[str, Any], spatial_dims: int, options: Path | None) -> None:
    """Reject sliding-window settings of the wrong type or length."""
    roi = settings.get("roi_size")
    checks = {
        f"'roi_size' must be a list of {spatial_dims} positive integers": roi is None or (
            isinstance(roi, list) and len(roi) == spatial_dims and all(isinstance(v, int) and v > 0 for v in roi)),
        "'sw_batch_size' must be a positive integer": isinstance(settings.get("sw_batch_size", 1), int)
        and settings.get("sw_batch_size", 1) > 0,
        "'overlap' must be a number in [0, 1)": isinstance(settings.get("overlap", 0.0), (int, float))
        and 0 <= settings.get("overlap", 0.0) < 1,
        "'args' must be a mapping of constructor arguments": isinstance(settings.get("args", {}), dict),
    }
    failed = [message for message, ok in checks.items() if not ok]
    if failed:
        raise ConfigError(f"{options}: {failed[0]}")


def load_monai(name: str, weights: Path | None, options: Path | None) -> MonaiSegmenter:
    """Build ``monai.networks.nets.<name>`` and load a checkpoint into it.

    Args:
        name: The network class, e.g. ``"UNet"``.
        weights: A state dict file (or a dict holding it under ``state_dict`` / ``model`` / ``net``).
        options: The options file (see the module docstring); ``args`` are required
            by most networks.

    Returns:
        The segmenter, on the CPU.

    Raises:
        ConfigError: Unknown network, invalid options, arguments the network
            rejects, or no weights.
        InputError: The weights file is missing or unreadable.
        SchemaError: The state dict does not fit the network.
    """
    import monai.networks.nets as nets

    spec = f"monai:{name}"
    names = network_names()
    if name not in names:
        raise ConfigError(f"unknown MONAI network {spec!r}{did_you_mean(name, names)}; expected a class of "
                          f"monai.networks.nets such as monai:UNet, monai:SegResNet, monai:SwinUNETR")
    settings = read_options(options, _OPTIONS, spec)
    args = settings.get("args", {})
    cls = getattr(nets, name)
    default_dims = inspect.signature(cls).parameters.get("spatial_dims")
    spatial_dims = args.get("spatial_dims", 3 if default_dims is None or default_dims.default is inspect.Parameter.empty
                            else default_dims.default)
    if spatial_dims not in (2, 3):
        raise ConfigError(f"{options}: args.spatial_dims is {spatial_dims!r}; expected 2 or 3")
    _check_settings(settings, spatial_dims, options)
    if weights is None:
        raise ConfigError(f"{spec}: no weights; provide {WEIGHTS_OPTION} PATH (a state_dict of "
                          f"monai.networks.nets.{name} built with the args of {OPTIONS_OPTION} FILE)")
    try:
        network = cls(**args)
    except (TypeError, ValueError, AssertionError) as err:
        reason = " ".join(str(err).split())[:200]
        where = options if options else f"{spec} (no {OPTIONS_OPTION} file)"
        raise ConfigError(f"{where}: cannot build monai.networks.nets.{name} from 'args' ({reason})") from None
    load_into(network, load_state_dict(weights, spec), weights, spec)
    class_names = settings.get("class_names")
    if class_names is None and isinstance(args.get("out_channels"), int):
        class_names = default_class_names(args["out_channels"])
    return MonaiSegmenter(network, class_names or [], spatial_dims, spec, settings)
