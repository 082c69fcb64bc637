"""Verdicts and ranks: what a reviewer is told about each case.

Every case gets one of :data:`VERDICTS` (``pass``, ``review``, ``fail``) or,
when it could not be scored, :data:`ERROR`. Two rules give verdicts:

* the **score rule** (:class:`Calibration`): quantiles of held-out inlier
  anomaly scores become review / fail thresholds (tabular mode; image models
  without a quality estimator, or ``--verdicts score``);
* the **quality rule** (:func:`quality_verdicts`): the predicted-Dice interval
  against the failure Dice, for the mean over structures or for each
  structure; a case's verdict is then the mean's or the worst structure's
  (:func:`worst_verdicts`).

Ranks order cases from the most anomalous (rank 1) down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VERDICTS = ("pass", "review", "fail")
ERROR = "error"
OUTCOMES = (*VERDICTS, ERROR)
"""Every value of a ``verdict`` column: the verdicts, and ``error`` for a case that could not be scored."""


@dataclass(frozen=True)
class Calibration:
    """Review / fail thresholds from held-out inlier scores.

    Attributes:
        review: Scores above this get ``review``.
        fail: Scores above this get ``fail``.
        review_quantile: Inlier quantile that set ``review``.
        fail_quantile: Inlier quantile that set ``fail``.
        num_samples: Held-out inliers used.
    """

    review: float
    fail: float
    review_quantile: float
    fail_quantile: float
    num_samples: int

    @classmethod
    def from_scores(cls, scores: Sequence[float], review_quantile: float = 0.95,
                    fail_quantile: float = 0.99) -> Calibration:
        """Thresholds at quantiles of held-out inlier scores."""
        if not 0 < review_quantile <= fail_quantile < 1:
            raise ValueError(f"need 0 < review_quantile <= fail_quantile < 1, got {review_quantile}, {fail_quantile}")
        scores = np.asarray(scores, dtype=np.float64)
        scores = scores[np.isfinite(scores)]
        if scores.size == 0:
            raise ValueError("no finite held-out scores to calibrate on")
        review, fail = np.quantile(scores, [review_quantile, fail_quantile])
        return cls(float(review), float(fail), review_quantile, fail_quantile, int(scores.size))

    def verdicts(self, scores: Sequence[float]) -> np.ndarray:
        """``pass`` / ``review`` / ``fail`` per score (non-finite scores fail)."""
        scores = np.asarray(scores, dtype=np.float64)
        out = np.full(scores.shape, "pass", dtype=object)
        out[scores > self.review] = "review"
        out[(scores > self.fail) | ~np.isfinite(scores)] = "fail"
        return out


def ranks(scores: Sequence[float]) -> np.ndarray:
    """Rank 1 = most anomalous (highest score); ties keep input order."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-np.nan_to_num(scores, nan=np.inf), kind="stable")
    result = np.empty(len(scores), dtype=np.int64)
    result[order] = np.arange(1, len(scores) + 1)
    return result


def quality_verdicts(low: np.ndarray, high: np.ndarray, dice_threshold: float) -> np.ndarray:
    """``fail`` when the interval lies below ``dice_threshold``, ``review`` when it straddles it, else ``pass``."""
    return np.where(high < dice_threshold, "fail", np.where(low < dice_threshold, "review", "pass")).astype(object)


def worst_verdicts(per_structure: np.ndarray) -> np.ndarray:
    """The worst verdict of each case over its structures (``fail`` > ``review`` > ``pass``; ``""``: no verdict).

    Args:
        per_structure: Verdicts ``(N, S)``.

    Returns:
        ``(N,)`` verdicts.
    """
    severity = np.vectorize(lambda verdict: VERDICTS.index(verdict) if verdict in VERDICTS else 0,
                            otypes=[np.int64])(np.asarray(per_structure, dtype=object))
    return np.asarray(VERDICTS, dtype=object)[severity.max(axis=1)]
