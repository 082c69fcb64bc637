"""Where predicted-Dice intervals come from: segqc's own failures, or a user's labelled cases of their segmenter.

A :class:`DiceCalibration` turns the estimator's raw predictions (mean Dice,
then each foreground class's) and the spread of its trees into corrected
predictions and intervals, one :class:`~segqc.quality.intervals.ConformalInterval`
per predicted quantity.

* **Self-made** (:func:`self_made`, the default written by ``segqc train``): the
  residuals are the estimator's out-of-fold errors on the teaching set,
  degradations of held-out correct masks. A real segmenter fails differently,
  so on its outputs these intervals may cover less than their nominal share.
* **Labelled** (:func:`from_labelled`, ``segqc calibrate``): ``n`` cases of the
  user's own segmenter with ground truth. A systematic bias seen on them is
  corrected first: a constant shift (the median residual) or, from
  :data:`ISOTONIC_CASES` cases on, an isotonic map from predicted to true Dice,
  whichever has the lower out-of-fold error (folds by source), kept only when
  that error is at least 5 % below no correction's;
  the intervals then come from the out-of-fold residuals of the corrected
  predictions (split conformal with the finite-sample correction, normalised by
  the trees' spread), so they hold at the stated coverage for cases exchangeable
  with the labelled ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import GroupKFold

from segqc.quality.intervals import LABELLED, SELF_MADE, ConformalInterval, OffsetInterval

logger = logging.getLogger(__name__)

MIN_LABELLED_CASES = 5
"""Fewest labelled cases a calibration accepts."""
RECOMMENDED_LABELLED_CASES = 20
"""Below this many labelled cases the coverage guarantee is loose (a warning is given)."""
ISOTONIC_CASES = 50
"""From this many labelled cases on, an isotonic bias correction is tried besides a constant shift."""
_GAIN = 0.95
"""A bias correction is kept only when its out-of-fold error is below this share of no correction's."""
_FOLDS = 5
_SELF_MADE_BINS = 4


@dataclass
class BiasMap:
    """A monotone map from predicted to corrected Dice, kept as its knots (linear between them, flat beyond)."""

    x: np.ndarray
    y: np.ndarray

    @classmethod
    def isotonic(cls, predicted: np.ndarray, true: np.ndarray) -> BiasMap:
        """The isotonic regression of ``true`` on ``predicted``, both ``(n,)``."""
        regression = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(predicted, true)
        return cls(np.asarray(regression.X_thresholds_, np.float64), np.asarray(regression.y_thresholds_, np.float64))

    @classmethod
    def shift(cls, predicted: np.ndarray, true: np.ndarray) -> BiasMap:
        """A constant shift by the median residual ``true - predicted``."""
        offset = float(np.median(np.asarray(true) - np.asarray(predicted)))
        return cls(np.array([0.0, 1.0]), np.array([offset, 1.0 + offset]))

    def __call__(self, predicted: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(predicted, np.float64), self.x, self.y)


@dataclass
class DiceCalibration:
    """Corrections and intervals of each predicted quantity (column 0: mean Dice, then each class).

    Attributes:
        source: :data:`~segqc.quality.intervals.SELF_MADE` or :data:`~segqc.quality.intervals.LABELLED`.
        intervals: One interval per column (``None`` where none can be given).
        bias: One bias map per column (``None``: no correction).
        cases: Cases the residuals come from.
        sources: Distinct sources (volumes, images) among them.
    """

    source: str
    intervals: list[ConformalInterval | OffsetInterval | None]
    bias: list[BiasMap | None] = field(default_factory=list)
    cases: int = 0
    sources: int = 0

    @property
    def coverage(self) -> float:
        """Nominal coverage of the intervals."""
        return self.intervals[0].coverage

    def with_coverage(self, coverage: float) -> DiceCalibration:
        """The same calibration at another nominal coverage.

        Raises:
            ValueError: ``coverage`` outside (0, 1), or intervals that cannot be recomputed.
        """
        intervals = [None if interval is None else interval.with_coverage(coverage) for interval in self.intervals]
        return DiceCalibration(self.source, intervals, self.bias, self.cases, self.sources)

    def apply(self, predicted: np.ndarray, spread: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Corrected predictions and their intervals.

        Args:
            predicted: Raw predicted Dice ``(N, C)``: mean, then each class.
            spread: Spread of the trees ``(N, C)``.

        Returns:
            ``(dice, low, high)``, each ``(N, C)``; ``low`` / ``high`` NaN in columns without an interval.
        """
        dice = np.array(predicted, np.float64)
        low, high = np.full(dice.shape, np.nan), np.full(dice.shape, np.nan)
        for column in range(dice.shape[1]):
            bias = self.bias[column] if column < len(self.bias) else None
            if bias is not None:
                dice[:, column] = bias(dice[:, column])
            interval = self.intervals[column] if column < len(self.intervals) else None
            if interval is not None:
                low[:, column], high[:, column] = interval.bounds(dice[:, column], spread[:, column])
        return np.clip(dice, 0, 1), low, high

    def describe(self) -> dict[str, Any]:
        """Where the intervals come from, for ``summary.json`` and the terminal."""
        if self.source == LABELLED:
            text = (f"{self.cases} labelled cases of your segmenter ({self.sources} sources), "
                    f"coverage {self.coverage:g}")
        else:
            text = (f"self-made failures, coverage {self.coverage:g}: may be optimistic on real segmenter outputs "
                    "(calibrate with 'segqc calibrate')")
        return {"source": self.source, "cases": self.cases, "sources": self.sources, "coverage": self.coverage,
                "bias_correction": any(bias is not None for bias in self.bias), "text": text}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the calibration (no pickle)."""
        arrays = {"settings": np.array([self.source == LABELLED, self.cases, self.sources, len(self.intervals)],
                                       np.float64)}
        for column, interval in enumerate(self.intervals):
            if interval is not None:
                arrays.update({f"interval{column}_{k}": v for k, v in interval.to_arrays().items()})
        for column, bias in enumerate(self.bias):
            if bias is not None:
                arrays.update({f"bias{column}_x": bias.x, f"bias{column}_y": bias.y})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> DiceCalibration:
        """Inverse of :meth:`to_arrays`."""
        labelled, cases, sources, columns = (int(v) for v in arrays["settings"])

        def interval(column: int) -> ConformalInterval | None:
            prefix = f"interval{column}_"
            part = {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
            return ConformalInterval.from_arrays(part) if part else None

        def bias(column: int) -> BiasMap | None:
            return BiasMap(arrays[f"bias{column}_x"], arrays[f"bias{column}_y"]) if f"bias{column}_x" in arrays \
                else None

        return cls(LABELLED if labelled else SELF_MADE, [interval(c) for c in range(columns)],
                   [bias(c) for c in range(columns)], cases, sources)


def self_made(held_out: np.ndarray, targets: np.ndarray, spread: np.ndarray, coverage: float,
              sources: int) -> DiceCalibration:
    """Intervals from the estimator's out-of-fold predictions on its teaching set.

    Args:
        held_out: Out-of-fold predictions ``(M, C)``.
        targets: True Dice ``(M, C)``.
        spread: Out-of-fold spread of the trees ``(M, C)``.
        coverage: Nominal coverage.
        sources: Distinct sources of the teaching examples.
    """
    intervals = [ConformalInterval.fit(held_out[:, c], targets[:, c], spread[:, c], coverage, _SELF_MADE_BINS)
                 for c in range(held_out.shape[1])]
    return DiceCalibration(SELF_MADE, intervals, [None] * len(intervals), len(held_out), sources)


def _out_of_fold(fit: Callable[[np.ndarray, np.ndarray], BiasMap], predicted: np.ndarray, true: np.ndarray,
                 groups: np.ndarray) -> np.ndarray | None:
    """Out-of-fold corrections of ``predicted`` ``(n,)`` by maps ``fit`` makes, or ``None`` with fewer than two
    sources."""
    folds = min(_FOLDS, len(np.unique(groups)))
    if folds < 2:
        return None
    corrected = np.empty(len(predicted))
    for fit_rows, test_rows in GroupKFold(folds).split(predicted, groups=groups):
        corrected[test_rows] = np.clip(fit(predicted[fit_rows], true[fit_rows])(predicted[test_rows]), 0, 1)
    return corrected


def _bias_correction(predicted: np.ndarray, true: np.ndarray, groups: np.ndarray
                     ) -> tuple[BiasMap | None, np.ndarray]:
    """The bias correction worth keeping (or ``None``) and the out-of-fold predictions it gives, each ``(n,)``."""
    fits = [BiasMap.shift] + ([BiasMap.isotonic] if len(predicted) >= ISOTONIC_CASES else [])
    best, held_out, error = None, predicted, _GAIN * float(np.abs(predicted - true).mean())
    for fit in fits:
        corrected = _out_of_fold(fit, predicted, true, groups)
        if corrected is not None and float(np.abs(corrected - true).mean()) < error:
            best, held_out, error = fit, corrected, float(np.abs(corrected - true).mean())
    return (best(predicted, true) if best is not None else None), held_out


@dataclass
class LabelledCalibration:
    """What :func:`from_labelled` found.

    Attributes:
        calibration: The new calibration.
        mae_before: Mean absolute error of the raw predicted mean Dice on the labelled cases.
        mae_after: Out-of-fold mean absolute error after the bias correction (``mae_before`` without one).
        warning: A sentence to show the user (too few cases for a tight guarantee), or ``""``.
    """

    calibration: DiceCalibration
    mae_before: float
    mae_after: float
    warning: str = ""


def from_labelled(predicted: np.ndarray, true: np.ndarray, spread: np.ndarray, groups: np.ndarray,
                  coverage: float) -> LabelledCalibration:
    """Intervals (and a bias correction where it pays) from labelled cases of the user's segmenter.

    Args:
        predicted: The estimator's raw predicted Dice ``(n, C)``: mean, then each class.
        true: True Dice ``(n, C)`` (NaN where a class's true Dice is unknown).
        spread: Spread of the trees ``(n, C)``.
        groups: Source of each case ``(n,)``: slices of one volume, tiles of one image share one, so they stay
            on one side of every internal split.
        coverage: Nominal coverage.

    Returns:
        The calibration and what it changed.

    Raises:
        ValueError: Fewer than :data:`MIN_LABELLED_CASES` cases with a true mean Dice.
    """
    predicted, true, spread = (np.asarray(a, np.float64) for a in (predicted, true, spread))
    groups = np.asarray(groups).astype(str)
    usable = np.isfinite(true[:, 0])
    if usable.sum() < MIN_LABELLED_CASES:
        raise ValueError(f"{int(usable.sum())} labelled case(s) with a usable true Dice; need at least "
                         f"{MIN_LABELLED_CASES} (and {RECOMMENDED_LABELLED_CASES} or more for a useful guarantee)")
    intervals, biases = [], []
    mae_before = mae_after = float("nan")
    for column in range(predicted.shape[1]):
        rows = np.isfinite(true[:, column])
        if rows.sum() < MIN_LABELLED_CASES:
            intervals.append(None)
            biases.append(None)
            continue
        raw, truth = predicted[rows, column], true[rows, column]
        bias, held_out = _bias_correction(raw, truth, groups[rows])
        error_raw = float(np.abs(raw - truth).mean())
        biases.append(bias)
        intervals.append(ConformalInterval.fit(held_out, truth, spread[rows, column], coverage,
                                               max(1, min(_SELF_MADE_BINS, int(rows.sum()) // 50))))
        if column == 0:
            mae_before, mae_after = error_raw, float(np.abs(held_out - truth).mean())
    count = int(usable.sum())
    warning = (f"only {count} labelled cases: the interval's coverage guarantee is loose below "
               f"{RECOMMENDED_LABELLED_CASES}; label more cases of your segmenter"
               if count < RECOMMENDED_LABELLED_CASES else "")
    if warning:
        logger.warning(warning)
    calibration = DiceCalibration(LABELLED, intervals, biases, count, len(np.unique(groups[usable])))
    return LabelledCalibration(calibration, mae_before, mae_after, warning)
