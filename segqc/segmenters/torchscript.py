"""Segmenters saved as TorchScript (``torch.jit.save``), spec ``torchscript:PATH``.

The model gets the images as read (optionally normalised, see the
``normalize`` option) and returns logits ``(B, K, *spatial)`` (or a dict with
``"out"``, or integer labels ``(B, *spatial)``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from segqc.errors import InputError
from segqc.segmenters.base import ModuleSegmenter, normalize_intensity, read_options

_OPTIONS = ("class_names", "spatial_dims", "normalize")


class TorchScriptSegmenter(ModuleSegmenter):
    """A TorchScript module with optional intensity normalisation."""

    def __init__(self, network: torch.nn.Module, class_names: list[str], spatial_dims: int, name: str,
                 normalize: str) -> None:
        super().__init__(network, class_names, spatial_dims, name)
        self.normalize = normalize

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise ``(B, C, *spatial)`` images as the ``normalize`` option says."""
        return normalize_intensity(images, self.normalize)


def load_torchscript(path: Path, options: Path | None, device: str | torch.device) -> TorchScriptSegmenter:
    """Load a TorchScript segmenter.

    Args:
        path: The ``.pt`` file written by ``torch.jit.save``.
        options: Optional options file: ``class_names`` (default ``class_0 ...``),
            ``spatial_dims`` (2 or 3, default 2), ``normalize`` (``none``,
            ``zscore``, ``minmax``; default ``none``).
        device: Where the model is loaded.

    Returns:
        The segmenter.

    Raises:
        InputError: The file is missing or not TorchScript.
        ConfigError: Invalid options.
    """
    name = f"torchscript:{path}"
    settings = read_options(options, _OPTIONS, name)
    if not Path(path).is_file():
        raise InputError(f"{path}: TorchScript model file not found (spec {name})")
    try:
        with warnings.catch_warnings():  # torch 2.15 deprecates TorchScript; users who chose it need no nagging
            warnings.filterwarnings("ignore", message="`torch.jit.load` is deprecated", category=FutureWarning)
            network = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as err:
        reason = " ".join(str(err).split())[:200]
        raise InputError(f"{path}: cannot read as a TorchScript model ({reason}); "
                         f"save it with torch.jit.save(torch.jit.script(model), path)") from None
    segmenter = TorchScriptSegmenter(network, settings.get("class_names", []), settings.get("spatial_dims", 2), name,
                                     settings.get("normalize", "none"))
    return segmenter.to(device)
