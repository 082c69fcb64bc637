"""How much of a training table looks anomalous, and which rows to leave out of the fit.

A model fitted on a table with anomalies in it learns them as normal. The
tabular detector therefore ranks the training rows after the first part of
the fit, estimates the share of anomalous rows from that ranking and carries
on without the highest-scoring share (trimming).

The estimate follows the empirical-null idea (Efron, 2004): the typical
rows' scores are described by a normal distribution fitted to the lower half
of all scores -- their median and the distance from the first quartile to the
median, a part of the table a minority of anomalies barely touches -- and the
anomalous share is the excess of rows beyond ``TAIL`` of those standard
deviations above the median over what that normal distribution leaves there::

    share = (P(score > median + TAIL * s) - sf(TAIL)) / (1 - sf(TAIL))

Row scores are skewed to the right (a few typical rows are rare in some
column), so rows that are rare but not planted count too: the estimate leans
high rather than low, and leaving a few rare typical rows out of the fit costs
less than learning the anomalies. Anomalies the ranking fit has learned to find
typical are not counted (nor can they be told apart without labels). Measured
figures: ``docs/benchmarks-tabular.md``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

TAIL = 3.0
"""Standard deviations of the typical rows' scores above their median beyond which a row counts as anomalous."""
MAX_SHARE = 0.49
"""Largest estimate: a majority of anomalous rows would make them the typical ones."""
_QUARTILE = stats.norm.ppf(0.75)
"""Distance from a normal distribution's first quartile to its median, in standard deviations."""


def estimate_contamination(scores: np.ndarray) -> float:
    """Share of rows standing out above an empirical null fitted to the lower half of the scores.

    Args:
        scores: Anomaly scores of the training rows, ``(N,)`` (higher = more anomalous).

    Returns:
        The estimated share of anomalous rows, in ``[0, MAX_SHARE]``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    q1, median = np.percentile(scores, [25, 50])
    if median <= q1:  # half the rows tie: no spread to describe the typical rows with
        return 0.0
    beyond = float(np.mean(scores > median + TAIL * (median - q1) / _QUARTILE))
    expected = float(stats.norm.sf(TAIL))
    return float(np.clip((beyond - expected) / (1 - expected), 0.0, MAX_SHARE))


def typical_rows(scores: np.ndarray, share: float) -> np.ndarray:
    """The rows kept when the ``share`` of highest-scoring rows is left out.

    Args:
        scores: Anomaly scores, ``(N,)``.
        share: Share of rows to leave out, in ``[0, 1)``; ``round(share * N)`` rows go.

    Returns:
        Boolean mask of the kept rows, ``(N,)``; ties are broken by row order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    dropped = round(share * len(scores))
    keep = np.ones(len(scores), dtype=bool)
    if dropped:
        keep[np.argsort(-scores, kind="stable")[:dropped]] = False
    return keep
