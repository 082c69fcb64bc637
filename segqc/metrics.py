"""Segmentation metrics against ground truth (MONAI) and their summaries.

Empty-mask conventions: for a class absent from the ground truth, Dice is 1 when
the prediction is empty too and 0 otherwise (MONAI's ``ignore_empty=False``).
Surface distances are computed on the union of the foreground classes: 0 when
both masks are empty, NaN when exactly one is (see ``docs/report-format.md``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance


def _one_hot(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    return torch.nn.functional.one_hot(tensor, num_classes).movedim(-1, 0)[None].float()


def dice_per_class(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of each foreground class (1..K-1).

    Args:
        prediction: Predicted class indices, ``(*spatial)``.
        truth: Ground-truth class indices, same shape.
        num_classes: ``K`` including background.

    Returns:
        Dice per foreground class, ``(K-1,)``.
    """
    if np.shape(prediction) != np.shape(truth):
        raise ValueError(f"prediction {np.shape(prediction)} and truth {np.shape(truth)} differ in shape")
    dice = compute_dice(_one_hot(prediction, num_classes), _one_hot(truth, num_classes),
                        include_background=False, ignore_empty=False)
    return dice[0].numpy().astype(np.float64)


def mean_dice(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> float:
    """Mean Dice over the foreground classes present in the prediction or the truth (1.0 if none)."""
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    present = [k for k in range(1, num_classes) if (prediction == k).any() or (truth == k).any()]
    if not present:
        return 1.0
    per_class = dice_per_class(prediction, truth, num_classes)
    return float(np.mean([per_class[k - 1] for k in present]))


def _binary_batch(mask: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(mask), dtype=torch.float32)[None, None]


def _foreground_box(*masks: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of the union of ``masks`` (boolean, same shape), one background voxel wider where possible.

    Surface distances are unchanged by cropping to it: every surface voxel and
    its neighbours stay inside, and distances do not depend on the origin.
    """
    union = np.logical_or.reduce(masks)
    box = []
    for axis in range(union.ndim):
        present = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != axis)))
        box.append(slice(max(int(present[0]) - 1, 0), int(present[-1]) + 2))
    return tuple(box)


def surface_distances(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> tuple[float, float]:
    """Mean symmetric surface distance and 95th percentile Hausdorff distance.

    Both are computed with MONAI on the union of the foreground classes (class
    index > 0), in the units of ``spacing`` (mm), on the bounding box of the
    two foregrounds (the distance transforms of a small structure in a large
    volume cost what the structure's neighbourhood costs).

    Args:
        prediction: Predicted class indices, ``(*spatial)`` with 2 or 3 axes.
        truth: Ground-truth class indices, same shape.
        spacing: Voxel size along each spatial axis.

    Returns:
        ``(msd, hd95)``; ``(0, 0)`` when both foregrounds are empty and
        ``(nan, nan)`` when exactly one is.
    """
    if np.shape(prediction) != np.shape(truth):
        raise ValueError(f"prediction {np.shape(prediction)} and truth {np.shape(truth)} differ in shape")
    if len(spacing) != np.ndim(prediction):
        raise ValueError(f"spacing {tuple(spacing)} does not match a {np.ndim(prediction)}D mask")
    predicted, true = np.asarray(prediction) > 0, np.asarray(truth) > 0
    if not predicted.any() and not true.any():
        return 0.0, 0.0
    if not predicted.any() or not true.any():
        return float("nan"), float("nan")
    spacing = [float(size) for size in spacing]
    box = _foreground_box(predicted, true)
    predicted, true = predicted[box], true[box]
    with warnings.catch_warnings():
        # MONAI's own internal call passes an argument it has deprecated.
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"monai\.")
        msd = compute_average_surface_distance(_binary_batch(predicted), _binary_batch(true),
                                               symmetric=True, spacing=spacing)
        hd95 = compute_hausdorff_distance(_binary_batch(predicted), _binary_batch(true),
                                          percentile=95, spacing=spacing)
    return float(msd[0, 0]), float(hd95[0, 0])


def case_metrics(prediction: np.ndarray, truth: np.ndarray, labels: Sequence[int],
                 spacing: Sequence[float]) -> dict[str, float]:
    """All segmentation metrics of one case, keyed by their ``scores.csv`` column.

    Args:
        prediction: Predicted class indices, ``(*spatial)``.
        truth: Ground-truth class indices, same shape.
        labels: Label value of each class index (``labels[0]`` is background).
        spacing: Voxel size along each spatial axis (mm).

    Returns:
        ``dice_mean``, ``dice_<label value>`` for each foreground label, ``msd``
        and ``hd95``.
    """
    num_classes = len(labels)
    per_class = dice_per_class(prediction, truth, num_classes)
    metrics = {"dice_mean": mean_dice(prediction, truth, num_classes)}
    metrics.update({f"dice_{value}": float(dice) for value, dice in zip(labels[1:], per_class)})
    metrics["msd"], metrics["hd95"] = surface_distances(prediction, truth, spacing)
    return metrics
