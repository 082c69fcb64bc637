"""Conformal intervals: finite-sample quantiles, coverage on exchangeable data, widths that follow difficulty."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segqc.quality.intervals import MIN_DIFFICULTY, ConformalInterval, conformal_bounds


def exchangeable(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted Dice, tree spreads and true Dice whose error grows with the spread (heteroscedastic)."""
    predicted = rng.uniform(0.3, 0.95, n)
    spread = rng.uniform(0.01, 0.15, n)
    true = np.clip(predicted + spread * rng.standard_t(5, n) - 0.02, 0, 1)
    return predicted, spread, true


def test_conformal_bounds_are_the_finite_sample_order_statistics() -> None:
    scores = np.arange(1.0, 21.0)  # n = 20
    assert conformal_bounds(scores, 0.8) == (2.0, 19.0)  # floor(21 * 0.1) = 2, ceil(21 * 0.9) = 19
    assert conformal_bounds(scores, 0.9) == (1.0, 20.0)
    low, high = conformal_bounds(scores[:5], 0.9)  # too few cases: unbounded
    assert low == -math.inf and high == math.inf


@pytest.mark.parametrize("coverage", [0.8, 0.9])
@pytest.mark.parametrize("n", [20, 50, 200])
def test_calibrated_intervals_cover_their_nominal_share_of_exchangeable_cases(coverage: float, n: int) -> None:
    rng = np.random.default_rng(n)
    achieved = []
    for _ in range(200):
        predicted, spread, true = exchangeable(n, rng)
        interval = ConformalInterval.fit(predicted, true, spread, coverage)
        predicted, spread, true = exchangeable(400, rng)
        low, high = interval.bounds(predicted, spread)
        achieved.append(((true >= low) & (true <= high)).mean())
    # split conformal: E[coverage] lies in [1 - a, 1 - a + 2 / (n + 1)]; 200 repetitions give a sampling error ~0.005
    assert coverage - 0.015 <= np.mean(achieved) <= coverage + 2 / (n + 1) + 0.015


def test_widths_follow_the_difficulty() -> None:
    rng = np.random.default_rng(0)
    predicted, spread, true = exchangeable(500, rng)
    interval = ConformalInterval.fit(predicted, true, spread, 0.8)
    low, high = interval.bounds(np.full(2, 0.7), np.array([0.01, 0.12]))
    assert high[1] - low[1] > 5 * (high[0] - low[0])
    floor_low, floor_high = interval.bounds(np.array([0.7]), np.array([0.0]))
    np.testing.assert_allclose(floor_high - floor_low, (high[0] - low[0]) * MIN_DIFFICULTY / 0.02)


def test_mondrian_bins_keep_coverage_within_each_bin() -> None:
    rng = np.random.default_rng(1)
    predicted = rng.uniform(0, 1, 4000)
    true = np.clip(predicted + np.where(predicted < 0.5, 0.2, 0.02) * rng.standard_normal(4000), 0, 1)  # noisier low
    spread = np.zeros(4000)
    binned = ConformalInterval.fit(predicted, true, spread, 0.8, bins=4)
    test = rng.uniform(0, 1, 4000)
    truth = np.clip(test + np.where(test < 0.5, 0.2, 0.02) * rng.standard_normal(4000), 0, 1)
    low, high = binned.bounds(test, np.zeros(4000))
    inside = (truth >= low) & (truth <= high)
    assert abs(inside[test < 0.5].mean() - 0.8) < 0.04 and abs(inside[test >= 0.5].mean() - 0.8) < 0.04


def test_arrays_round_trip_and_other_coverages() -> None:
    rng = np.random.default_rng(2)
    predicted, spread, true = exchangeable(300, rng)
    interval = ConformalInterval.fit(predicted, true, spread, 0.8, bins=2)
    again = ConformalInterval.from_arrays(interval.to_arrays())
    np.testing.assert_array_equal(again.bounds(predicted, spread)[1], interval.bounds(predicted, spread)[1])
    wide = interval.with_coverage(0.95).bounds(predicted, spread)
    narrow = interval.bounds(predicted, spread)
    assert (wide[1] - wide[0] >= narrow[1] - narrow[0] - 1e-12).all()
    with pytest.raises(ValueError, match="coverage"):
        interval.with_coverage(1.0)


def test_every_interval_holds_its_own_estimate() -> None:
    """A bin whose residuals all lie above the estimate (the estimate is low there) ends at the estimate."""
    rng = np.random.default_rng(3)
    predicted = rng.uniform(0, 1, 400)
    true = np.clip(predicted + np.where(predicted > 0.5, 0.05 + 0.01 * rng.random(400), 0.1 * rng.standard_normal(400)),
                   0, 1)
    interval = ConformalInterval.fit(predicted, true, np.zeros(400), 0.8, bins=2)
    test = np.linspace(0.55, 0.9, 8)
    low, high = interval.bounds(test, np.zeros(8))
    np.testing.assert_allclose(low, test)
    assert (high >= test + 0.05).all()
