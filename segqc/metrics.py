"""Segmentation metrics against ground truth, and how well a ranking tracks them.

* **Dice** (the one definition in segqc, batched numpy): for a class absent from
  both masks Dice is 1, absent from one only 0 (MONAI's ``ignore_empty=False``);
  the mean is over the foreground classes present in either mask.
* **Surface distances** (MONAI): mean symmetric surface distance and 95th
  percentile Hausdorff distance on the union of the foreground classes: 0 when
  both masks are empty, NaN when exactly one is (see ``docs/report-format.md``).
* **Rankings** against a metric: Pearson / Spearman correlations (overall and
  top K), failure detection (AUROC, average precision, AURC). Scores are
  "higher = more anomalous", so a useful score correlates negatively with Dice
  and positively with surface distances. A figure that cannot be computed
  (fewer than three pairs, a constant input, a single class) is ``None`` so
  that it is written as ``null``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.metrics.utils import get_edge_surface_distance
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score


def dice_per_class(prediction: np.ndarray, reference: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of every foreground class between two batches of class-index masks.

    Args:
        prediction: ``(N, *spatial)`` class indices.
        reference: ``(N, *spatial)`` class indices.
        num_classes: ``K`` including background.

    Returns:
        ``(N, K-1)`` Dice values (1 for a class absent from both masks).
    """
    if np.shape(prediction) != np.shape(reference):
        raise ValueError(f"prediction {np.shape(prediction)} and reference {np.shape(reference)} differ in shape")
    batch = np.asarray(prediction).reshape(len(prediction), -1)
    other = np.asarray(reference).reshape(len(reference), -1)
    values = []
    for label in range(1, num_classes):
        a, b = batch == label, other == label
        total = a.sum(1) + b.sum(1)
        values.append(np.where(total > 0, 2 * (a & b).sum(1) / np.maximum(total, 1), 1.0))
    return np.stack(values, 1) if values else np.ones((len(batch), 0))


def mean_dice(per_class: np.ndarray, prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean of :func:`dice_per_class` over the foreground classes present in either mask (1 when neither has
    foreground), ``(N,)``."""
    flat_a = np.asarray(prediction).reshape(len(prediction), -1)
    flat_b = np.asarray(reference).reshape(len(reference), -1)
    present = np.stack([((flat_a == c) | (flat_b == c)).any(1) for c in range(1, per_class.shape[1] + 1)], 1) \
        if per_class.shape[1] else np.zeros((len(flat_a), 0), bool)
    counts = present.sum(1)
    return np.where(counts > 0, (per_class * present).sum(1) / np.maximum(counts, 1), 1.0)


def _binary_image(mask: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(mask), dtype=torch.float32)


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

    Both are computed on the union of the foreground classes (class index >
    0), in the units of ``spacing`` (mm), on the bounding box of the two
    foregrounds (the distance transforms of a small structure in a large
    volume cost what the structure's neighbourhood costs). One call of MONAI's
    ``get_edge_surface_distance`` gives the distances of each mask's edge to
    the other's; as in MONAI's ``compute_average_surface_distance``
    (symmetric) the MSD is the mean of both sets, and as in its
    ``compute_hausdorff_distance`` (``percentile=95``) the HD95 is the larger
    of the two sets' 95th percentiles (the two MONAI metrics would each
    compute the same edges and distance transforms again).

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
    box = _foreground_box(predicted, true)
    with warnings.catch_warnings():
        # MONAI's own internal call passes an argument it has deprecated.
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"monai\.")
        _, distances, _ = get_edge_surface_distance(_binary_image(predicted[box]), _binary_image(true[box]),
                                                    spacing=[float(size) for size in spacing], symmetric=True)
    msd = torch.cat(distances).mean()
    hd95 = torch.stack([torch.quantile(directed, 0.95) for directed in distances]).max()
    return float(msd.float()), float(hd95.float())  # float32, as MONAI's metrics return them


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
    prediction, truth = np.asarray(prediction)[None], np.asarray(truth)[None]
    per_class = dice_per_class(prediction, truth, len(labels))
    metrics = {"dice_mean": float(mean_dice(per_class, prediction, truth)[0])}
    metrics.update({f"dice_{value}": float(dice) for value, dice in zip(labels[1:], per_class[0])})
    metrics["msd"], metrics["hd95"] = surface_distances(prediction[0], truth[0], spacing)
    return metrics


def structure_surface_metrics(prediction: np.ndarray, truth: np.ndarray, labels: Sequence[int],
                              spacing: Sequence[float]) -> dict[str, float]:
    """MSD and HD95 of each foreground structure on its own (:func:`surface_distances` of its binary masks).

    Args:
        prediction: Predicted class indices, ``(*spatial)``.
        truth: Ground-truth class indices, same shape.
        labels: Label value of each class index (``labels[0]`` is background).
        spacing: Voxel size along each spatial axis (mm).

    Returns:
        ``msd_<label value>`` and ``hd95_<label value>`` for each foreground label.
    """
    metrics = {}
    for index, value in enumerate(labels[1:], start=1):
        metrics[f"msd_{value}"], metrics[f"hd95_{value}"] = surface_distances(
            np.asarray(prediction) == index, np.asarray(truth) == index, spacing)
    return metrics


CORRELATED_METRICS = ("dice_mean", "msd", "hd95")
MIN_PAIRS = 3


def float_array(values: Any) -> np.ndarray:
    """Values as a flat float64 array; anything not a number becomes NaN."""
    return np.asarray(pd.to_numeric(pd.Series(np.asarray(values).ravel()), errors="coerce"), dtype=np.float64)


def _check_same_length(first: np.ndarray, second: np.ndarray) -> None:
    if first.shape != second.shape:
        raise ValueError(f"{first.size} scores but {second.size} metric values")


def _correlation(method: Any, x: np.ndarray, y: np.ndarray) -> float | None:
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size < MIN_PAIRS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    value = float(method(x, y)[0])
    return None if np.isnan(value) else value


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation of the pairs without NaN (``None`` when undefined)."""
    return _correlation(stats.pearsonr, x, y)


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman correlation of the pairs without NaN (``None`` when undefined)."""
    return _correlation(stats.spearmanr, x, y)


def top_k_indices(scores: np.ndarray, top_k: int) -> np.ndarray:
    """Indices of the ``top_k`` highest scores, highest first (ties keep input order)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order[:max(top_k, 0)]


def correlations(scores: Any, metric_values: Any, top_k: int) -> dict[str, float | int | None]:
    """Pearson and Spearman correlation of scores with a metric, overall and in the top K.

    The top K are the ``top_k`` cases with the highest scores (the most
    anomalous, as ranked in the report), chosen before pairs with a NaN score
    or metric value are dropped; ``n_top_k`` counts the pairs actually used.

    Args:
        scores: Anomaly score per case.
        metric_values: Metric per case (NaN where undefined).
        top_k: How many of the highest-scoring cases form the top K.

    Returns:
        ``pearson``, ``spearman``, ``pearson_top_k``, ``spearman_top_k``
        (``None`` where undefined), ``n`` and ``n_top_k``.
    """
    x, y = float_array(scores), float_array(metric_values)
    _check_same_length(x, y)
    top = top_k_indices(np.nan_to_num(x, nan=-np.inf), top_k)
    x_top, y_top = x[top], y[top]
    return {
        "pearson": pearson(x, y),
        "spearman": spearman(x, y),
        "pearson_top_k": pearson(x_top, y_top),
        "spearman_top_k": spearman(x_top, y_top),
        "n": int(np.sum(~(np.isnan(x) | np.isnan(y)))),
        "n_top_k": int(np.sum(~(np.isnan(x_top) | np.isnan(y_top)))),
    }


def aurc(scores: np.ndarray, risk: np.ndarray) -> float | None:
    """Area under the risk-coverage curve.

    Cases are sorted by score ascending (most confident first, ties in input
    order); AURC is the mean over ``k = 1..N`` of the mean risk of the first
    ``k`` cases. Lower is better.

    Args:
        scores: Anomaly score per case.
        risk: Risk per case, e.g. ``1 - Dice``.

    Returns:
        The AURC, or ``None`` without cases.
    """
    if np.size(scores) == 0:
        return None
    ordered = np.asarray(risk, dtype=np.float64)[np.argsort(scores, kind="stable")]
    mean_risk_of_first_k = np.cumsum(ordered) / np.arange(1, ordered.size + 1)
    return float(mean_risk_of_first_k.mean())


def failure_detection(scores: Any, dice: Any, dice_threshold: float = 0.8) -> dict[str, float | int | None]:
    """How well scores separate failed segmentations from good ones.

    A case fails when its Dice is below ``dice_threshold`` or NaN; its risk is
    ``1 - Dice`` (1 for NaN). Cases with a NaN score are left out.

    Args:
        scores: Anomaly score per case (higher = more likely failed).
        dice: Dice per case.
        dice_threshold: Dice below which a segmentation counts as failed.

    Returns:
        ``dice_threshold``, ``failures`` (count), ``auroc`` and
        ``average_precision`` (``None`` unless both classes occur) and ``aurc``
        (``None`` without cases).
    """
    x, d = float_array(scores), float_array(dice)
    _check_same_length(x, d)
    keep = ~np.isnan(x)
    x, d = x[keep], d[keep]
    failed = np.isnan(d) | (d < dice_threshold)
    both_classes = 0 < failed.sum() < failed.size
    return {
        "dice_threshold": float(dice_threshold),
        "failures": int(failed.sum()),
        "auroc": float(roc_auc_score(failed, x)) if both_classes else None,
        "average_precision": float(average_precision_score(failed, x)) if both_classes else None,
        "aurc": aurc(x, np.where(np.isnan(d), 1.0, 1.0 - d)),
    }
