"""Find a segmenter by spec: built-in name, prefixed spec or third-party plugin.

Specs:

* ``deeplabv3_mobilenet_v3_large``, ``deeplabv3_resnet50``, ``deeplabv3_resnet101``
  (torchvision, Pascal VOC classes);
* ``torchscript:PATH``: a TorchScript model file;
* ``monai:NAME``: a ``monai.networks.nets`` class, arguments from the options file;
* ``python:module:callable``: user code;
* any name registered by an installed package under the entry-point group
  :data:`ENTRY_POINT_GROUP`; the entry point loads a factory
  ``(weights, options, device) -> Segmenter``.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import torch

from segqc.errors import ConfigError, did_you_mean
from segqc.segmenters.base import Segmenter
from segqc.segmenters.monai_nets import load_monai
from segqc.segmenters.python_callable import check_segmenter, load_python
from segqc.segmenters.torchscript import load_torchscript
from segqc.segmenters.torchvision_deeplab import BUILDERS, load_deeplab

ENTRY_POINT_GROUP = "segqc.segmenters"
PREFIXES = ("torchscript:PATH", "monai:NAME", "python:MODULE:CALLABLE")


def plugins() -> dict[str, EntryPoint]:
    """Installed third-party segmenters: spec name -> entry point."""
    return {entry.name: entry for entry in entry_points(group=ENTRY_POINT_GROUP)}


def known_names() -> list[str]:
    """Every plain (unprefixed) spec: built-ins, then plugins."""
    return [*BUILDERS, *sorted(set(plugins()) - set(BUILDERS))]


def load_segmenter(spec: str, weights: Path | None = None, options: Path | None = None,
                   device: str | torch.device = "cpu") -> Segmenter:
    """Load a segmenter by spec.

    Args:
        spec: See the module docstring.
        weights: Weights / checkpoint file (``--weights``); see each segmenter.
        options: Options file (JSON or YAML); see each segmenter.
        device: Where the model runs.

    Returns:
        The segmenter on ``device``.

    Raises:
        ConfigError: Unknown spec (with a did-you-mean hint), or a plugin that
            cannot be loaded or returns no segmenter.
        InputError: A weights / model / options file is missing or unreadable.
        SchemaError: Weights that do not fit the model.
    """
    weights = None if weights is None else Path(weights)
    options = None if options is None else Path(options)
    prefix, colon, rest = spec.partition(":")
    if colon:
        if prefix == "torchscript":
            return load_torchscript(Path(rest), options, device)
        if prefix == "monai":
            return load_monai(rest, weights, options).to(device)
        if prefix == "python":
            return load_python(spec, weights, options, device)
        hint = did_you_mean(prefix, [p.split(":")[0] for p in PREFIXES])
        raise ConfigError(f"unknown segmenter prefix {prefix + ':'!r} in {spec!r}{hint}; "
                          f"expected {', '.join(PREFIXES)}")
    if spec in BUILDERS:
        return load_deeplab(spec, weights, options).to(device)
    found = plugins()
    if spec in found:
        return _load_plugin(found[spec], weights, options, device)
    raise ConfigError(f"unknown segmenter {spec!r}{did_you_mean(spec, known_names())}; expected one of "
                      f"{', '.join(known_names())} or {', '.join(PREFIXES)}")


def _load_plugin(entry: EntryPoint, weights: Path | None, options: Path | None,
                 device: str | torch.device) -> Segmenter:
    """Load a plugin's factory and call it.

    Raises:
        ConfigError: The entry point cannot be imported or returns no segmenter.
    """
    origin = f"plugin {entry.name!r} ({entry.value}"
    origin += f" from {entry.dist.name})" if entry.dist is not None else ")"
    try:
        factory = entry.load()
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"segmenter {origin}: cannot load the entry point ({err})") from None
    segmenter = check_segmenter(factory(weights, options, device), entry.name)
    segmenter.to(device)
    return segmenter
