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


def test_recalibrating_the_interval_matches_fitting_at_that_coverage() -> None:
    rng = np.random.default_rng(4)
    features = rng.uniform(0, 1, (300, 3))
    dice = np.clip(0.3 + 0.6 * features[:, 0] + rng.normal(0, 0.05, 300), 0, 1)
    targets, groups = np.column_stack([dice, dice]), np.arange(300) // 5
    narrow = QualityEstimator(coverage=0.5).fit(features, targets, groups)
    wide = QualityEstimator(coverage=0.9).fit(features, targets, groups)
    restored = QualityEstimator.from_arrays(narrow.to_arrays()).recalibrated(0.9)
    np.testing.assert_array_equal(restored.below_, wide.below_)
    np.testing.assert_array_equal(restored.predict(features).low, wide.predict(features).low)
    assert (wide.below_ >= narrow.below_).all() and (wide.below_ > narrow.below_).any()
    assert narrow.coverage == 0.5, "recalibrating returns a new estimator"
    with pytest.raises(ValueError, match="coverage"):
        narrow.recalibrated(1.0)
    old = {k: v for k, v in narrow.to_arrays().items() if k != "held_out"}
    with pytest.raises(ValueError, match="retrain"):
        QualityEstimator.from_arrays(old).recalibrated(0.8)
