"""The quality estimator: features of a case -> predicted Dice with an interval.

* a **regressor** (:class:`QualityEstimator`, scikit-learn extra trees, mean
  and per-class Dice as outputs) fitted at training time on the teaching set
  (:mod:`segqc.quality.teaching`): masks of known Dice made from held-out
  correct masks, described by :mod:`segqc.quality.features`. Once fitted, the
  trees are kept as arrays (:mod:`segqc.quality.forest`): a bundle loads
  without refitting, and the spread of the trees measures how unsure the
  estimate is;
* **intervals** (:mod:`segqc.quality.calibration`): grouped cross-fitting gives
  each teaching example an out-of-fold prediction and spread; their residuals,
  normalised by the spread, give split-conformal intervals for the mean and for
  each class (self-made). ``segqc calibrate`` replaces them with intervals from
  a user's labelled cases of their own segmenter. Verdicts from the intervals
  are :func:`segqc.verdicts.quality_verdicts`.

Nothing is pickled: the bundle stores the regressor's training set, its
out-of-fold predictions, the trees' node arrays and the calibration as arrays.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.model_selection import GroupKFold

from segqc.quality.calibration import DiceCalibration, self_made
from segqc.quality.forest import TreeEnsemble
from segqc.quality.intervals import SELF_MADE, OffsetInterval

_FOLDS = 5


@dataclass
class QualityEstimate:
    """Predicted Dice of each case.

    Attributes:
        dice: Mean Dice over foreground classes, ``(N,)``.
        low: Lower end of the interval, ``(N,)``.
        high: Upper end of the interval, ``(N,)``.
        per_class: Dice of each foreground class, ``(N, K-1)``.
        per_class_low: Lower ends of the per-class intervals, ``(N, K-1)`` (NaN where a model has none).
        per_class_high: Upper ends of the per-class intervals, ``(N, K-1)``.
        raw: The regressor's predictions before any bias correction, ``(N, K)``: mean, then each class.
        spread: Spread of the trees, ``(N, K)``.
    """

    dice: np.ndarray
    low: np.ndarray
    high: np.ndarray
    per_class: np.ndarray
    per_class_low: np.ndarray
    per_class_high: np.ndarray
    raw: np.ndarray
    spread: np.ndarray

    @classmethod
    def concatenate(cls, parts: list[QualityEstimate]) -> QualityEstimate:
        """The estimates of several batches as one, in order."""
        return cls(*(np.concatenate([getattr(part, name) for part in parts])
                     for name in ("dice", "low", "high", "per_class", "per_class_low", "per_class_high", "raw",
                                  "spread")))


def _regressor(seed: int) -> ExtraTreesRegressor:
    return ExtraTreesRegressor(n_estimators=200, min_samples_leaf=3, max_features=0.5, random_state=seed, n_jobs=1)


class QualityEstimator:
    """Features -> predicted Dice (mean and per class) with conformal intervals.

    Args:
        coverage: Share of held-out true Dice values the intervals should hold.
        seed: Seed of the trees and folds.

    Attributes:
        features_: Training features ``(M, F)``.
        targets_: Training targets ``(M, K)``: mean Dice, then each class's.
        held_out_: Out-of-fold predictions of each training example, ``(M, K)`` (``(M,)``, the mean only, in
            bundles written before the per-class intervals; ``None`` before it was kept).
        held_out_spread_: Out-of-fold spread of the trees, ``(M, K)`` (``None`` in older bundles).
        trees_: The fitted trees as arrays.
        sources_: Distinct sources of the teaching set.
        calibration_: Where the intervals come from and how they are made.
    """

    def __init__(self, coverage: float = 0.8, seed: int = 0) -> None:
        self.coverage = coverage
        self.seed = seed

    def fit(self, features: np.ndarray, targets: np.ndarray, groups: np.ndarray) -> QualityEstimator:
        """Fit the regressor and its intervals.

        Args:
            features: ``(M, F)`` from :func:`~segqc.quality.features.quality_features`.
            targets: ``(M, K)`` true Dice: mean over foreground classes, then each class.
            groups: ``(M,)`` source of each example (degradations of one mask
                share a group, so out-of-fold residuals are honest).

        Returns:
            self
        """
        self.features_, self.targets_ = np.asarray(features, np.float64), np.asarray(targets, np.float64)
        folds = min(_FOLDS, len(np.unique(groups)))
        self.held_out_ = np.empty(self.targets_.shape)
        self.held_out_spread_ = np.empty(self.targets_.shape)
        for fit_rows, test_rows in GroupKFold(folds).split(self.features_, groups=groups):
            trees = TreeEnsemble.from_sklearn(_regressor(self.seed).fit(self.features_[fit_rows],
                                                                        self.targets_[fit_rows]))
            predicted, spread = trees.predict(self.features_[test_rows])
            self.held_out_[test_rows], self.held_out_spread_[test_rows] = np.clip(predicted, 0, 1), spread
        self.trees_ = TreeEnsemble.from_sklearn(_regressor(self.seed).fit(self.features_, self.targets_))
        self.sources_ = len(np.unique(groups))
        self.calibration_ = self_made(self.held_out_, self.targets_, self.held_out_spread_, self.coverage,
                                      self.sources_)
        return self

    def recalibrated(self, coverage: float) -> QualityEstimator:
        """The same estimator with its intervals recomputed for another ``coverage`` (no refitting).

        Raises:
            ValueError: ``coverage`` outside (0, 1), or an estimator read from a
                bundle written before the out-of-fold predictions were kept.
        """
        return self.with_calibration(self.calibration_.with_coverage(coverage))

    def with_calibration(self, calibration: DiceCalibration) -> QualityEstimator:
        """The same regressor with intervals (and corrections) from ``calibration``."""
        other = copy.copy(self)
        other.calibration_, other.coverage = calibration, calibration.coverage
        return other

    def raw_predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The regressor's predictions and the spread of its trees, each ``(N, K)``, before any correction."""
        predicted, spread = self.trees_.predict(np.asarray(features, np.float64))
        return np.clip(predicted, 0, 1), spread

    def predict(self, features: np.ndarray) -> QualityEstimate:
        """Predicted Dice and intervals of each case, ``features`` ``(N, F)``."""
        raw, spread = self.raw_predict(features)
        dice, low, high = self.calibration_.apply(raw, spread)
        return QualityEstimate(dice[:, 0], low[:, 0], high[:, 0], dice[:, 1:], low[:, 1:], high[:, 1:], raw, spread)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the estimator (no pickle)."""
        arrays = {"features": self.features_, "targets": self.targets_,
                  "settings": np.array([self.coverage, self.seed, self.sources_]),
                  **{f"trees_{k}": v for k, v in self.trees_.to_arrays().items()}}
        if self.held_out_ is not None:
            arrays["held_out"] = self.held_out_
        if self.held_out_spread_ is not None:
            arrays["held_out_spread"] = self.held_out_spread_
        if self.calibration_.source != SELF_MADE:
            arrays.update({f"calibration_{k}": v for k, v in self.calibration_.to_arrays().items()})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> QualityEstimator:
        """Inverse of :meth:`to_arrays`; bundles written before the trees were kept refit them (deterministically).

        Raises:
            ValueError: Inconsistent arrays.
        """
        coverage, seed, *sources = arrays["settings"]
        estimator = cls(float(coverage), int(seed))
        estimator.sources_ = int(sources[0]) if sources else 0  # not kept before the labelled calibration
        estimator.features_, estimator.targets_ = arrays["features"], arrays["targets"]
        estimator.held_out_, estimator.held_out_spread_ = arrays.get("held_out"), arrays.get("held_out_spread")
        trees = {k.removeprefix("trees_"): v for k, v in arrays.items() if k.startswith("trees_")}
        estimator.trees_ = TreeEnsemble.from_arrays(trees) if trees else TreeEnsemble.from_sklearn(
            _regressor(estimator.seed).fit(estimator.features_, estimator.targets_))
        calibration = {k.removeprefix("calibration_"): v for k, v in arrays.items() if k.startswith("calibration_")}
        estimator.calibration_ = (DiceCalibration.from_arrays(calibration) if calibration
                                  else estimator._self_made_calibration(arrays))
        return estimator

    def _self_made_calibration(self, arrays: dict[str, np.ndarray]) -> DiceCalibration:
        """The self-made calibration of a bundle, also of the formats written before per-class intervals."""
        held_out, spread = self.held_out_, self.held_out_spread_
        if held_out is None:  # the oldest bundles: fixed offsets for the mean only
            offsets = OffsetInterval(arrays["bin_edges"], arrays["below"], arrays["above"], self.coverage)
            return DiceCalibration(SELF_MADE, [offsets], [None], len(self.targets_), self.sources_)
        if held_out.ndim == 1:  # the mean only, and no spreads
            return self_made(held_out[:, None], self.targets_[:, :1], np.zeros((len(held_out), 1)), self.coverage,
                             self.sources_)
        return self_made(held_out, self.targets_, spread, self.coverage, self.sources_)
