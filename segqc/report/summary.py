"""How well anomaly scores track segmentation quality (the ``summary.json`` figures).

Pure functions over numpy arrays and the ``scores.csv`` table. Scores are
"higher = more anomalous", so a useful score correlates negatively with Dice
and positively with surface distances. A figure that cannot be computed (fewer
than three pairs, a constant input, a single class) is ``None`` so that it is
written as ``null``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

CORRELATED_METRICS = ("dice_mean", "msd", "hd95")
MIN_PAIRS = 3


def _as_float_array(values: Any) -> np.ndarray:
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
    x, y = _as_float_array(scores), _as_float_array(metric_values)
    _check_same_length(x, y)
    top = top_k_indices(np.nan_to_num(x, nan=-np.inf), top_k)
    x_top, y_top = x[top], y[top]
    return {
        "pearson": _correlation(stats.pearsonr, x, y),
        "spearman": _correlation(stats.spearmanr, x, y),
        "pearson_top_k": _correlation(stats.pearsonr, x_top, y_top),
        "spearman_top_k": _correlation(stats.spearmanr, x_top, y_top),
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
    x, d = _as_float_array(scores), _as_float_array(dice)
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


def score_quantiles(scores: Any) -> dict[str, float | None]:
    """Minimum, quartiles, 95th percentile and maximum of the scores (NaN ignored).

    Args:
        scores: Anomaly score per case.

    Returns:
        ``min``, ``p25``, ``median``, ``p75``, ``p95``, ``max``; all ``None``
        without a finite score.
    """
    x = _as_float_array(scores)
    x = x[~np.isnan(x)]
    names = ("min", "p25", "median", "p75", "p95", "max")
    if x.size == 0:
        return dict.fromkeys(names)
    values = np.percentile(x, [0, 25, 50, 75, 95, 100])
    return {name: float(value) for name, value in zip(names, values)}


def summarise_metrics(table: pd.DataFrame, top_k: int, dice_threshold: float) -> dict[str, dict[str, Any]]:
    """The ``correlations`` and ``failure_detection`` blocks of ``summary.json``.

    Args:
        table: ``scores.csv`` rows with columns ``status``, ``score``,
            ``dice_mean`` and optionally ``msd`` and ``hd95``; rows whose
            status is not ``ok`` are left out.
        top_k: Size of the top K for the top-K correlations.
        dice_threshold: Dice below which a segmentation counts as failed.

    Returns:
        ``{"correlations": {metric: correlations(...)}, "failure_detection": {...}}``.
    """
    scored = table[table["status"] == "ok"]
    summary: dict[str, dict[str, Any]] = {
        "correlations": {metric: correlations(scored["score"], scored[metric], top_k)
                         for metric in CORRELATED_METRICS if metric in scored.columns},
        "failure_detection": failure_detection(scored["score"], scored["dice_mean"], dice_threshold),
    }
    if "verdict" in scored.columns:
        summary["verdict_quality"] = verdict_quality(scored["verdict"], scored["dice_mean"], dice_threshold)
    if "predicted_dice" in scored.columns:
        summary["predicted_dice"] = predicted_dice_agreement(scored, dice_threshold)
    return summary


GOOD_DICE = 0.9


def verdict_quality(verdicts: Any, dice: Any, dice_threshold: float) -> dict[str, float | int | None]:
    """How often verdicts are wrong: false alarms among good masks, misses among failed ones.

    Args:
        verdicts: ``pass`` / ``review`` / ``fail`` per case.
        dice: True Dice per case (NaN counts as failed).
        dice_threshold: Dice below which a mask failed.

    Returns:
        ``false_alarms``: share of good masks (Dice >= 0.9) given ``review`` or
        ``fail``; ``misses``: share of failed masks (Dice < threshold) given
        ``pass``; with the counts they are shares of (``None`` without such masks).
    """
    verdict = np.asarray(verdicts).astype(str)
    d = _as_float_array(dice)
    good, failed = d >= GOOD_DICE, np.isnan(d) | (d < dice_threshold)
    return {
        "good": int(good.sum()), "failed": int(failed.sum()),
        "false_alarms": float((verdict[good] != "pass").mean()) if good.any() else None,
        "misses": float((verdict[failed] == "pass").mean()) if failed.any() else None,
    }


def predicted_dice_agreement(table: pd.DataFrame, dice_threshold: float) -> dict[str, float | None]:
    """How predicted Dice tracks true Dice: MAE, correlation, interval coverage, failure AUROC.

    Args:
        table: Scored rows with ``predicted_dice``, ``predicted_dice_low``,
            ``predicted_dice_high`` and ``dice_mean``.
        dice_threshold: Dice below which a mask failed.

    Returns:
        ``mae``, ``spearman``, ``pearson``, ``coverage`` (share of true Dice inside the
        interval) and ``auroc`` / ``aurc`` of ``1 - predicted_dice`` for failure.
    """
    predicted, true = _as_float_array(table["predicted_dice"]), _as_float_array(table["dice_mean"])
    low, high = _as_float_array(table["predicted_dice_low"]), _as_float_array(table["predicted_dice_high"])
    keep = ~(np.isnan(predicted) | np.isnan(true))
    detection = failure_detection(1 - predicted, true, dice_threshold)
    return {
        "mae": float(np.abs(predicted - true)[keep].mean()) if keep.any() else None,
        "spearman": _correlation(stats.spearmanr, predicted, true),
        "pearson": _correlation(stats.pearsonr, predicted, true),
        "coverage": float(((true >= low) & (true <= high))[keep].mean()) if keep.any() else None,
        "auroc": detection["auroc"], "aurc": detection["aurc"],
    }
