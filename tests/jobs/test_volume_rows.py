"""Volume verdicts: a volume is judged by its weakest structure as well as by its mean."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segqc.jobs.scored_cases import rank_table
from segqc.jobs.volume_rows import keep_failing_worst_slices


def _table(**structure_two: float) -> pd.DataFrame:
    return pd.DataFrame([
        {"case_id": "patient17", "status": "ok", "score": 3.0, "verdict": "review", "predicted_dice_low": 0.6,
         "predicted_dice_high": 0.85, "predicted_dice_1_low": 0.9, "predicted_dice_1_high": 0.97,
         "worst_slices_1": "40:0.91", "predicted_dice_2_low": structure_two["low"],
         "predicted_dice_2_high": structure_two["high"], "worst_slices_2": "12:0.21 13:0.30"},
        {"case_id": "patient18", "status": "ok", "score": 1.0, "verdict": "pass", "predicted_dice_low": 0.85,
         "predicted_dice_high": 0.95, "predicted_dice_1_low": 0.85, "predicted_dice_1_high": 0.95,
         "worst_slices_1": "3:0.88", "predicted_dice_2_low": np.nan, "predicted_dice_2_high": np.nan,
         "worst_slices_2": ""},
        {"case_id": "broken", "status": "error", "score": np.nan, "verdict": "error"},
    ])


def structure_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Verdicts of volume rows as ``segqc score`` gives them (worst structure), worst slices of failing ones."""
    return keep_failing_worst_slices(rank_table(table, None, "quality", 0.8, "worst"), [0, 1, 2])


@pytest.mark.parametrize(("low", "high", "expected"), [(0.3, 0.5, "fail"), (0.7, 0.9, "review"),
                                                       (0.85, 0.9, "review")])
def test_a_failing_structure_gives_the_volume_its_verdict(low: float, high: float, expected: str) -> None:
    table = structure_verdicts(_table(low=low, high=high))
    first = table.iloc[0]
    assert first["verdict_1"] == "pass" and first["worst_slices_1"] == ""  # passing structures list no slices
    assert first["verdict_2"] == ("pass" if low >= 0.8 else expected)
    assert first["verdict"] == expected  # the mean's review stands unless a structure is worse
    assert first["worst_slices_2"] == ("" if first["verdict_2"] == "pass" else "12:0.21 13:0.30")


def test_absent_structures_and_errors_get_no_structure_verdict() -> None:
    table = structure_verdicts(_table(low=0.3, high=0.5))
    assert table.loc[1, "verdict_2"] == "" and table.loc[1, "verdict"] == "pass"
    assert table.loc[2, "verdict"] == "error" and table.loc[2, "verdict_1"] == ""
