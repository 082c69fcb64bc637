"""The figures of ``summary.json`` that need ground truth or describe the scores.

Pure functions over numpy arrays and the ``scores.csv`` table; how each
ranking tracks ground truth is :mod:`segqc.report.rankings`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from segqc.metrics import float_array
from segqc.report.rankings import ranking_figures


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


def summarise_metrics(table: pd.DataFrame, top_k: int, dice_threshold: float) -> dict[str, Any]:
    """The ground-truth blocks of ``summary.json``.

    Args:
        table: ``scores.csv`` rows with columns ``status``, ``score``,
            ``dice_mean`` and optionally ``msd``, ``hd95``, ``verdict`` and the
            predicted-Dice columns; rows whose status is not ``ok`` are left out.
        top_k: Size of the top K for the top-K correlations.
        dice_threshold: Dice below which a segmentation counts as failed.

    Returns:
        ``headline_ranking``, ``rankings``, ``failure_detection`` and
        ``correlations`` (keyed by ranking, :func:`~segqc.report.rankings.ranking_figures`),
        ``verdict_quality`` (with verdicts) and ``predicted_dice`` (with predicted Dice).
    """
    scored = table[table["status"] == "ok"]
    summary = ranking_figures(scored, top_k, dice_threshold)
    if "verdict" in scored.columns:
        summary["verdict_quality"] = verdict_quality(scored["verdict"], scored["dice_mean"], dice_threshold)
    if "predicted_dice" in scored.columns:
        summary["predicted_dice"] = predicted_dice_agreement(scored)
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


def predicted_dice_agreement(table: pd.DataFrame) -> dict[str, float | None]:
    """How close predicted Dice comes to true Dice: mean absolute error and interval coverage.

    How well it ranks (AUROC, correlations) is under the ``predicted_dice``
    ranking of ``failure_detection`` and ``correlations``.

    Args:
        table: Scored rows with ``predicted_dice``, ``predicted_dice_low``,
            ``predicted_dice_high`` and ``dice_mean``.

    Returns:
        ``mae``, ``coverage`` (share of true Dice inside the interval) and ``width``
        (mean width of the interval), over the cases with both values (``None``
        without such cases).
    """
    predicted, true = float_array(table["predicted_dice"]), float_array(table["dice_mean"])
    low, high = float_array(table["predicted_dice_low"]), float_array(table["predicted_dice_high"])
    keep = ~(np.isnan(predicted) | np.isnan(true))
    return {
        "mae": float(np.abs(predicted - true)[keep].mean()) if keep.any() else None,
        "coverage": float(((true >= low) & (true <= high))[keep].mean()) if keep.any() else None,
        "width": float((high - low)[keep].mean()) if keep.any() else None,
    }
