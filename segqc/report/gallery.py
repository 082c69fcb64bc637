"""The report's gallery: which cases it shows, and keeping them while a large folder streams past.

The gallery holds the top-K cases by anomaly score and the cases whose
predicted Dice lies closest to the fail line (where review time changes the
most verdicts). Scoring streams cases in chunks and keeps no more than a
bounded pool of candidates (:class:`GalleryPool`), so memory does not grow
with the number of cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segqc.data.preprocess import PreparedCase

TOP_K = "top-k"
NEAR_FAIL_LINE = "near the fail line"


def gallery_cases(table: pd.DataFrame, top_k: int, dice_threshold: float) -> dict[str, str]:
    """Cases shown in the gallery and why: the top-K by score, and the cases closest to the fail line.

    The fail line is where predicted Dice meets the failure Dice. Up to
    ``top_k // 2`` cases nearest to it join the gallery (without a quality
    estimator: none).

    Args:
        table: Ranked scores table (``status``, ``rank``, ``case_id``, optionally ``predicted_dice``).
        top_k: Cases shown by score.
        dice_threshold: The failure Dice.

    Returns:
        ``{case_id: "top-k" | "near the fail line"}``.
    """
    ok = table[table["status"] == "ok"]
    chosen = {case: TOP_K for case in ok.loc[ok["rank"] <= top_k, "case_id"]}
    if "predicted_dice" in ok.columns:
        distance = (ok["predicted_dice"] - dice_threshold).abs()
        near = ok.loc[distance.sort_values(kind="stable").index, "case_id"]
        for case in [c for c in near if c not in chosen][:top_k // 2]:
            chosen[case] = NEAR_FAIL_LINE
    return chosen


@dataclass
class GalleryCandidate:
    """What a gallery panel needs of a scored case.

    Attributes:
        case: The prepared case (model-grid image and predicted mask).
        heat: Heat map, ``(*spatial)``.
        reconstruction: segqc's reconstruction, ``(*spatial)`` class indices.
        score: Anomaly score.
        predicted_dice: Predicted Dice, or ``nan`` without a quality estimator.
    """

    case: PreparedCase
    heat: np.ndarray
    reconstruction: np.ndarray
    score: float
    predicted_dice: float


@dataclass
class GalleryPool:
    """A bounded set of cases that may still enter the gallery.

    It keeps the ``2 top_k`` highest scores and the ``2 top_k`` predicted Dice
    values closest to the fail line, which contain every case
    :func:`gallery_cases` can choose (the margin covers ties).

    Attributes:
        top_k: The gallery's top-K.
        dice_threshold: The failure Dice.
        candidates: ``{case_id: candidate}``.
    """

    top_k: int
    dice_threshold: float
    candidates: dict[str, GalleryCandidate] = field(default_factory=dict)

    def offer(self, rows: list[dict[str, Any]], cases: list[PreparedCase], heat: np.ndarray,
              reconstruction: np.ndarray) -> None:
        """Consider a scored chunk.

        Args:
            rows: The chunk's score rows (``score``, optionally ``predicted_dice``), in case order.
            cases: The chunk's prepared cases.
            heat: ``(N, *spatial)`` heat maps.
            reconstruction: ``(N, *spatial)`` reconstructions.
        """
        for index, (row, case) in enumerate(zip(rows, cases)):
            # copies: a view would keep the whole chunk's arrays alive as long as the candidate
            self.candidates[case.case_id] = GalleryCandidate(case, heat[index].copy(), reconstruction[index].copy(),
                                                             row["score"], row.get("predicted_dice", float("nan")))
        self._prune()

    def merge(self, other: GalleryPool) -> None:
        """Add another pool's candidates (another rank's share)."""
        self.candidates.update(other.candidates)
        self._prune()

    def _prune(self) -> None:
        keep = 2 * self.top_k
        items = list(self.candidates.items())
        by_score = sorted(items, key=lambda item: -np.nan_to_num(item[1].score, nan=np.inf))[:keep]
        rated = [item for item in items if np.isfinite(item[1].predicted_dice)]
        by_line = sorted(rated, key=lambda item: abs(item[1].predicted_dice - self.dice_threshold))[:keep]
        self.candidates = dict(by_score + by_line)
