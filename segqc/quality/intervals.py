"""Intervals around predicted Dice: split conformal on held-out residuals, scaled by each case's difficulty.

A :class:`ConformalInterval` is fitted on held-out pairs of predicted and true
Dice with a difficulty ``u > 0`` per case (how unsure the regressor is: the
spread of its trees, floored). The normalised residuals ``s = (true -
predicted) / u`` give, for coverage ``1 - a``, the finite-sample corrected
quantiles of split conformal prediction (DESIGN.md §3.6)::

    lower = s_(floor((n + 1) a / 2)),  upper = s_(ceil((n + 1) (1 - a / 2)))

(order statistics of the ``n`` scores; an index outside ``1..n`` means the
interval is unbounded on that side, i.e. it reaches 0 or 1). A new case gets
``[d + lower u, d + upper u]`` clipped to ``[0, 1]``: under exchangeability of
the calibration cases and the new one, the true Dice lies inside with
probability at least ``1 - a``, and the width follows the case's difficulty.
With ``bins > 1`` the quantiles are taken per bin of predicted Dice (Mondrian
conformal), so coverage also holds within each bin.

Where the residuals come from decides what the coverage means: out-of-fold
predictions of segqc's own degradations of held-out masks (``self-made``;
they may be optimistic on a real segmenter's outputs), or a user's labelled
cases of the segmenter itself (``labelled``, :mod:`segqc.quality.calibration`).

Everything is kept as arrays (the residual scores), so a bundle never needs
pickle and the interval can be recomputed for another coverage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MIN_DIFFICULTY = 0.02
"""Floor of the difficulty (in Dice units), so an interval never collapses where the trees agree."""
SELF_MADE = "self-made"
LABELLED = "labelled"


def difficulty(spread: np.ndarray) -> np.ndarray:
    """The difficulty of each case from the spread of the regressor's trees, floored at :data:`MIN_DIFFICULTY`."""
    return np.maximum(np.asarray(spread, np.float64), MIN_DIFFICULTY)


def conformal_bounds(scores: np.ndarray, coverage: float) -> tuple[float, float]:
    """Finite-sample corrected lower and upper quantiles of ``scores`` for a two-sided ``coverage``.

    Args:
        scores: Normalised residuals of the calibration cases, ``(n,)``.
        coverage: Nominal coverage ``1 - a`` in ``(0, 1)``.

    Returns:
        ``(lower, upper)``; ``-inf`` / ``inf`` where ``n`` is too small for that side.
    """
    ordered = np.sort(np.asarray(scores, np.float64))
    n, tail = len(ordered), (1 - coverage) / 2
    low_rank, high_rank = math.floor((n + 1) * tail), math.ceil((n + 1) * (1 - tail))
    lower = float(ordered[low_rank - 1]) if 1 <= low_rank <= n else -math.inf
    upper = float(ordered[high_rank - 1]) if 1 <= high_rank <= n else math.inf
    return lower, upper


@dataclass
class ConformalInterval:
    """Normalised split-conformal intervals for one predicted quantity (mean Dice or one class's Dice).

    Attributes:
        predicted: Held-out predicted Dice of the calibration cases, ``(n,)``.
        scores: Their normalised residuals ``(true - predicted) / difficulty``, ``(n,)``.
        coverage: Nominal coverage.
        bins: Number of Mondrian bins by predicted Dice (quantiles of ``predicted``).
    """

    predicted: np.ndarray
    scores: np.ndarray
    coverage: float
    bins: int = 1
    _edges: np.ndarray = field(default_factory=lambda: np.array([-np.inf, np.inf]), repr=False)
    _bounds: np.ndarray = field(default_factory=lambda: np.array([[-np.inf, np.inf]]), repr=False)

    @classmethod
    def fit(cls, predicted: np.ndarray, true: np.ndarray, spread: np.ndarray, coverage: float,
            bins: int = 1) -> ConformalInterval:
        """Intervals from held-out predictions.

        Args:
            predicted: Predicted Dice, ``(n,)``.
            true: True Dice, ``(n,)``.
            spread: Spread of the regressor's trees, ``(n,)``.
            coverage: Nominal coverage in ``(0, 1)``.
            bins: Mondrian bins by predicted Dice (each should hold tens of cases).
        """
        predicted = np.asarray(predicted, np.float64)
        scores = (np.asarray(true, np.float64) - predicted) / difficulty(spread)
        return cls(predicted, scores, float(coverage), int(bins)).with_coverage(coverage)

    def with_coverage(self, coverage: float) -> ConformalInterval:
        """The same residuals at another nominal ``coverage``.

        Raises:
            ValueError: ``coverage`` outside (0, 1).
        """
        if not 0 < coverage < 1:
            raise ValueError(f"interval coverage must lie in (0, 1), got {coverage}")
        interval = ConformalInterval(self.predicted, self.scores, float(coverage), self.bins)
        edges = np.unique(np.quantile(self.predicted, np.linspace(0, 1, self.bins + 1))) if len(self.predicted) \
            else np.array([0.0, 1.0])
        edges[0], edges[-1] = -np.inf, np.inf
        bounds = []
        for low, high in zip(edges[:-1], edges[1:]):
            inside = (self.predicted >= low) & (self.predicted < high)
            bounds.append(conformal_bounds(self.scores[inside] if inside.any() else self.scores, coverage))
        bounds = np.asarray(bounds, np.float64).reshape(-1, 2)
        # each interval holds its own estimate: a bin whose residuals all lie on one side (the estimate is biased
        # there) ends at the estimate instead of beside it; only wider, so the coverage guarantee stands
        bounds[:, 0], bounds[:, 1] = np.minimum(bounds[:, 0], 0.0), np.maximum(bounds[:, 1], 0.0)
        interval._edges, interval._bounds = edges, bounds
        return interval

    def bounds(self, predicted: np.ndarray, spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` around predicted Dice ``(N,)`` of cases with tree spreads ``(N,)``, each ``(N,)``."""
        predicted = np.asarray(predicted, np.float64)
        index = np.clip(np.searchsorted(self._edges, predicted, side="right") - 1, 0, len(self._bounds) - 1)
        scale = difficulty(spread)
        lower, upper = self._bounds[index, 0], self._bounds[index, 1]
        low = np.where(np.isfinite(lower), predicted + lower * scale, 0.0)
        high = np.where(np.isfinite(upper), predicted + upper * scale, 1.0)
        return np.clip(low, 0, 1), np.clip(high, 0, 1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The residuals and settings as arrays (no pickle)."""
        return {"predicted": self.predicted, "scores": self.scores,
                "settings": np.array([self.coverage, self.bins], np.float64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ConformalInterval:
        """Inverse of :meth:`to_arrays`."""
        coverage, bins = arrays["settings"]
        return cls(np.asarray(arrays["predicted"], np.float64), np.asarray(arrays["scores"], np.float64),
                   float(coverage), int(bins)).with_coverage(float(coverage))


@dataclass
class OffsetInterval:
    """Fixed residual quantiles per bin of predicted Dice: the intervals of bundles written before segqc kept the
    out-of-fold residuals (they cannot be recomputed for another coverage).

    Attributes:
        edges: Bin edges of predicted Dice ``(B + 1,)``.
        below: Distance of the lower end below the estimate, per bin ``(B,)``.
        above: Distance of the upper end above the estimate, per bin ``(B,)``.
        coverage: Nominal coverage the offsets were fitted for.
    """

    edges: np.ndarray
    below: np.ndarray
    above: np.ndarray
    coverage: float

    def with_coverage(self, coverage: float) -> OffsetInterval:
        """Raises ``ValueError``: the residuals are not in the bundle."""
        raise ValueError("this model was saved without the out-of-fold predictions a new interval coverage needs; "
                         "retrain it to change the coverage")

    def bounds(self, predicted: np.ndarray, spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` around predicted Dice ``(N,)`` (``spread`` is not used), each ``(N,)``."""
        index = np.clip(np.searchsorted(self.edges, predicted, side="right") - 1, 0, len(self.below) - 1)
        below, above = np.maximum(self.below[index], 0.0), np.maximum(self.above[index], 0.0)  # hold the estimate
        return np.clip(predicted - below, 0, 1), np.clip(predicted + above, 0, 1)
