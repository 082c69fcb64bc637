"""Segmenters from user code, spec ``python:module:callable``.

The object is a segmenter, a factory (no required arguments, or only ``weights``,
``options`` and ``device``) that returns a :class:`~segqc.segmenters.base.Segmenter`,
or a function ``images (B, C, *spatial) -> labels (B, *spatial)`` (or logits
``(B, K, *spatial)``) whose class names come from the options file (a function
with one required argument not named like a factory argument).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from segqc.errors import ConfigError, did_you_mean
from segqc.segmenters.base import (
    OPTIONS_OPTION,
    Segmenter,
    check_class_count,
    check_input,
    read_options,
    to_labels,
)

FACTORY_ARGUMENTS = ("weights", "options", "device")
_OPTIONS = ("class_names", "spatial_dims")


class FunctionSegmenter:
    """A :class:`Segmenter` around a function ``images -> labels``.

    Attributes:
        function: Maps float32 ``(B, C, *spatial)`` to labels ``(B, *spatial)`` or logits ``(B, K, *spatial)``.
        class_names: From the options file.
        spatial_dims: From the options file (default 2).
        name: The spec, for error messages.
        device: Where the images are sent before calling ``function``.
    """

    def __init__(self, function: Callable[[torch.Tensor], Any], class_names: list[str], spatial_dims: int,
                 name: str) -> None:
        self.function = function
        self.class_names = class_names
        self.spatial_dims = spatial_dims
        self.name = name
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> FunctionSegmenter:
        """Send future inputs to ``device``; return ``self``."""
        self.device = torch.device(device)
        return self

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """Label a batch ``(B, C, *spatial)``; returns int64 ``(B, *spatial)`` on the device of ``images``."""
        check_input(images, self.spatial_dims, self.name)
        with torch.inference_mode():
            output = self.function(images.to(self.device))
        if not isinstance(output, torch.Tensor) and hasattr(output, "__array__"):
            output = torch.as_tensor(output)
        labels, classes = to_labels(output, tuple(images.shape[2:]), self.name)
        check_class_count(classes, self.class_names, self.name)
        return labels.to(images.device)


def _resolve(spec: str, target: str) -> Any:
    """The object ``module:attr.path`` names.

    Raises:
        ConfigError: Malformed spec, module not importable or attribute missing.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"segmenter {spec!r}: expected python:MODULE:CALLABLE, e.g. python:my_package.models:build")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"segmenter {spec!r}: cannot import module {module_name!r} ({err})") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            choices = [name for name in dir(obj) if not name.startswith("_")]
            raise ConfigError(f"segmenter {spec!r}: {module_name} has no attribute {part!r}"
                              f"{did_you_mean(part, choices)}")
        obj = getattr(obj, part)
    return obj


def _is_factory(function: Callable[..., Any]) -> bool:
    """Whether ``function`` takes only factory arguments (or none), so it is called to build a segmenter."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in parameters if p.default is inspect.Parameter.empty
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    return all(p.name in FACTORY_ARGUMENTS for p in required)


def load_python(spec: str, weights: Path | None, options: Path | None, device: str | torch.device) -> Segmenter:
    """Load a segmenter from ``python:module:callable``.

    Args:
        spec: The full spec, ``python:module:callable``.
        weights: Passed to a factory that accepts ``weights``.
        options: Passed to a factory that accepts ``options``; for a plain
            function, the options file with ``class_names`` (required) and
            ``spatial_dims`` (default 2).
        device: Passed to a factory that accepts ``device``.

    Returns:
        The segmenter, moved to ``device``.

    Raises:
        ConfigError: The callable cannot be found, does not return a segmenter,
            or a function lacks class names.
    """
    function = _resolve(spec, spec.removeprefix("python:"))
    if hasattr(function, "segment") and not isinstance(function, type):
        segmenter = check_segmenter(function, spec)
        segmenter.to(device)
        return segmenter
    if not callable(function):
        raise ConfigError(f"segmenter {spec!r}: found a {type(function).__name__}, expected a callable or a segmenter")
    if not _is_factory(function):
        settings = read_options(options, _OPTIONS, spec)
        if "class_names" not in settings:
            raise ConfigError(f"segmenter {spec!r} is a function images -> labels; give its class names with "
                              f"{OPTIONS_OPTION} FILE ({{\"class_names\": [...]}})")
        return FunctionSegmenter(function, settings["class_names"], settings.get("spatial_dims", 2), spec).to(device)
    accepted = inspect.signature(function).parameters
    given = {"weights": weights, "options": options, "device": device}
    segmenter = check_segmenter(function(**{key: value for key, value in given.items() if key in accepted}), spec)
    segmenter.to(device)
    return segmenter


def check_segmenter(obj: Any, spec: str) -> Segmenter:
    """Return ``obj`` if it has the :class:`Segmenter` attributes.

    Raises:
        ConfigError: It does not.
    """
    missing = [attr for attr in ("class_names", "spatial_dims", "segment", "to") if not hasattr(obj, attr)]
    if missing:
        raise ConfigError(f"segmenter {spec!r}: factory returned a {type(obj).__name__} without "
                          f"{', '.join(missing)}; expected a segqc.segmenters.Segmenter")
    return obj
