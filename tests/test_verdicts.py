"""Verdicts and ranks: the interval rule, the score thresholds and rank order."""

from __future__ import annotations

import numpy as np
import pytest

from segqc.verdicts import Calibration, quality_verdicts, ranks


def test_verdicts_follow_the_interval() -> None:
    verdicts = quality_verdicts(np.array([0.1, 0.7, 0.85, 0.8]), np.array([0.7, 0.9, 0.95, 0.99]), 0.8)
    assert list(verdicts) == ["fail", "review", "pass", "pass"]


def test_calibration_quantiles_and_verdicts() -> None:
    calibration = Calibration.from_scores(np.arange(101.0), 0.9, 0.99)
    assert calibration.review == pytest.approx(90.0) and calibration.fail == pytest.approx(99.0)
    verdicts = calibration.verdicts(np.array([10.0, 95.0, 100.0, np.nan]))
    assert verdicts.tolist() == ["pass", "review", "fail", "fail"]
    with pytest.raises(ValueError):
        Calibration.from_scores([1.0, 2.0], 0.99, 0.9)


def test_ranks_put_the_highest_score_first() -> None:
    assert ranks([0.1, 5.0, 3.0, 5.0]).tolist() == [4, 1, 3, 2]
