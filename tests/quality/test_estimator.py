"""The quality estimator: Dice learned from features, intervals that hold on exchangeable data."""

from __future__ import annotations

import numpy as np
import pytest

from segqc.quality.estimator import QualityEstimator


def test_estimator_learns_dice_with_honest_intervals() -> None:
    rng = np.random.default_rng(3)
    features = rng.uniform(0, 1, (900, 4))
    dice = np.clip(features[:, 0] * 0.8 + 0.2 * features[:, 1] + rng.normal(0, 0.05, 900), 0, 1)
    targets = np.column_stack([dice, dice, 1 - dice])
    groups = np.repeat(np.arange(150), 6)
    estimator = QualityEstimator(coverage=0.8).fit(features[:600], targets[:600], groups[:600])
    estimate = estimator.predict(features[600:])
    truth = dice[600:]
    assert np.abs(estimate.dice - truth).mean() < 0.08
    coverage = ((truth >= estimate.low) & (truth <= estimate.high)).mean()
    assert 0.7 <= coverage <= 0.95
    assert estimate.per_class.shape == (300, 2) and (estimate.low <= estimate.dice).all()
    restored = QualityEstimator.from_arrays(estimator.to_arrays()).predict(features[600:])
    np.testing.assert_array_equal(restored.dice, estimate.dice)
    np.testing.assert_array_equal(restored.high, estimate.high)


def fitted(coverage: float) -> tuple[QualityEstimator, np.ndarray]:
    rng = np.random.default_rng(4)
    features = rng.uniform(0, 1, (300, 3))
    dice = np.clip(0.3 + 0.6 * features[:, 0] + rng.normal(0, 0.05, 300), 0, 1)
    targets, groups = np.column_stack([dice, dice, 1 - dice]), np.arange(300) // 5
    return QualityEstimator(coverage=coverage).fit(features, targets, groups), features


def test_recalibrating_the_interval_matches_fitting_at_that_coverage() -> None:
    narrow, features = fitted(0.5)
    wide, _ = fitted(0.9)
    restored = QualityEstimator.from_arrays(narrow.to_arrays()).recalibrated(0.9)
    for a, b in zip((restored.predict(features).low, restored.predict(features).per_class_high),
                    (wide.predict(features).low, wide.predict(features).per_class_high)):
        np.testing.assert_array_equal(a, b)
    widths = [(e.high - e.low).mean() for e in (narrow.predict(features), wide.predict(features))]
    assert widths[1] > widths[0]
    assert narrow.coverage == 0.5, "recalibrating returns a new estimator"
    with pytest.raises(ValueError, match="coverage"):
        narrow.recalibrated(1.0)


def test_loading_reads_the_trees_instead_of_refitting(monkeypatch) -> None:
    estimator, features = fitted(0.8)
    arrays = estimator.to_arrays()
    monkeypatch.setattr("segqc.quality.estimator._regressor", lambda seed: pytest.fail("refitted at load"))
    restored = QualityEstimator.from_arrays(arrays)
    np.testing.assert_array_equal(restored.predict(features).dice, estimator.predict(features).dice)


def test_bundles_of_earlier_formats_still_give_intervals() -> None:
    estimator, features = fitted(0.8)
    current = estimator.predict(features)
    arrays = {k: v for k, v in estimator.to_arrays().items() if not k.startswith("trees_")
              and k != "held_out_spread"}
    mean_only = QualityEstimator.from_arrays({**arrays, "held_out": arrays["held_out"][:, 0]})  # refits the trees
    estimate = mean_only.predict(features)
    np.testing.assert_array_equal(estimate.dice, current.dice)
    assert np.isfinite(estimate.low).all() and np.isnan(estimate.per_class_low).all()
    oldest = {k: v for k, v in arrays.items() if k != "held_out"}
    oldest.update(bin_edges=np.array([-np.inf, 0.5, np.inf]), below=np.array([0.2, 0.1]),
                  above=np.array([0.1, 0.05]), settings=np.array([0.8, 0.0]))
    legacy = QualityEstimator.from_arrays(oldest)
    estimate = legacy.predict(features)
    np.testing.assert_allclose(estimate.high, np.clip(estimate.dice + np.where(estimate.dice < 0.5, 0.1, 0.05), 0, 1))
    with pytest.raises(ValueError, match="retrain"):
        legacy.recalibrated(0.9)
