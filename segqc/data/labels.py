"""Label maps: the label values of a model's classes and their class indices."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from segqc.data.images import Volume
from segqc.errors import ConfigError, InputError, SchemaError

logger = logging.getLogger(__name__)

MAX_CLASSES = 64


def learn_labels(masks: Iterable[Volume]) -> list[int]:
    """The sorted label values found in the training masks.

    Args:
        masks: Masks, each ``(1, *spatial)`` with integer values.

    Returns:
        Sorted distinct label values over all masks.

    Raises:
        InputError: There is no mask.
        SchemaError: More than :data:`MAX_CLASSES` values (names the mask with the most).
    """
    values: set[int] = set()
    richest: tuple[int, Path | None] = (0, None)
    for mask in masks:
        found = np.unique(mask.array)
        values.update(int(v) for v in found)
        richest = max(richest, (len(found), mask.path), key=lambda item: item[0])
    if richest[1] is None:
        raise InputError("no masks to learn label values from; give training masks or 'segqc train --labels'")
    if len(values) > MAX_CLASSES:
        raise SchemaError(f"{richest[1]}: masks hold {len(values)} distinct label values ({richest[0]} in this file); "
                          f"expected at most {MAX_CLASSES} classes (is this an image rather than a mask?)")
    if len(values) < 2:
        logger.warning("training masks hold a single label value %s; the model learns nothing about shapes",
                       sorted(values))
    return sorted(values)


def label_indices(mask: np.ndarray, labels: Sequence[int], path: Path) -> np.ndarray:
    """Map label values to class indices by their position in ``labels``.

    Args:
        mask: Integer label values, any shape.
        labels: The ``K`` label values; ``labels[k]`` becomes class ``k``.
        path: The mask file, for error messages.

    Returns:
        int64 class indices in ``0..K-1``, same shape as ``mask``.

    Raises:
        SchemaError: The mask holds a value not in ``labels``.
    """
    table = np.asarray(labels, dtype=np.int64)
    if table.ndim != 1 or table.size == 0 or np.unique(table).size != table.size:
        raise ConfigError(f"labels: expected distinct integer label values, found {list(labels)}")
    found = np.unique(mask)
    unexpected = np.setdiff1d(found, table)
    if unexpected.size:
        shown = ", ".join(str(v) for v in unexpected[:10]) + (", ..." if unexpected.size > 10 else "")
        raise SchemaError(f"{path}: unexpected label value(s) {shown}; expected values in "
                          f"{[int(v) for v in table]} (found {[int(v) for v in found[:20]]})")
    order = np.argsort(table)
    return order[np.searchsorted(table[order], mask)].astype(np.int64)


def identity_indices(mask: np.ndarray, path: Path) -> np.ndarray:
    """Label values used as class indices when no label list is given; must be >= 0."""
    if mask.size and mask.min() < 0:
        raise SchemaError(f"{path}: negative label value {int(mask.min())}; give the label values "
                          f"('segqc train --labels') to map them to classes")
    return mask.astype(np.int64)


def class_indices(mask: Volume, labels: Sequence[int] | None) -> np.ndarray:
    """Class indices of a mask as float32 ``(1, *spatial)``, ready for MONAI transforms.

    ``labels`` maps label values to classes (:func:`label_indices`); ``None`` uses
    the values themselves (:func:`identity_indices`).
    """
    if labels is None:
        return identity_indices(mask.array, mask.path).astype(np.float32)
    return label_indices(mask.array, labels, mask.path).astype(np.float32)


def check_labels_present(labels: Sequence[int], masks: torch.Tensor) -> None:
    """Refuse given label values that no training mask holds (at the model's size): nothing to learn of them.

    Args:
        labels: The label value of each class.
        masks: Class indices of the training masks, ``(N, *spatial)``.

    Raises:
        ConfigError: A label value occurs in no mask.
    """
    present = torch.bincount(masks.flatten(), minlength=len(labels))[:len(labels)] > 0
    if not bool(present.all()):
        absent = [str(value) for value, found in zip(labels, present.tolist()) if not found]
        held = [str(value) for value, found in zip(labels, present.tolist()) if found]
        raise ConfigError(f"labels {','.join(map(str, labels))} ('segqc train --labels'): {', '.join(absent)} "
                          f"occur(s) in no training mask (the masks hold {', '.join(held)}); give only the values "
                          "the masks use")
