"""How much of a training table looks anomalous, and which rows to leave out of the fit.

A model fitted on a table with anomalies in it learns them as normal. The
tabular detector therefore ranks the training rows with a short first fit,
estimates the share of anomalous rows from that ranking and fits again
without the highest-scoring share (iterative trimming).

The estimate is the share of rows beyond Tukey's far-out fence of the scores,
``Q3 + 3 * (Q3 - Q1)``: the quartiles of a table that is mostly normal
describe its normal rows, and few normal rows lie that far out. It counts the
anomalies that stand out; anomalies that look like normal rows are not
counted (nor can they be told apart without labels).
"""

from __future__ import annotations

import numpy as np

FENCE = 3.0
"""Interquartile ranges above the third quartile beyond which a row counts as anomalous."""


def estimate_contamination(scores: np.ndarray) -> float:
    """Share of rows whose anomaly score lies beyond the far-out fence of all scores.

    Args:
        scores: Anomaly scores of the training rows, ``(N,)`` (higher = more anomalous).

    Returns:
        The estimated share of anomalous rows, in ``[0, 1)``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    q1, q3 = np.percentile(scores, [25, 75])
    return float(np.mean(scores > q3 + FENCE * (q3 - q1)))


def typical_rows(scores: np.ndarray, share: float) -> np.ndarray:
    """The rows kept when the ``share`` of highest-scoring rows is left out.

    Args:
        scores: Anomaly scores, ``(N,)``.
        share: Share of rows to leave out, in ``[0, 1)``; ``round(share * N)`` rows go.

    Returns:
        Boolean mask of the kept rows, ``(N,)``; ties are broken by row order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    dropped = int(round(share * len(scores)))
    keep = np.ones(len(scores), dtype=bool)
    if dropped:
        keep[np.argsort(-scores, kind="stable")[:dropped]] = False
    return keep
