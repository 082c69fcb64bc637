"""From prepared cases to ``scores.csv`` rows: assessment, ground-truth metrics, ranks and verdicts.

One row per case (or slice), with the anomaly score, the predicted Dice and
its interval, agreement with segqc's reconstruction and the per-level norms;
with ground truth also Dice / MSD / HD95. Ground truth is brought to the model
grid once per source file and serves both the metrics of slices and the
gallery. Error rows stand for cases that could not be read or scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segqc.data.cases import PreparedCase, prepare_case
from segqc.data.images import read_mask
from segqc.data.labels import label_indices
from segqc.data.pairing import CaseFiles
from segqc.data.preprocess import PreprocessConfig
from segqc.detectors.image import Assessment, ImageQC
from segqc.errors import SchemaError, case_error
from segqc.metrics import case_metrics, dice_per_class, mean_dice
from segqc.quality.estimator import QualityEstimate
from segqc.verdicts import ERROR, quality_verdicts, ranks, worst_verdicts

FIRST_COLUMNS = ("case_id", "status", "message", "score", "rank", "verdict", "predicted_dice", "predicted_dice_low",
                 "predicted_dice_high")
"""Columns that lead ``scores.csv`` (when present); the others follow in the order they were made."""


@dataclass
class ScoredChunk:
    """What scoring a chunk of prepared cases gives.

    Attributes:
        rows: One ``scores.csv`` row per case, in case order.
        heat: Heat maps ``(N, *spatial)``.
        reconstruction: segqc's reconstructions ``(N, *spatial)`` (class indices).
        truths: Ground truth in the model grid per case id (cases with readable ground truth only).
        quality: The predicted-Dice estimate of every case (``None`` without a quality estimator).
    """

    rows: list[dict[str, Any]]
    heat: np.ndarray
    reconstruction: np.ndarray
    truths: dict[str, np.ndarray]
    quality: QualityEstimate | None = None


def error_row(case_id: str, files: CaseFiles, message: str) -> dict[str, Any]:
    """The row of a case that could not be scored."""
    return {"case_id": case_id, "status": ERROR, "message": message, "verdict": ERROR, "score": np.nan,
            "image": str(files.images[0]) if files.images else "", "prediction": str(files.mask or "")}


def _truths_in_model_grid(prepared: Sequence[PreparedCase], truths: dict[str, Path], preprocess: PreprocessConfig,
                          labels: Sequence[int]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Ground truth of each prepared case in the model grid, prepared once per source file.

    Returns:
        ``{case_id: mask}`` and ``{source case id: why its ground truth could not be used}``.
    """
    masks: dict[str, np.ndarray] = {}
    problems: dict[str, str] = {}
    for source in dict.fromkeys(case.source.case_id for case in prepared if case.source.case_id in truths):
        files = next(case.source for case in prepared if case.source.case_id == source)
        try:
            for case in prepare_case(CaseFiles(source, files.images, truths[source]), preprocess, labels):
                masks[case.case_id] = case.mask
        except Exception as err:  # noqa: BLE001 - a broken ground-truth file costs its metrics only
            problems[source] = case_error(err)
    return masks, problems


def _ground_truth_metrics(case: PreparedCase, truth_path: Path, truth_in_model_grid: np.ndarray | None,
                          labels: list[int], preprocess: PreprocessConfig) -> dict[str, float]:
    """Dice / MSD / HD95 of one case.

    Whole cases are compared in the original file grid with the files' voxel
    spacing; slices of volumes (2D models) in the model grid, with the in-plane
    spacing scaled by the resize.
    """
    truth = read_mask(truth_path)
    if "#" not in case.case_id:
        prediction = read_mask(case.source.mask)
        truth_indices = label_indices(truth.array[0], labels, truth_path)
        prediction_indices = label_indices(prediction.array[0], labels, case.source.mask)
        if prediction_indices.shape != truth_indices.shape:
            raise SchemaError(f"{truth_path}: ground truth shape {truth_indices.shape} differs from the "
                              f"prediction's {prediction_indices.shape} ({case.source.mask})")
        return case_metrics(prediction_indices, truth_indices, labels, truth.spacing)
    in_plane = [axis for axis in range(len(case.original_shape)) if axis != preprocess.slice_axis]
    scaled = tuple(truth.spacing[a] * case.original_shape[a] / size for a, size in zip(in_plane, case.mask.shape))
    return case_metrics(case.mask, truth_in_model_grid, labels, scaled)


def score_cases(qc: ImageQC, prepared: list[PreparedCase], truths: dict[str, Path],
                assessment: Assessment | None = None) -> ScoredChunk:
    """Assess prepared cases and build their rows.

    Args:
        qc: The loaded detector.
        prepared: Cases of one chunk.
        truths: Ground-truth file per source case id (may be empty).
        assessment: What the model says of them when already known (tiles of a volume scored with sliding
            windows, :mod:`segqc.jobs.volume_rows`); default: :meth:`ImageQC.assess`.

    Returns:
        The chunk's rows, heat maps, reconstructions and model-grid ground truths.
    """
    if not prepared:
        return ScoredChunk([], np.empty(0), np.empty(0), {}, None)
    masks = np.stack([c.mask for c in prepared])
    if assessment is None:
        assessment = qc.assess(np.stack([c.image for c in prepared]), masks)
    agreement = dice_per_class(masks, assessment.reconstruction, len(qc.labels_))
    agreement_mean = mean_dice(agreement, masks, assessment.reconstruction)
    estimate = assessment.quality
    truth_masks, problems = _truths_in_model_grid(prepared, truths, qc.preprocess, qc.labels_)
    rows = []
    for index, case in enumerate(prepared):
        row = {"case_id": case.case_id, "status": "ok", "message": "", "score": float(assessment.scores[index]),
               "empty_prediction": int(not masks[index].any()),
               "image": str(case.source.images[0]), "prediction": str(case.source.mask)}
        if estimate is not None:
            row.update(predicted_dice=float(estimate.dice[index]), predicted_dice_low=float(estimate.low[index]),
                       predicted_dice_high=float(estimate.high[index]))
            for label, dice, low, high in zip(qc.labels_[1:], estimate.per_class[index],
                                              estimate.per_class_low[index], estimate.per_class_high[index]):
                row[f"predicted_dice_{label}"] = float(dice)
                if np.isfinite(low):
                    row[f"predicted_dice_{label}_low"], row[f"predicted_dice_{label}_high"] = float(low), float(high)
        row["reconstruction_dice"] = float(agreement_mean[index])
        row.update({f"norm_{level + 1}": float(v) for level, v in enumerate(assessment.norms[index])})
        truth = truths.get(case.source.case_id)
        if truth is not None:
            row["ground_truth"] = str(truth)
            try:
                if case.source.case_id in problems:
                    raise SchemaError(problems[case.source.case_id])
                row.update(_ground_truth_metrics(case, truth, truth_masks.get(case.case_id), qc.labels_,
                                                 qc.preprocess))
            except Exception as err:  # noqa: BLE001 - a broken ground-truth file costs its metrics only
                row["message"] = f"ground truth not used: {case_error(err)}"
        rows.append(row)
    return ScoredChunk(rows, assessment.heat, assessment.reconstruction, truth_masks, estimate)


def structure_labels(table: pd.DataFrame) -> list[str]:
    """Label values whose per-structure predicted-Dice interval the table holds."""
    return [column.removeprefix("predicted_dice_").removesuffix("_low") for column in table.columns
            if column.startswith("predicted_dice_") and column.endswith("_low") and column != "predicted_dice_low"]


def rank_table(table: pd.DataFrame, qc: ImageQC, rule: str, dice_threshold: float,
               verdict_by: str = "mean") -> pd.DataFrame:
    """Ranks and verdicts of ok cases; ranked cases first, then errors.

    Under the ``quality`` rule every structure with an interval also gets
    ``verdict_<label>``, and the case's verdict is the mean Dice's or, with
    ``verdict_by="worst"``, the worst structure's. Cases reused from an earlier
    run (``--incremental``) keep their columns but get their verdicts again
    under this run's rule and failure Dice.

    Args:
        table: The rows of every case.
        qc: The loaded detector (its score thresholds serve the ``score`` rule).
        rule: ``quality`` or ``score`` (see :mod:`segqc.verdicts`).
        dice_threshold: The failure Dice of the ``quality`` rule.
        verdict_by: ``mean`` or ``worst``.
    """
    ok = table["status"] == "ok"
    table["rank"] = pd.Series(pd.NA, index=table.index, dtype="Int64")
    if ok.any():
        table.loc[ok, "rank"] = ranks(table.loc[ok, "score"].to_numpy())
        if rule == "quality":
            rows = table.loc[ok]
            verdict = quality_verdicts(rows["predicted_dice_low"].to_numpy(float),
                                       rows["predicted_dice_high"].to_numpy(float), dice_threshold)
            structures = structure_labels(table)
            for label in structures:  # a structure without an interval (absent from a volume) gets no verdict
                low, high = rows[f"predicted_dice_{label}_low"], rows[f"predicted_dice_{label}_high"]
                known = low.notna() & high.notna()
                table[f"verdict_{label}"] = ""
                table.loc[known[known].index, f"verdict_{label}"] = quality_verdicts(
                    low[known].to_numpy(float), high[known].to_numpy(float), dice_threshold)
            if verdict_by == "worst" and structures:
                verdict = worst_verdicts(np.column_stack(
                    [verdict, *(table.loc[ok, f"verdict_{label}"].to_numpy() for label in structures)]))
            table.loc[ok, "verdict"] = verdict
        else:
            table.loc[ok, "verdict"] = qc.verdicts(table.loc[ok, "score"].to_numpy())
    if rule != "quality":  # structure verdicts of reused rows belong to another rule
        table = table.drop(columns=[c for c in table.columns if c.startswith("verdict_")])
    first = [column for column in FIRST_COLUMNS if column in table.columns]
    ordered = first + [c for c in table.columns if c not in first]
    return table[ordered].sort_values(["rank", "case_id"], na_position="last", kind="stable").reset_index(drop=True)
