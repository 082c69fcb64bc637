"""Volume rows: one ``scores.csv`` row per volume when cases are volumes; their slices or tiles go to ``slices.csv``.

Cases are volumes when a 2D model cuts them into slices (``slice_axis``) or a
3D model scores them in patches (``patches``). Each volume is scored as a
whole, one at a time (a chunk is one file), by its **units**:

* 2D route: the slices of :func:`segqc.data.cases.prepare_case`, through
  :func:`segqc.jobs.scored_cases.score_cases`;
* 3D route: the tiles of the region that holds the structures, scored with
  sliding windows (:func:`segqc.detectors.volumes.assess_volume`).

Unit rows (``slices.csv``) keep what ``scores.csv`` rows of slices held, plus
the volume, the slice index (or the file slices a tile covers) and each
structure's predicted and reconstructed area. The volume row aggregates them
(:mod:`segqc.quality.volumes`): predicted Dice as overlap volumes, per
structure and overall, with their intervals, the worst slices of each
structure, the highest unit score as the volume's score and, with ground
truth, 3D Dice / MSD / HD95 in mm in the file's grid, per volume and per
structure. Its card (``volumes/<case>.png``) shows the worst slices of its
weakest structures with the prediction, segqc's reconstruction and the ground
truth drawn as contours, and the profile of predicted Dice along the slices.
"""

from __future__ import annotations

import itertools
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
from segqc.detectors.image import ImageQC
from segqc.detectors.volumes import assess_volume
from segqc.errors import SchemaError, SegQCError
from segqc.jobs.scored_cases import ScoredChunk, score_cases
from segqc.metrics import case_metrics, dice_per_class, mean_dice, structure_surface_metrics
from segqc.quality.volumes import VolumeEstimate, overlap_weighted, volume_estimate
from segqc.report import heatmaps
from segqc.report.gallery import case_file_name, heat_map_file
from segqc.report.volumes import CARDS_DIR, CardPanel, card_png, region_heat_nifti
from segqc.verdicts import quality_verdicts

SLICES_FILE = "slices.csv"
CARD_STRUCTURES = 4
"""Structures drawn on a volume's card: the ones with the lowest predicted Dice."""


def is_volume_model(qc: ImageQC) -> bool:
    """Whether the model's cases are volumes scored by units (a 2D model on slices, or the 3D patch route)."""
    return qc.preprocess.slice_axis is not None or qc.preprocess.patches


@dataclass
class VolumeChunk:
    """What scoring the volumes of a chunk gives.

    Attributes:
        rows: One ``scores.csv`` row per volume.
        units: The ``slices.csv`` rows of their slices or tiles.
        files: Heat maps and cards ``{relative path: bytes}``.
    """

    rows: list[dict[str, Any]]
    units: pd.DataFrame
    files: dict[str, bytes]


@dataclass
class _Scored:
    """One volume's units once scored.

    Attributes:
        units: The slices or tiles, in order.
        scored: Their rows, heat maps and reconstructions.
        spans: Per unit, the slice index (2D) or ``first-last`` file slices (3D) it covers.
        positions: Per unit, a slice position for the profile of predicted Dice.
        truths: Ground truth per unit in the model grid (units without one are absent).
        region: 3D route: the whole region and what was said of it.
    """

    units: list[PreparedCase]
    scored: ScoredChunk
    spans: list[str]
    positions: np.ndarray
    truths: dict[str, np.ndarray]
    region: _Region | None = None


@dataclass
class _Region:
    """A 3D-route volume's region.

    Attributes:
        case: The prepared region (image and predicted mask).
        boxes: Each tile's position in the region.
        heat: Heat map of the region ``(*region)``.
        reconstruction: segqc's reconstruction of the region ``(*region)``.
        truth: Ground truth cropped to the region, or ``None``.
    """

    case: PreparedCase
    boxes: list[tuple[slice, ...]]
    heat: np.ndarray
    reconstruction: np.ndarray
    truth: np.ndarray | None


def score_volume_chunk(qc: ImageQC, prepared: list[PreparedCase], truths: dict[str, Path]) -> VolumeChunk:
    """Score the volumes of a chunk unit by unit and build their volume rows, unit rows, heat maps and cards.

    Args:
        qc: The loaded detector (:func:`is_volume_model`).
        prepared: The chunk's prepared units (slices of volumes, or regions).
        truths: Ground-truth file per source case id (may be empty).

    Returns:
        The chunk's rows and files.
    """
    rows, units, files = [], [], {}
    for _, group in itertools.groupby(prepared, key=lambda case: case.source.case_id):
        volume = _score_units(qc, list(group), truths)
        unit_table = _unit_table(qc, volume)
        row = _volume_row(qc, volume, unit_table, truths.get(volume.units[0].source.case_id))
        files.update(_unit_files(qc, volume, unit_table, row))
        rows.append(row)
        units.append(unit_table)
    return VolumeChunk(rows, pd.concat(units, ignore_index=True) if units else pd.DataFrame(), files)


def _score_units(qc: ImageQC, cases: list[PreparedCase], truths: dict[str, Path]) -> _Scored:
    """Score one volume's slices (2D) or its region's tiles (3D)."""
    if not qc.preprocess.patches:
        scored = score_cases(qc, cases, truths)
        index = np.array([int(case.case_id.rsplit(":", 1)[1]) for case in cases])
        return _Scored(cases, scored, [str(i) for i in index], index.astype(float), scored.truths)
    case = cases[0]
    judged = assess_volume(qc, case)
    scored = score_cases(qc, judged.tiles, {}, judged.assessment)
    covered = [case.region.file_slices(box[-1].start, box[-1].stop) for box in judged.boxes]
    truth = _region_truth(qc, case, truths.get(case.source.case_id))
    tiles_truth = {} if truth is None else {tile.case_id: truth[box] for tile, box in zip(judged.tiles, judged.boxes)}
    return _Scored(judged.tiles, scored, [f"{a}-{b}" for a, b in covered],
                   np.array([(a + b) / 2 for a, b in covered], float), tiles_truth,
                   _Region(case, judged.boxes, judged.heat, judged.reconstruction, truth))


def _region_truth(qc: ImageQC, case: PreparedCase, truth: Path | None) -> np.ndarray | None:
    """Ground truth cropped to the region of the prediction (for the card), or ``None``."""
    if truth is None:
        return None
    try:
        return prepare_case(CaseFiles(case.source.case_id, case.source.images, truth), qc.preprocess, qc.labels_,
                            region=case.region)[0].mask
    except SegQCError:
        return None  # the volume row says why, from the files


def _areas(masks: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Voxels of each foreground class in each mask, ``(S, K-1)``."""
    return np.stack([np.bincount(mask.ravel(), minlength=num_classes)[1:num_classes] for mask in masks]).astype(float)


def _unit_table(qc: ImageQC, volume: _Scored) -> pd.DataFrame:
    """The ``slices.csv`` rows of one volume."""
    table = pd.DataFrame(volume.scored.rows)
    num_classes = len(qc.labels_)
    table.insert(1, "volume", volume.units[0].source.case_id)
    table.insert(2, "slices", volume.spans)
    predicted = _areas([unit.mask for unit in volume.units], num_classes)
    rebuilt = _areas(list(volume.scored.reconstruction), num_classes)
    for index, label in enumerate(qc.labels_[1:]):
        table[f"area_{label}"] = predicted[:, index]
        table[f"reconstruction_area_{label}"] = rebuilt[:, index]
    return table


def _evidence(table: pd.DataFrame, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per-unit predicted Dice of each structure and its interval ends, each ``(S, K-1)`` (``None`` without
    predicted Dice).

    Per-structure interval columns (``predicted_dice_<label>_low`` / ``_high``) are used when the rows have them;
    otherwise each structure's estimate is widened by the offsets of the mean's interval.
    """
    if "predicted_dice" not in table:
        return None
    names = [f"predicted_dice_{label}" for label in labels[1:]]
    dice = table[names].to_numpy(float)
    ends = []
    for end, column in (("low", "predicted_dice_low"), ("high", "predicted_dice_high")):
        own = [f"{name}_{end}" for name in names]
        if all(name in table for name in own):
            ends.append(table[own].to_numpy(float))
        else:
            offset = (table[column] - table["predicted_dice"]).to_numpy(float)[:, None]
            ends.append(np.clip(dice + offset, 0, 1))
    return dice, ends[0], ends[1]


def _volume_row(qc: ImageQC, volume: _Scored, table: pd.DataFrame, truth: Path | None) -> dict[str, Any]:
    """The ``scores.csv`` row of one volume."""
    source = volume.units[0].source
    labels = qc.labels_
    row: dict[str, Any] = {"case_id": source.case_id, "status": "ok", "message": "",
                           "score": float(table["score"].max()), "image": str(source.images[0]),
                           "prediction": str(source.mask), "units": len(table)}
    evidence = _evidence(table, labels)
    if evidence is not None:
        predicted = table[[f"area_{label}" for label in labels[1:]]].to_numpy(float)
        rebuilt = table[[f"reconstruction_area_{label}" for label in labels[1:]]].to_numpy(float)
        estimate = volume_estimate(*evidence, predicted, rebuilt)
        row.update(_estimate_columns(estimate, labels, evidence[0], volume.spans))
    masks = np.stack([unit.mask for unit in volume.units]).reshape(1, -1)
    rebuilt_masks = volume.scored.reconstruction.reshape(1, -1)
    row["reconstruction_dice"] = float(mean_dice(dice_per_class(masks, rebuilt_masks, len(labels)), masks,
                                                 rebuilt_masks)[0])
    if truth is not None:
        row["ground_truth"] = str(truth)
        try:
            row.update(volume_metrics(Path(source.mask), truth, labels))
        except SegQCError as err:
            row["message"] = f"ground truth not used: {err}"
    return row


def _estimate_columns(estimate: VolumeEstimate, labels: Sequence[int], dice: np.ndarray,
                      spans: Sequence[str]) -> dict[str, Any]:
    """Predicted Dice columns of a volume row: overall, per structure (NaN when absent), the worst slices."""
    columns: dict[str, Any] = {"predicted_dice": estimate.dice, "predicted_dice_low": estimate.low,
                               "predicted_dice_high": estimate.high}
    for index, label in enumerate(labels[1:]):
        present = bool(estimate.present[index])
        for suffix, values in (("", estimate.per_structure), ("_low", estimate.per_structure_low),
                               ("_high", estimate.per_structure_high)):
            columns[f"predicted_dice_{label}{suffix}"] = float(values[index]) if present else np.nan
        columns[f"worst_slices_{label}"] = " ".join(f"{spans[unit]}:{dice[unit, index]:.2f}"
                                                    for unit in estimate.worst[index])
    return columns


def volume_metrics(prediction_path: Path, truth_path: Path, labels: Sequence[int]) -> dict[str, float]:
    """3D Dice, MSD and HD95 (mm, the file's spacing) of a whole volume, overall and per structure.

    Raises:
        SchemaError: The prediction and the ground truth differ in shape, or hold unknown labels.
        InputError: A file cannot be read.
    """
    truth, prediction = read_mask(truth_path), read_mask(prediction_path)
    truth_indices = label_indices(truth.array[0], labels, truth_path)
    prediction_indices = label_indices(prediction.array[0], labels, prediction_path)
    if prediction_indices.shape != truth_indices.shape:
        raise SchemaError(f"{truth_path}: ground truth shape {truth_indices.shape} differs from the prediction's "
                          f"{prediction_indices.shape} ({prediction_path})")
    return {**case_metrics(prediction_indices, truth_indices, labels, truth.spacing),
            **structure_surface_metrics(prediction_indices, truth_indices, labels, truth.spacing)}


def _unit_files(qc: ImageQC, volume: _Scored, table: pd.DataFrame, row: dict[str, Any]) -> dict[str, bytes]:
    """Heat maps (a NIfTI volume for the 3D route; a PNG per slice for the 2D route) and the volume's card."""
    files: dict[str, bytes] = {}
    num_classes = len(qc.labels_)
    first = volume.units[0]
    if volume.region is not None:
        relative = heat_map_file(first.source.case_id, 3)
        files[relative] = region_heat_nifti(volume.region.heat, first.region, first.original_shape, first.affine,
                                            qc.preprocess)
        row["heatmap"] = relative
        table["heatmap"] = ""
    else:
        names = []
        for index, unit in enumerate(volume.units):
            names.append(heat_map_file(unit.case_id, 2))
            files[names[-1]] = heatmaps.overlay_png(unit.image, unit.mask, volume.scored.heat[index], num_classes)
        table["heatmap"] = names
    card = f"{CARDS_DIR}/{case_file_name(first.source.case_id)}.png"
    files[card] = _card(qc, volume, table, row)
    row["card"] = card
    return files


def _card(qc: ImageQC, volume: _Scored, table: pd.DataFrame, row: dict[str, Any]) -> bytes:
    """The volume's card: the worst slice of each of its weakest structures, and their profiles."""
    labels = qc.labels_
    evidence = _evidence(table, labels)
    # without a quality estimator the worst unit is the most anomalous one, and there is no profile to draw
    per_structure = (evidence[0] if evidence is not None
                     else np.repeat(-table[["score"]].to_numpy(float), len(labels) - 1, 1))
    volume_dice = np.array([row.get(f"predicted_dice_{label}", np.nan) for label in labels[1:]], float)
    panels, profiles = [], []
    for index in np.argsort(np.nan_to_num(volume_dice, nan=np.inf), kind="stable")[:CARD_STRUCTURES]:
        predicted = table[f"area_{labels[index + 1]}"].to_numpy(float)
        rebuilt = table[f"reconstruction_area_{labels[index + 1]}"].to_numpy(float)
        present = np.flatnonzero(predicted + rebuilt > 0)
        if not present.size:
            continue
        unit = int(present[np.argmin(per_structure[present, index])])
        panels.append(_panel(qc, volume, unit, index + 1, per_structure[unit, index]))
        if evidence is not None:
            profiles.append((str(labels[index + 1]), *_profile(volume, per_structure[:, index], predicted, rebuilt)))
    dice = row.get("predicted_dice")
    title = f"{row['case_id']}  " + (f"predicted Dice {dice:.2f} [{row['predicted_dice_low']:.2f}, "
                                     f"{row['predicted_dice_high']:.2f}]" if dice is not None else
                                     f"score {row['score']:.3g}")
    return card_png(title, panels, profiles, len(labels))


def _panel(qc: ImageQC, volume: _Scored, unit: int, label_index: int, dice: float) -> CardPanel:
    """The picture of one structure's worst unit: the slice (2D), or the tile's axial slice where the structure
    is largest (3D, drawn across the whole region); ``dice`` is the unit's predicted Dice of the structure."""
    case, label = volume.units[unit], qc.labels_[label_index]
    if volume.region is None:
        return CardPanel(f"label {label}: slice {volume.spans[unit]}  d {dice:.2f}", case.image[0], case.mask,
                         volume.scored.reconstruction[unit], volume.truths.get(case.case_id))
    whole = volume.region
    depth = ((case.mask == label_index) | (volume.scored.reconstruction[unit] == label_index)).sum((0, 1))
    z = whole.boxes[unit][-1].start + int(np.argmax(depth))
    file_slice = whole.case.region.file_slices(z, z + 1)[0]
    return CardPanel(f"label {label}: slice {file_slice}  d {dice:.2f}", whole.case.image[0][..., z],
                     whole.case.mask[..., z], whole.reconstruction[..., z],
                     None if whole.truth is None else whole.truth[..., z])


def _profile(volume: _Scored, dice: np.ndarray, predicted: np.ndarray,
             rebuilt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted Dice of one structure along the slices: per slice (2D) or per slab of tiles (3D), aggregated as
    overlap volumes; positions where the structure is absent are left out."""
    positions = np.unique(volume.positions)
    values = np.array([overlap_weighted(dice[volume.positions == p], predicted[volume.positions == p],
                                        rebuilt[volume.positions == p]) for p in positions])
    present = np.array([(predicted + rebuilt)[volume.positions == p].sum() > 0 for p in positions])
    return positions[present], values[present]


def keep_failing_worst_slices(table: pd.DataFrame, labels: Sequence[int]) -> pd.DataFrame:
    """Worst slices only of the structures that do not pass (see :func:`~segqc.jobs.scored_cases.rank_table` for
    the verdicts)."""
    for label in labels[1:]:
        if f"worst_slices_{label}" in table and f"verdict_{label}" in table:
            table.loc[table[f"verdict_{label}"] == "pass", f"worst_slices_{label}"] = ""
    return table


def slices_table(parts: Sequence[pd.DataFrame], qc: ImageQC, rule: str, dice_threshold: float) -> pd.DataFrame:
    """The ``slices.csv`` table: every volume's unit rows with a verdict each, by the run's rule."""
    parts = [part for part in parts if len(part)]
    if not parts:
        return pd.DataFrame(columns=["case_id", "volume", "slices", "status", "verdict"])
    table = pd.concat(parts, ignore_index=True)
    if rule == "quality" and "predicted_dice_low" in table:
        table["verdict"] = quality_verdicts(table["predicted_dice_low"].to_numpy(float),
                                            table["predicted_dice_high"].to_numpy(float), dice_threshold)
    else:
        table["verdict"] = qc.verdicts(table["score"].to_numpy(float))
    first = ["case_id", "volume", "slices", "status", "message", "score", "verdict"]
    return table[[c for c in first if c in table] + [c for c in table if c not in first]]
