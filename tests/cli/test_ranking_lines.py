"""The ranking lines the terminal prints carry summary.json's figures."""

from __future__ import annotations

import json

import pytest

from segqc.cli.terminal import ranking_lines


@pytest.fixture
def summary() -> dict:
    detection = {"dice_threshold": 0.8, "failures": 20}
    return {
        "headline_ranking": "predicted_dice",
        "rankings": {"predicted_dice": {"label": "predicted Dice"}, "score": {"label": "anomaly score"}},
        "failure_detection": {"predicted_dice": {**detection, "auroc": 0.94712, "average_precision": 0.9,
                                                 "aurc": 0.0512},
                              "score": {**detection, "auroc": 0.8333, "average_precision": None, "aurc": 0.1}},
        "correlations": {"predicted_dice": {"dice_mean": {"spearman": -0.8512}, "hd95": {"spearman": 0.61}},
                         "score": {"dice_mean": {"spearman": -0.6104}}},
    }


def test_ranking_lines_name_the_headline_and_print_the_same_figures(summary: dict) -> None:
    lines = ranking_lines(summary)
    assert lines[0] == "failure detection (Dice < 0.8: 20 failed), headline ranking: predicted Dice"
    assert lines[1].split() == ["predicted", "Dice", "AUROC", "0.947,", "AP", "0.900,", "AURC", "0.051;", "Spearman",
                                "with", "Dice", "-0.851,", "HD95", "0.610"]
    assert "anomaly score" in lines[2] and "AUROC 0.833, AP n/a" in lines[2] and "Dice -0.610" in lines[2]


def test_older_summaries_print_the_anomaly_score_only(summary: dict) -> None:
    legacy = {"failure_detection": summary["failure_detection"]["score"],
              "correlations": summary["correlations"]["score"]}
    lines = ranking_lines(json.loads(json.dumps(legacy)))
    assert lines[0].endswith("headline ranking: anomaly score") and len(lines) == 2
    assert ranking_lines({}) == []
