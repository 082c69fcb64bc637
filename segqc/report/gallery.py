"""The report's gallery: which cases it shows, and keeping them while a large folder streams past.

The gallery holds the top-K cases by anomaly score and the cases whose
predicted Dice lies closest to the fail line (where review time changes the
most verdicts). Scoring streams cases in chunks and keeps no more than a
bounded pool of candidates (:class:`GalleryPool`), so memory does not grow
with the number of cases; :func:`write_gallery` draws the chosen ones.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segqc.data.cases import PreparedCase
from segqc.report import heatmaps

TOP_K = "top-k"
NEAR_FAIL_LINE = "near the fail line"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_MAX_NAME = 120


def case_file_name(case_id: str) -> str:
    """A file name for a case's heat map / gallery panel, unique per case id.

    Safe characters are kept; an id that had to be changed (spaces, ``#`` of
    slices, non-ASCII letters) or shortened gets a hash of the original id, so
    ``"a b"`` and ``"a_b"`` never share a file.
    """
    safe = _SAFE_NAME.sub("_", case_id)
    if safe != case_id or len(safe) > _MAX_NAME:
        safe = f"{safe[:_MAX_NAME]}-{hashlib.sha256(case_id.encode('utf-8')).hexdigest()[:10]}"
    return safe


def heat_map_file(case_id: str, spatial_dims: int) -> str:
    """Where a case's heat map lies in the report directory: a PNG overlay (2D) or a NIfTI volume (3D)."""
    return f"heatmaps/{case_file_name(case_id)}.{'nii.gz' if spatial_dims == 3 else 'png'}"


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
        truth: Ground truth in the model grid, ``(*spatial)`` class indices, or ``None``.
    """

    case: PreparedCase
    heat: np.ndarray
    reconstruction: np.ndarray
    score: float
    predicted_dice: float
    truth: np.ndarray | None = None


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
              reconstruction: np.ndarray, truths: dict[str, np.ndarray]) -> None:
        """Consider a scored chunk.

        Args:
            rows: The chunk's score rows (``score``, optionally ``predicted_dice``), in case order.
            cases: The chunk's prepared cases.
            heat: ``(N, *spatial)`` heat maps.
            reconstruction: ``(N, *spatial)`` reconstructions.
            truths: Ground truth in the model grid by case id (cases without one are absent).
        """
        for index, (row, case) in enumerate(zip(rows, cases)):
            # copies: a view would keep the whole chunk's arrays alive as long as the candidate
            self.candidates[case.case_id] = GalleryCandidate(case, heat[index].copy(), reconstruction[index].copy(),
                                                             row["score"], row.get("predicted_dice", float("nan")),
                                                             truths.get(case.case_id))
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


def write_gallery(table: pd.DataFrame, pool: GalleryPool, staging: Path, previous: Path | None,
                  reused: Collection[str], spatial_dims: int, num_classes: int) -> pd.DataFrame:
    """Gallery panels of the cases :func:`gallery_cases` chooses; cases reused from ``previous`` get their old files.

    Args:
        table: The ranked scores table (its ``heatmap`` column names each case's heat-map file).
        pool: The candidates kept while scoring.
        staging: The report directory being written.
        previous: The report directory of the run being replaced, or ``None``.
        reused: Case ids whose rows were reused from an earlier run (``--incremental``).
        spatial_dims: The model's dimensionality.
        num_classes: ``K``.

    Returns:
        The table with the panels' paths in ``gallery`` and why each case is shown in ``gallery_reason``.
    """
    shown = gallery_cases(table, pool.top_k, pool.dice_threshold)
    heat_files = table.pop("heatmap").fillna("") if "heatmap" in table else ""
    table["heatmap"], table["gallery"] = heat_files, ""
    table["gallery_reason"] = [shown.get(case_id, "") for case_id in table["case_id"]]
    for index, row in table.iterrows():
        if row["status"] != "ok":
            continue
        gallery_file = f"gallery/{case_file_name(row['case_id'])}.png"
        if row["case_id"] in reused:  # carry the earlier run's files over when they exist
            for column, relative in (("heatmap", heat_map_file(row["case_id"], spatial_dims)),
                                     ("gallery", gallery_file)):
                found = previous is not None and (previous / relative).is_file()
                if found:
                    shutil.copy2(previous / relative, staging / relative)
                table.at[index, column] = relative if found else ""
            continue
        candidate = pool.candidates.get(row["case_id"])
        if row["case_id"] not in shown or candidate is None:
            continue
        case = candidate.case
        (staging / gallery_file).write_bytes(heatmaps.gallery_png(case.image, case.mask, candidate.truth,
                                                                  candidate.heat, num_classes,
                                                                  candidate.reconstruction))
        table.at[index, "gallery"] = gallery_file
    return table
