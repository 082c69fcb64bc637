"""Every ranking segqc produces against the same ground truth, and reading those figures from any summary.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from segqc.report.rankings import ranking_figures, rankings, read_rankings

INTERVAL = ["predicted_dice_low", "predicted_dice_high"]


@pytest.mark.parametrize(("columns", "expected"), [
    (["case_id", "score", "dice_mean"], ["score"]),
    (["score", "predicted_dice", *INTERVAL, "predicted_dice_1", "reconstruction_dice"],
     ["predicted_dice", "score", "reconstruction_dice"]),  # one foreground label: no per-structure ranking
    (["score", "predicted_dice", *INTERVAL, "predicted_dice_1", "predicted_dice_2", "reconstruction_dice"],
     ["predicted_dice", "score", "reconstruction_dice", "predicted_dice_1", "predicted_dice_2"]),
])
def test_rankings_of_a_table(columns: list[str], expected: list[str]) -> None:
    assert [ranking.name for ranking in rankings(columns)] == expected


def _table() -> pd.DataFrame:
    """Eight cases: predicted Dice ranks them perfectly, the anomaly score backwards; label 2's Dice is reversed."""
    dice = np.array([0.95, 0.9, 0.85, 0.82, 0.7, 0.5, 0.3, 0.1])
    return pd.DataFrame({
        "case_id": [f"c{i}" for i in range(9)], "status": ["ok"] * 8 + ["error"],
        "score": [*dice, np.nan], "predicted_dice": [*(dice - 0.02), np.nan],
        "predicted_dice_low": [*(dice - 0.1), np.nan], "predicted_dice_high": [*(dice + 0.05), np.nan],
        "predicted_dice_1": [*(dice - 0.02), np.nan], "predicted_dice_2": [*(dice[::-1]), np.nan],
        "reconstruction_dice": [0.9] * 8 + [np.nan], "dice_mean": [*dice, np.nan], "dice_1": [*dice, np.nan],
        "dice_2": [*dice[::-1], np.nan], "hd95": [*(1 / dice), np.nan],
    })


def test_every_ranking_is_measured_against_the_same_failures() -> None:
    figures = ranking_figures(_table(), top_k=3, dice_threshold=0.8)
    assert figures["headline_ranking"] == "predicted_dice"
    assert figures["rankings"]["predicted_dice"] == {"label": "predicted Dice", "risk": "1 - predicted_dice"}
    detection = figures["failure_detection"]
    assert {figures["failures"] for figures in detection.values()} == {4}  # mean Dice < 0.8, error row left out
    assert detection["predicted_dice"]["auroc"] == pytest.approx(1.0)
    assert detection["score"]["auroc"] == pytest.approx(0.0)  # higher score = higher Dice here: backwards
    assert detection["reconstruction_dice"]["auroc"] == pytest.approx(0.5)  # a constant ranks nothing
    correlated = figures["correlations"]
    assert correlated["predicted_dice"]["dice_mean"]["spearman"] == pytest.approx(-1.0)
    assert correlated["predicted_dice"]["hd95"]["spearman"] == pytest.approx(1.0)
    assert correlated["reconstruction_dice"]["dice_mean"]["spearman"] is None
    # a per-structure ranking also meets its own structure's Dice; label 2's estimate tracks it perfectly
    assert set(correlated["predicted_dice_2"]) == {"dice_mean", "hd95", "dice_2"}
    assert correlated["predicted_dice_2"]["dice_2"]["spearman"] == pytest.approx(-1.0)
    assert correlated["predicted_dice_2"]["dice_mean"]["spearman"] == pytest.approx(1.0)
    # top K: the K cases each ranking puts first
    assert correlated["predicted_dice"]["dice_mean"]["n_top_k"] == 3
    assert json.loads(json.dumps(figures)) == figures  # JSON as it is


def test_read_rankings_of_current_and_older_summaries() -> None:
    current = json.loads(json.dumps(ranking_figures(_table(), 3, 0.8)))
    read = read_rankings(current)
    assert read.headline == "predicted_dice" and list(read.labels)[:2] == ["predicted_dice", "score"]
    assert read.failure_detection == current["failure_detection"] and read.correlations == current["correlations"]
    legacy = {"failure_detection": {"dice_threshold": 0.8, "failures": 2, "auroc": 0.9, "average_precision": 0.8,
                                    "aurc": 0.1},
              "correlations": {"dice_mean": {"spearman": -0.6}, "msd": {"spearman": 0.5}}}
    read = read_rankings(legacy)
    assert read.headline == "score" and read.labels == {"score": "anomaly score"}
    assert read.failure_detection == {"score": legacy["failure_detection"]}
    assert read.correlations == {"score": legacy["correlations"]}
    assert not read_rankings({"verdicts": {}})
