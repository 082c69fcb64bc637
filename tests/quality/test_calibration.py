"""Calibration on labelled cases: bias correction only when it pays, per-class intervals, warnings and limits."""

from __future__ import annotations

import numpy as np
import pytest

from segqc.quality.calibration import MIN_LABELLED_CASES, RECOMMENDED_LABELLED_CASES, DiceCalibration, from_labelled
from segqc.quality.intervals import LABELLED


def labelled(n: int, rng: np.random.Generator, bias: float = 0.0) -> tuple[np.ndarray, ...]:
    """Raw predictions of mean and two classes ``(n, 3)``, spreads, true Dice (over-estimated by ``bias``), groups."""
    predicted = rng.uniform(0.2, 1.0, (n, 3))
    spread = rng.uniform(0.01, 0.1, (n, 3))
    true = np.clip(predicted - bias * (1 - predicted) + spread * rng.standard_normal((n, 3)), 0, 1)
    return predicted, true, spread, np.arange(n) // 2  # two cases per source


def test_a_systematic_bias_is_corrected_and_lowers_the_error() -> None:
    rng = np.random.default_rng(0)
    predicted, true, spread, groups = labelled(120, rng, bias=0.4)
    found = from_labelled(predicted, true, spread, groups, 0.8)
    assert found.calibration.bias[0] is not None and found.mae_after < 0.8 * found.mae_before
    test_predicted, test_true, test_spread, _ = labelled(2000, rng, bias=0.4)
    dice, low, high = found.calibration.apply(test_predicted, test_spread)
    assert np.abs(dice[:, 0] - test_true[:, 0]).mean() < np.abs(test_predicted[:, 0] - test_true[:, 0]).mean()
    assert abs(((test_true >= low) & (test_true <= high)).mean() - 0.8) < 0.06


def test_no_correction_where_there_is_no_bias() -> None:
    rng = np.random.default_rng(1)
    predicted, true, spread, groups = labelled(60, rng)
    found = from_labelled(predicted, true, spread, groups, 0.8)
    assert all(bias is None for bias in found.calibration.bias)
    assert found.mae_after == found.mae_before and not found.warning


def test_few_cases_warn_and_too_few_are_refused() -> None:
    rng = np.random.default_rng(2)
    predicted, true, spread, groups = labelled(RECOMMENDED_LABELLED_CASES - 5, rng)
    assert str(RECOMMENDED_LABELLED_CASES) in from_labelled(predicted, true, spread, groups, 0.8).warning
    with pytest.raises(ValueError, match=f"need at least {MIN_LABELLED_CASES}"):
        from_labelled(predicted[:4], true[:4], spread[:4], groups[:4], 0.8)


def test_a_class_without_enough_known_dice_gets_no_interval() -> None:
    rng = np.random.default_rng(3)
    predicted, true, spread, groups = labelled(30, rng)
    true[3:, 2] = np.nan
    calibration = from_labelled(predicted, true, spread, groups, 0.9).calibration
    _, low, high = calibration.apply(predicted, spread)
    assert np.isfinite(low[:, :2]).all() and np.isnan(low[:, 2]).all()


def test_the_calibration_survives_its_arrays_and_says_where_it_comes_from() -> None:
    rng = np.random.default_rng(4)
    predicted, true, spread, groups = labelled(80, rng, bias=0.3)
    calibration = from_labelled(predicted, true, spread, groups, 0.9).calibration
    again = DiceCalibration.from_arrays(calibration.to_arrays())
    for a, b in zip(again.apply(predicted, spread), calibration.apply(predicted, spread)):
        np.testing.assert_array_equal(a, b)
    described = again.describe()
    assert described["source"] == LABELLED and described["cases"] == 80 and described["sources"] == 40
    assert "80 labelled cases" in described["text"] and described["coverage"] == 0.9
