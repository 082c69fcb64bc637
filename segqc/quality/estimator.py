"""Predicted Dice: a quality estimate a reviewer can act on, with an interval and a verdict.

The anomaly score ranks masks but has no units. This module turns what the
trained score model knows about a case into an estimate of the mask's Dice:

* **features** of a case (:func:`case_features`): per-level score norms per
  pixel, the anomaly score, heat-map statistics (overall, inside the predicted
  foreground, where prediction and reconstruction disagree), and **agreement
  with segqc's own reconstruction**: the mask the denoiser infers from the
  image alone at the highest noise level (the location mixed towards uniform
  hides the mask, so the network must read the image). Hard and soft Dice
  between prediction and reconstruction, per class, and the area of each;
  and the **image evidence along each predicted boundary**
  (:func:`boundary_features`): a correct boundary sits on an intensity edge and
  a quiet heat map, so small structures are judged by local evidence rather
  than by their size alone;
* a **regressor** (:class:`QualityEstimator`, scikit-learn extra trees, mean
  and per-class Dice as outputs) fitted at training time on self-generated
  degradations of held-out correct masks (:mod:`segqc.synthetic.corruptions`), whose true
  Dice is known;
* an **interval** from held-out residuals: grouped cross-fitting gives each
  training example an out-of-fold prediction; the residual quantiles, per bin
  of predicted Dice (Mondrian split conformal), widen each estimate into
  ``[low, high]`` at the configured coverage;
* a **verdict** (:func:`quality_verdicts`): ``fail`` when the whole interval
  lies below the failure Dice, ``review`` when it straddles it, ``pass`` when it
  lies above.

Nothing is pickled: the bundle stores the regressor's training set (features,
targets) and the residual quantiles as arrays; the trees are refitted
deterministically when the bundle is read.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.model_selection import GroupKFold

_EPS = 1e-6
_BINS = 4
_FOLDS = 5
_BAND = 3


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


def dice_per_class(prediction: np.ndarray, reference: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of every foreground class between two batches of class-index masks.

    A class absent from both masks scores 1 (segqc's convention, see
    ``docs/report-format.md``).

    Args:
        prediction: ``(N, *spatial)`` class indices.
        reference: ``(N, *spatial)`` class indices.
        num_classes: ``K``.

    Returns:
        ``(N, K-1)`` Dice values.
    """
    batch = prediction.reshape(len(prediction), -1)
    other = reference.reshape(len(reference), -1)
    values = []
    for label in range(1, num_classes):
        a, b = batch == label, other == label
        total = a.sum(1) + b.sum(1)
        values.append(np.where(total > 0, 2 * (a & b).sum(1) / np.maximum(total, 1), 1.0))
    return np.stack(values, 1) if values else np.ones((len(batch), 0))


def mean_dice(per_class: np.ndarray, prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean over the foreground classes present in either mask (1 when neither has foreground), ``(N,)``."""
    flat_a = prediction.reshape(len(prediction), -1)
    flat_b = reference.reshape(len(reference), -1)
    present = np.stack([((flat_a == c) | (flat_b == c)).any(1) for c in range(1, per_class.shape[1] + 1)], 1)
    counts = present.sum(1)
    return np.where(counts > 0, (per_class * present).sum(1) / np.maximum(counts, 1), 1.0)


def case_features(norms: np.ndarray, scores: np.ndarray, heat: np.ndarray, masks: np.ndarray,
                  reconstruction: np.ndarray) -> np.ndarray:
    """Features of each case for the quality regressor.

    Args:
        norms: Squared score norms per level, ``(N, L)``.
        scores: Anomaly scores, ``(N,)``.
        heat: Heat maps, ``(N, *spatial)``.
        masks: Predicted class indices, ``(N, *spatial)``.
        reconstruction: segqc's reconstruction as class probabilities, ``(N, K, *spatial)``.

    Returns:
        ``(N, F)`` float64 features, ``F = L + 6 + 5 (K - 1)``.
    """
    count, num_classes = len(masks), reconstruction.shape[1]
    pixels = masks[0].size
    flat_masks = masks.reshape(count, -1)
    flat_heat = heat.reshape(count, -1).astype(np.float64)
    probabilities = reconstruction.reshape(count, num_classes, -1).astype(np.float64)
    rebuilt = probabilities.argmax(1)
    foreground = flat_masks > 0
    disagree = flat_masks != rebuilt
    hard = dice_per_class(flat_masks, rebuilt, num_classes)
    columns = [np.log1p(norms / pixels), np.sign(scores) * np.log1p(np.abs(scores)),
               np.log1p(flat_heat.mean(1)), np.log1p(np.percentile(flat_heat, 99, axis=1)),
               np.log1p((flat_heat * foreground).sum(1) / (foreground.sum(1) + 1)),
               np.log1p((flat_heat * disagree).sum(1) / pixels), disagree.mean(1),
               mean_dice(hard, flat_masks, rebuilt)]
    for label in range(1, num_classes):
        predicted = flat_masks == label
        soft = probabilities[:, label]
        area, rebuilt_area = predicted.mean(1), (rebuilt == label).mean(1)
        soft_dice = 2 * (soft * predicted).sum(1) / (soft.sum(1) + predicted.sum(1) + _EPS)
        columns += [hard[:, label - 1], soft_dice, area, rebuilt_area,
                    np.log((area + 1 / pixels) / (rebuilt_area + 1 / pixels))]
    return np.column_stack(columns).astype(np.float64)


def boundary_features(images: np.ndarray, masks: np.ndarray, heat: np.ndarray, num_classes: int,
                      band: int = _BAND) -> np.ndarray:
    """Image and heat-map evidence along the boundary of each predicted foreground class.

    For each class, with the inner band the predicted voxels within ``band``
    steps of the boundary and the outer band the voxels within ``band`` steps
    outside it: the contrast of the whole class and of its inner band against
    the outer band (in units of the image's standard deviation), the gradient
    magnitude on the boundary relative to the image's mean gradient magnitude,
    and the mean heat over both bands. A class absent from the mask gives zeros.

    Args:
        images: ``(N, C, *spatial)`` preprocessed images (channels averaged).
        masks: ``(N, *spatial)`` predicted class indices.
        heat: ``(N, *spatial)`` heat maps.
        num_classes: ``K``.
        band: Width of each band in voxels.

    Returns:
        ``(N, 4 (K - 1))`` float64 features.
    """
    count, spatial = len(masks), masks.ndim - 1
    intensity = images.astype(np.float64).mean(1)
    spread = intensity.reshape(count, -1).std(1) + _EPS
    gradient = np.sqrt(sum(part ** 2 for part in np.gradient(intensity, axis=tuple(range(1, spatial + 1)))))
    relative_gradient = gradient.reshape(count, -1) / (gradient.reshape(count, -1).mean(1, keepdims=True) + _EPS)
    flat_intensity, flat_heat = intensity.reshape(count, -1), heat.reshape(count, -1).astype(np.float64)
    # Neighbours along the spatial axes only: each case is dilated on its own.
    step = ndimage.generate_binary_structure(spatial, 1)[None]

    def mean_over(values: np.ndarray, where: np.ndarray) -> np.ndarray:
        return (values * where).sum(1) / np.maximum(where.sum(1), 1)

    columns = []
    for label in range(1, num_classes):
        predicted = masks == label
        outer = (ndimage.binary_dilation(predicted, step, band) & ~predicted).reshape(count, -1)
        inner = (predicted & ~ndimage.binary_erosion(predicted, step, band, border_value=1)).reshape(count, -1)
        edge = (predicted & ~ndimage.binary_erosion(predicted, step, 1, border_value=1)).reshape(count, -1)
        flat = predicted.reshape(count, -1)
        present = flat.any(1) & outer.any(1)
        outside = mean_over(flat_intensity, outer)
        evidence = np.column_stack([(mean_over(flat_intensity, flat) - outside) / spread,
                                    (mean_over(flat_intensity, inner) - outside) / spread,
                                    mean_over(relative_gradient, edge),
                                    np.log1p(mean_over(flat_heat, inner | outer))])
        columns.append(np.where(present[:, None], evidence, 0.0))
    return np.column_stack(columns) if columns else np.zeros((count, 0))


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


def quality_verdicts(low: np.ndarray, high: np.ndarray, dice_threshold: float) -> np.ndarray:
    """``fail`` when the interval lies below ``dice_threshold``, ``review`` when it straddles it, else ``pass``."""
    return np.where(high < dice_threshold, "fail", np.where(low < dice_threshold, "review", "pass")).astype(object)
