"""The figures of ``summary.json`` that need ground truth or describe the scores.

Pure functions over numpy arrays and the ``scores.csv`` table, built on the
rankings of :mod:`segqc.metrics`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from segqc.metrics import CORRELATED_METRICS, correlations, failure_detection, float_array, pearson, spearman


def score_quantiles(scores: Any) -> dict[str, float | None]:
    """Minimum, quartiles, 95th percentile and maximum of the scores (NaN ignored).

    Args:
        scores: Anomaly score per case.

    Returns:
        ``min``, ``p25``, ``median``, ``p75``, ``p95``, ``max``; all ``None``
        without a finite score.
    """
    x = float_array(scores)
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
    d = float_array(dice)
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
        interval), ``width`` (mean width of the interval) and ``auroc`` / ``aurc`` of
        ``1 - predicted_dice`` for failure.
    """
    predicted, true = float_array(table["predicted_dice"]), float_array(table["dice_mean"])
    low, high = float_array(table["predicted_dice_low"]), float_array(table["predicted_dice_high"])
    keep = ~(np.isnan(predicted) | np.isnan(true))
    detection = failure_detection(1 - predicted, true, dice_threshold)
    return {
        "mae": float(np.abs(predicted - true)[keep].mean()) if keep.any() else None,
        "spearman": spearman(predicted, true),
        "pearson": pearson(predicted, true),
        "coverage": float(((true >= low) & (true <= high))[keep].mean()) if keep.any() else None,
        "width": float((high - low)[keep].mean()) if keep.any() else None,
        "auroc": detection["auroc"], "aurc": detection["aurc"],
    }
