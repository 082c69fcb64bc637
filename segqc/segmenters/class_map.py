"""Map a segmenter's class indices to the label values the QC model was trained on.

A class map file (JSON, or YAML for other suffixes)::

    {"map": {"person": 1, "0": 0}, "default": 0}

Keys are class indices or class names of the segmenter; values are label
values. Classes without an entry become ``default``; without a default they
are an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segqc.config import read_mapping_file
from segqc.errors import ConfigError, SchemaError, did_you_mean
from segqc.segmenters.writer import MAX_MASK_LABEL

_KEYS = ("map", "default")


@dataclass(frozen=True)
class ClassMap:
    """A class map read from a file.

    Attributes:
        mapping: Segmenter class index -> label value.
        default: Label value of classes not in ``mapping``, or ``None`` to reject them.
        class_names: The segmenter's class names, for error messages.
    """

    mapping: dict[int, int]
    default: int | None = None
    class_names: Sequence[str] = field(default_factory=tuple)

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """:func:`apply_class_map` with this map."""
        return apply_class_map(labels, self.mapping, self.default, self.class_names)


def apply_class_map(labels: np.ndarray, mapping: Mapping[int, int], default: int | None = None,
                    class_names: Sequence[str] | None = None) -> np.ndarray:
    """Replace segmenter class indices by label values.

    Args:
        labels: Non-negative integer class indices, any shape.
        mapping: Class index -> label value.
        default: Label value of classes not in ``mapping``; ``None`` makes them an error.
        class_names: The segmenter's class names, to name classes in the error.

    Returns:
        int64 label values, same shape as ``labels``.

    Raises:
        SchemaError: ``labels`` holds classes that are not in ``mapping`` and there is no default.
    """
    labels = np.asarray(labels)
    present = np.flatnonzero(np.bincount(labels.ravel())) if labels.size else np.zeros(0, dtype=np.int64)
    table = np.full(int(present.max(initial=0)) + 1, -1 if default is None else default, dtype=np.int64)
    for index, value in mapping.items():
        if index < len(table):
            table[index] = value
    unmatched = [int(c) for c in present if table[c] < 0]
    if unmatched:
        named = [f"{c} ({class_names[c]!r})" if class_names and c < len(class_names) else str(c) for c in unmatched]
        raise SchemaError(f"class map: segmenter class(es) {', '.join(named)} have no entry; "
                          f"add them to 'map' or set 'default'")
    return table[labels]


def _label_value(value: Any, path: Path, what: str) -> int:
    """An integer label value in ``0..MAX_MASK_LABEL`` from the file, or a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MASK_LABEL:
        raise ConfigError(f"{path}: {what} is {value!r}; expected a non-negative integer label value up to "
                          f"{MAX_MASK_LABEL} (the largest a mask file holds)")
    return value


def _class_index(key: Any, class_names: Sequence[str] | None, path: Path) -> int:
    """The segmenter class index a map key names (an index or a class name)."""
    text = str(key).strip()
    if text.isdecimal():  # not isdigit(): int() refuses digits such as '²'
        index = int(text)
        if class_names and index >= len(class_names):
            raise SchemaError(f"{path}: class index {index} is out of range; the segmenter has "
                              f"{len(class_names)} classes (0..{len(class_names) - 1})")
        return index
    if not class_names:
        raise SchemaError(f"{path}: class name {text!r} cannot be resolved; the segmenter has no class names "
                          f"(use class indices)")
    if text not in class_names:
        raise SchemaError(f"{path}: unknown class name {text!r}{did_you_mean(text, class_names)}; "
                          f"the segmenter's classes are {', '.join(class_names)}")
    return list(class_names).index(text)


def load_class_map(path: Path, class_names: Sequence[str] | None = None) -> ClassMap:
    """Read a class map file.

    Args:
        path: JSON or YAML file ``{"map": {KEY: VALUE, ...}, "default": VALUE}``;
            keys are class indices or class names, ``default`` is optional.
        class_names: The segmenter's class names, to resolve names and check indices.

    Returns:
        The class map.

    Raises:
        InputError: The file is missing.
        ConfigError: Invalid JSON/YAML, unknown keys, non-integer values, or one class mapped twice.
        SchemaError: A class name or index the segmenter does not have.
    """
    data = read_mapping_file(path, _KEYS, "class map file")
    if not isinstance(data.get("map"), dict) or not data["map"]:
        raise ConfigError(f"{path}: expected {{\"map\": {{CLASS: LABEL, ...}}, \"default\": LABEL}} with a "
                          f"non-empty 'map'")
    mapping: dict[int, int] = {}
    for key, value in data["map"].items():
        index = _class_index(key, class_names, path)
        label = _label_value(value, path, f"the value of {key!r}")
        if mapping.get(index, label) != label:
            raise ConfigError(f"{path}: class {index} is mapped twice, to {mapping[index]} and {label}")
        mapping[index] = label
    default = data.get("default")
    default = None if default is None else _label_value(default, path, "'default'")
    return ClassMap(mapping, default, tuple(class_names or ()))
