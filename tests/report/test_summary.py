"""The summary figures of a run against hand-computed values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from segqc.report.summary import (
    predicted_dice_agreement,
    score_quantiles,
    summarise_metrics,
    verdict_quality,
)

# Five cases listed out of score order; by score 1..5 the Dice is 0.9, 0.9, 0.6, 0.5, 0.1.
SCORES = [3.0, 1.0, 5.0, 2.0, 4.0]
DICE = [0.6, 0.9, 0.1, 0.9, 0.5]


def test_score_quantiles() -> None:
    result = score_quantiles([float(v) for v in range(101)] + [float("nan")])
    assert result == {"min": 0.0, "p25": 25.0, "median": 50.0, "p75": 75.0, "p95": 95.0, "max": 100.0}
    assert score_quantiles([])["median"] is None


def test_summarise_metrics_excludes_error_rows() -> None:
    table = pd.DataFrame({
        "case_id": [f"c{i}" for i in range(6)],
        "status": ["ok"] * 5 + ["error"],
        "score": SCORES + [float("nan")],
        "dice_mean": DICE + [float("nan")],
        "msd": [1.0, 0.5, float("nan"), 0.6, 2.0, float("nan")],
        "hd95": [2.0, 1.0, 9.0, 1.5, 4.0, float("nan")],
    })
    summary = summarise_metrics(table, top_k=3, dice_threshold=0.8)
    assert summary["headline_ranking"] == "score" and list(summary["rankings"]) == ["score"]
    assert set(summary["correlations"]["score"]) == {"dice_mean", "msd", "hd95"}
    assert summary["correlations"]["score"]["dice_mean"]["pearson"] == pytest.approx(-2 / math.sqrt(4.4))
    assert summary["correlations"]["score"]["msd"]["n"] == 4
    assert summary["failure_detection"]["score"]["failures"] == 3
    assert summary["failure_detection"]["score"]["auroc"] == pytest.approx(1.0)
    assert "predicted_dice" not in summary and "verdict_quality" not in summary


def test_verdict_quality_counts_false_alarms_and_misses() -> None:
    figures = verdict_quality(["pass", "review", "fail", "pass", "pass"], [0.95, 0.92, 0.5, 0.7, float("nan")], 0.8)
    assert figures == {"good": 2, "failed": 3, "false_alarms": 0.5, "misses": pytest.approx(2 / 3)}
    assert verdict_quality(["pass"], [0.85], 0.8)["false_alarms"] is None


def test_predicted_dice_agreement() -> None:
    table = pd.DataFrame({"predicted_dice": [0.9, 0.5, 0.2, 0.7, float("nan")],
                          "predicted_dice_low": [0.8, 0.3, 0.0, 0.6, float("nan")],
                          "predicted_dice_high": [1.0, 0.6, 0.3, 0.8, float("nan")],
                          "dice_mean": [0.95, 0.7, 0.1, 0.75, 0.5]})
    figures = predicted_dice_agreement(table)
    assert figures == {"mae": pytest.approx((0.05 + 0.2 + 0.1 + 0.05) / 4), "coverage": pytest.approx(0.75),
                       "width": pytest.approx((0.2 + 0.3 + 0.3 + 0.2) / 4)}
    assert predicted_dice_agreement(table.iloc[4:]) == {"mae": None, "coverage": None, "width": None}
