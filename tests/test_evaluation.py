"""Correlation and failure-detection figures against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from segqc.report.summary import (aurc, correlations, failure_detection, predicted_dice_agreement, score_quantiles,
                              summarise_metrics, top_k_indices, verdict_quality)

# Five cases listed out of score order; by score 1..5 the Dice is 0.9, 0.9, 0.6, 0.5, 0.1.
SCORES = [3.0, 1.0, 5.0, 2.0, 4.0]
DICE = [0.6, 0.9, 0.1, 0.9, 0.5]


def test_correlations_by_hand() -> None:
    # Pearson. Scores 1..5: mean 3, deviations -2..2, Sxx = 10.
    # Dice by score: mean 3.0 / 5 = 0.6, deviations .3, .3, 0, -.1, -.5;
    # Sxy = -.6 - .3 + 0 - .1 - 1.0 = -2.0; Syy = .09 + .09 + 0 + .01 + .25 = .44;
    # r = -2 / sqrt(10 * .44) = -2 / sqrt(4.4).
    # Spearman. Dice ranks by score: 4.5, 4.5, 3, 2, 1 (tie averaged); mean 3,
    # deviations 1.5, 1.5, 0, -1, -2; Sxy = -3 - 1.5 - 1 - 4 = -9.5; Syy = 9.5;
    # rho = -9.5 / sqrt(10 * 9.5) = -sqrt(0.95).
    # Top 3 (scores 5, 4, 3; Dice .1, .5, .6): score deviations 1, 0, -1 (Sxx 2);
    # Dice mean .4, deviations -.3, .1, .2; Sxy = -.3 - .2 = -.5; Syy = .14;
    # r = -.5 / sqrt(2 * .14) = -.5 / sqrt(.28); ranks perfectly reversed: rho = -1.
    result = correlations(SCORES, DICE, top_k=3)
    assert result["pearson"] == pytest.approx(-2 / math.sqrt(4.4))
    assert result["spearman"] == pytest.approx(-math.sqrt(0.95))
    assert result["pearson_top_k"] == pytest.approx(-0.5 / math.sqrt(0.28))
    assert result["spearman_top_k"] == pytest.approx(-1.0)
    assert (result["n"], result["n_top_k"]) == (5, 3)


def test_correlations_drop_nan_pairs_and_report_undefined_as_none() -> None:
    # A sixth case with the highest score but no metric: dropped pairwise, so the
    # overall figures are unchanged; it takes a top-3 place, leaving 2 pairs.
    result = correlations(SCORES + [6.0], DICE + [float("nan")], top_k=3)
    assert result["pearson"] == pytest.approx(-2 / math.sqrt(4.4))
    assert (result["n"], result["n_top_k"]) == (5, 2)
    assert result["pearson_top_k"] is None and result["spearman_top_k"] is None
    constant = correlations(SCORES, [0.7] * 5, top_k=5)
    assert constant["pearson"] is None and constant["spearman"] is None
    assert correlations([1.0, 2.0], [0.5, 0.4], top_k=2)["pearson"] is None


def test_top_k_larger_than_cases_uses_all() -> None:
    result = correlations(SCORES, DICE, top_k=50)
    assert result["pearson_top_k"] == pytest.approx(result["pearson"])
    assert result["n_top_k"] == 5


def test_top_k_selection_takes_highest_scores_first() -> None:
    assert top_k_indices(np.array(SCORES), 3).tolist() == [2, 4, 0]
    assert top_k_indices(np.array([1.0, 2.0, 2.0]), 2).tolist() == [1, 2]


def test_failure_detection_by_hand() -> None:
    # Threshold 0.8: Dice .9 and .85 pass; .6 and NaN fail.
    # AUROC: failures score .35, .8; passes .1, .4. Pairs where the failure
    # scores higher: (.35, .1), (.8, .1), (.8, .4) -> 3 of 4 = 0.75.
    # AP: by score descending .8 F, .4 P, .35 F, .1 P; precision at each
    # failure 1/1, 2/3 -> (1 + 2/3) / 2 = 5/6.
    # AURC: by score ascending .1, .35, .4, .8 with risk .1, .4, .15, 1 (NaN -> 1).
    # Mean risk of the first k: .1, .5/2 = .25, .65/3 = 13/60, 1.65/4 = .4125.
    # AURC = (6/60 + 15/60 + 13/60 + 24.75/60) / 4 = 58.75 / 240.
    result = failure_detection([0.1, 0.4, 0.35, 0.8], [0.9, 0.85, 0.6, float("nan")], dice_threshold=0.8)
    assert result["failures"] == 2
    assert result["auroc"] == pytest.approx(0.75)
    assert result["average_precision"] == pytest.approx(5 / 6)
    assert result["aurc"] == pytest.approx(58.75 / 240)
    assert result["dice_threshold"] == 0.8


def test_failure_detection_single_class_and_threshold_edge() -> None:
    result = failure_detection([0.1, 0.2, 0.3], [0.8, 0.9, 1.0], dice_threshold=0.8)  # 0.8 is not < 0.8
    assert result["failures"] == 0
    assert result["auroc"] is None and result["average_precision"] is None
    # Risks .2, .1, 0: mean risks .2, .15, .1 -> AURC .15.
    assert result["aurc"] == pytest.approx(0.15)
    assert failure_detection([], [])["aurc"] is None


def test_aurc_is_lowest_when_scores_rank_risk() -> None:
    risk = np.array([0.0, 0.1, 0.5, 0.9])
    assert aurc(np.array([1.0, 2.0, 3.0, 4.0]), risk) < aurc(np.array([4.0, 3.0, 2.0, 1.0]), risk)


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
    assert set(summary["correlations"]) == {"dice_mean", "msd", "hd95"}
    assert summary["correlations"]["dice_mean"]["pearson"] == pytest.approx(-2 / math.sqrt(4.4))
    assert summary["correlations"]["msd"]["n"] == 4
    assert summary["failure_detection"]["failures"] == 3
    assert summary["failure_detection"]["auroc"] == pytest.approx(1.0)


def test_verdict_quality_counts_false_alarms_and_misses() -> None:
    figures = verdict_quality(["pass", "review", "fail", "pass", "pass"], [0.95, 0.92, 0.5, 0.7, float("nan")], 0.8)
    assert figures == {"good": 2, "failed": 3, "false_alarms": 0.5, "misses": pytest.approx(2 / 3)}
    assert verdict_quality(["pass"], [0.85], 0.8)["false_alarms"] is None


def test_predicted_dice_agreement() -> None:
    table = pd.DataFrame({"predicted_dice": [0.9, 0.5, 0.2, 0.7], "predicted_dice_low": [0.8, 0.3, 0.0, 0.6],
                          "predicted_dice_high": [1.0, 0.6, 0.3, 0.8], "dice_mean": [0.95, 0.7, 0.1, 0.75]})
    figures = predicted_dice_agreement(table, 0.8)
    assert figures["mae"] == pytest.approx((0.05 + 0.2 + 0.1 + 0.05) / 4)
    assert figures["coverage"] == pytest.approx(0.75) and figures["spearman"] == pytest.approx(1.0)
    assert figures["auroc"] == pytest.approx(1.0)
