"""The quality estimator: features of a case -> predicted Dice with an interval.

* a **regressor** (:class:`QualityEstimator`, scikit-learn extra trees, mean
  and per-class Dice as outputs) fitted at training time on the teaching set
  (:mod:`segqc.quality.teaching`): masks of known Dice made from held-out
  correct masks, described by :mod:`segqc.quality.features`;
* an **interval** from held-out residuals: grouped cross-fitting gives each
  training example an out-of-fold prediction; the residual quantiles, per bin
  of predicted Dice (Mondrian split conformal), widen each estimate into
  ``[low, high]`` at the configured coverage. Verdicts from the interval are
  :func:`segqc.verdicts.quality_verdicts`.

Nothing is pickled: the bundle stores the regressor's training set (features,
targets) and the residual quantiles as arrays; the trees are refitted
deterministically when the bundle is read.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.model_selection import GroupKFold

_BINS = 4
_FOLDS = 5


@dataclass
class QualityEstimate:
    """Predicted Dice of each case.

    Attributes:
        dice: Mean Dice over foreground classes, ``(N,)``.
        low: Lower end of the interval, ``(N,)``.
        high: Upper end of the interval, ``(N,)``.
        per_class: Dice of each foreground class, ``(N, K-1)``.
    """

    dice: np.ndarray
    low: np.ndarray
    high: np.ndarray
    per_class: np.ndarray


def _regressor(seed: int) -> ExtraTreesRegressor:
    return ExtraTreesRegressor(n_estimators=200, min_samples_leaf=3, max_features=0.5, random_state=seed, n_jobs=1)


class QualityEstimator:
    """Features -> predicted Dice (mean and per class) with a conformal interval.

    Args:
        coverage: Share of held-out true Dice values the interval should hold.
        seed: Seed of the trees and folds.

    Attributes:
        features_: Training features ``(M, F)``.
        targets_: Training targets ``(M, K)``: mean Dice, then each class's.
        held_out_: Out-of-fold predicted mean Dice of each training example,
            ``(M,)`` (``None`` in bundles written before it was kept).
        bin_edges_: Predicted-Dice bin edges of the residual quantiles, ``(B + 1,)``.
        below_: Residual quantile under the estimate per bin, ``(B,)``.
        above_: Residual quantile over the estimate per bin, ``(B,)``.
    """

    def __init__(self, coverage: float = 0.8, seed: int = 0) -> None:
        self.coverage = coverage
        self.seed = seed

    def fit(self, features: np.ndarray, targets: np.ndarray, groups: np.ndarray) -> QualityEstimator:
        """Fit the regressor and its interval.

        Args:
            features: ``(M, F)`` from :func:`case_features`.
            targets: ``(M, K)`` true Dice: mean over foreground classes, then each class.
            groups: ``(M,)`` source of each example (degradations of one mask
                share a group, so out-of-fold residuals are honest).

        Returns:
            self
        """
        self.features_, self.targets_ = np.asarray(features, np.float64), np.asarray(targets, np.float64)
        folds = min(_FOLDS, len(np.unique(groups)))
        self.held_out_ = np.empty(len(self.targets_))
        for fit_rows, test_rows in GroupKFold(folds).split(self.features_, groups=groups):
            model = _regressor(self.seed).fit(self.features_[fit_rows], self.targets_[fit_rows])
            self.held_out_[test_rows] = np.clip(model.predict(self.features_[test_rows])[:, 0], 0, 1)
        self._calibrate()
        self._refit()
        return self

    def recalibrated(self, coverage: float) -> QualityEstimator:
        """The same estimator with its interval recomputed for another ``coverage`` (no refitting).

        Raises:
            ValueError: ``coverage`` outside (0, 1), or an estimator read from a
                bundle written before the out-of-fold predictions were kept.
        """
        if not 0 < coverage < 1:
            raise ValueError(f"interval coverage must lie in (0, 1), got {coverage}")
        if self.held_out_ is None:
            raise ValueError("this model was saved without the out-of-fold predictions a new interval coverage "
                             "needs; retrain it to change the coverage")
        other = copy.copy(self)
        other.coverage = coverage
        other._calibrate()
        return other

    def _calibrate(self) -> None:
        """Out-of-fold residual quantiles per bin of predicted Dice (each tail holds (1 - coverage) / 2)."""
        predicted, true = self.held_out_, self.targets_[:, 0]
        edges = np.unique(np.quantile(predicted, np.linspace(0, 1, _BINS + 1)))
        edges[0], edges[-1] = -np.inf, np.inf
        tail = (1 - self.coverage) / 2
        below, above = [], []
        for low, high in zip(edges[:-1], edges[1:]):
            residual = (true - predicted)[(predicted >= low) & (predicted < high)]
            residual = residual if len(residual) else true - predicted
            below.append(max(0.0, -float(np.quantile(residual, tail))))
            above.append(max(0.0, float(np.quantile(residual, 1 - tail))))
        self.bin_edges_, self.below_, self.above_ = edges, np.array(below), np.array(above)

    def _refit(self) -> None:
        self.model_ = _regressor(self.seed).fit(self.features_, self.targets_)

    def predict(self, features: np.ndarray) -> QualityEstimate:
        """Predicted Dice and interval of each case, ``features`` ``(N, F)``."""
        predicted = np.clip(self.model_.predict(np.asarray(features, np.float64)), 0, 1)
        dice = predicted[:, 0]
        return QualityEstimate(dice, *self.interval(dice), predicted[:, 1:])

    def interval(self, dice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` around predicted mean Dice values ``(N,)``, each ``(N,)``."""
        index = np.clip(np.searchsorted(self.bin_edges_, dice, side="right") - 1, 0, len(self.below_) - 1)
        return np.clip(dice - self.below_[index], 0, 1), np.clip(dice + self.above_[index], 0, 1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the estimator (no pickle)."""
        held_out = {} if self.held_out_ is None else {"held_out": self.held_out_}
        return {"features": self.features_, "targets": self.targets_, "bin_edges": self.bin_edges_,
                "below": self.below_, "above": self.above_, "settings": np.array([self.coverage, self.seed]),
                **held_out}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> QualityEstimator:
        """Inverse of :meth:`to_arrays` (the trees are refitted, deterministically)."""
        coverage, seed = arrays["settings"]
        estimator = cls(float(coverage), int(seed))
        estimator.features_, estimator.targets_ = arrays["features"], arrays["targets"]
        estimator.held_out_ = arrays.get("held_out")
        estimator.bin_edges_, estimator.below_, estimator.above_ = arrays["bin_edges"], arrays["below"], arrays["above"]
        estimator._refit()
        return estimator
