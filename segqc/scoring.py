"""Scoring a folder of predicted masks: the job behind ``segqc score``.

For every case: pair the prediction with its image (same rules as training),
preprocess both exactly as the bundle says, score, rank, give a verdict and a
heat map; with ground truth also Dice / MSD / HD95 and the summary figures of
:mod:`segqc.evaluation`. A case that cannot be read or does not match the model
becomes an ``error`` row and the run goes on, whatever went wrong with it. The
report directory is written to a temporary sibling and renamed, so an
interrupted run never leaves a broken report; the history row is written just
before the report is swapped into place and committed right after, so the two
agree (both or neither).
The layout is documented in ``docs/report-format.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from segqc import __version__, evaluation, heatmaps
from segqc.atomic import PublishGuard
from segqc.bundle import METADATA_FILE, WEIGHTS_FILE
from segqc.config import VERDICT_RULES, ImageModelConfig
from segqc.csvfiles import write_csv
from segqc.data.images import CaseFiles, pair_cases, read_mask
from segqc.data.preprocess import PreparedCase, PreprocessConfig, label_indices, prepare_case
from segqc.density import ranks
from segqc.detectors.image import ImageQC
from segqc.errors import ConfigError, InputError, SchemaError, case_error
from segqc.gallery import GalleryPool, gallery_cases
from segqc.history import RunHistory, fingerprint
from segqc.metrics import case_metrics
from segqc.outputs import OutputKind, check_output_dir, owned_directory
from segqc.quality import dice_per_class, mean_dice, quality_verdicts
from segqc.report import render_report
from segqc.train import distributed_context, resolve_device

logger = logging.getLogger(__name__)

FAILED_QC_EXIT_CODE = 3
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_MAX_NAME = 120


@dataclass
class ScoreOptions:
    """Options of a scoring run.

    Attributes:
        ground_truth: Folder of ground-truth masks (paired by case id), or ``None``.
        top_k: Cases in the gallery and in the top-K correlations.
        dice_threshold: Dice below which a prediction counts as failed (verdicts
            and failure-detection figures); ``None``: the model's.
        verdicts: ``quality`` (predicted-Dice interval against ``dice_threshold``)
            or ``score`` (held-out score quantiles); ``None``: the model's.
        fail_on: Exit with :data:`FAILED_QC_EXIT_CODE` when more than this many
            cases get the ``fail`` verdict (``None``: never).
        history: SQLite file the run is appended to (``None``: no history).
        incremental: Reuse results of cases scored before with the same model
            and unchanged files (needs ``history``).
    """

    ground_truth: Path | None = None
    top_k: int = 50
    dice_threshold: float | None = None
    verdicts: str | None = None
    fail_on: int | None = None
    history: Path | None = None
    incremental: bool = False


@dataclass
class ScoreRun:
    """Outcome of :func:`score_folder`."""

    table: pd.DataFrame
    summary: dict[str, Any]
    report: Path
    exit_code: int


def model_id(qc: ImageQC) -> str:
    """Short id of a loaded bundle: the first 12 hex digits of its weights' SHA-256."""
    if getattr(qc, "bundle_", None) is None:
        raise ConfigError("score a saved model: ImageQC.load(path), so reports can name the model")
    meta = json.loads((qc.bundle_ / METADATA_FILE).read_text(encoding="utf-8"))
    return meta["checksums"][WEIGHTS_FILE][:12]


def file_name(case_id: str) -> str:
    """A file name for a case's heat map / gallery panel, unique per case id.

    Safe characters are kept; an id that had to be changed (spaces, ``#`` of
    slices, non-ASCII letters) or shortened gets a hash of the original id, so
    ``"a b"`` and ``"a_b"`` never share a file.
    """
    safe = SAFE_NAME.sub("_", case_id)
    if safe != case_id or len(safe) > _MAX_NAME:
        safe = f"{safe[:_MAX_NAME]}-{hashlib.sha256(case_id.encode('utf-8')).hexdigest()[:10]}"
    return safe


def _error_row(case_id: str, files: CaseFiles, message: str) -> dict[str, Any]:
    return {"case_id": case_id, "status": "error", "message": message, "verdict": "error", "score": np.nan,
            "image": str(files.images[0]) if files.images else "", "prediction": str(files.mask or "")}


def resolved_options(qc: ImageQC, options: ScoreOptions) -> ScoreOptions:
    """``options`` with the model's failure Dice and verdict rule where none was given.

    Raises:
        ConfigError: The quality rule is asked of a model without a quality estimator.
    """
    model = qc.model or ImageModelConfig()
    rule = options.verdicts or (model.verdicts if getattr(qc, "quality_", None) is not None else "score")
    if rule not in VERDICT_RULES:
        raise ConfigError(f"--verdicts {rule!r}: expected one of {', '.join(VERDICT_RULES)}")
    if rule == "quality" and getattr(qc, "quality_", None) is None:
        raise ConfigError("--verdicts quality: this model has no predicted-Dice estimator (too few held-out "
                          "sources at training); use --verdicts score or retrain with more cases")
    threshold = options.dice_threshold if options.dice_threshold is not None else model.dice_threshold
    return dataclasses.replace(options, dice_threshold=threshold, verdicts=rule)


def check_report_output(qc: ImageQC, predictions_dir: Path | None, images_dir: Path, out: Path,
                        options: ScoreOptions) -> None:
    """Refuse a report path that would lose something segqc did not write (before any work).

    Raises:
        OutputError: ``out`` is a file, a folder segqc did not write as a
            report, or overlaps an input (predictions, images, ground truth,
            model, history).
    """
    check_output_dir(out, OutputKind.REPORT, [predictions_dir, images_dir, options.ground_truth,
                                              getattr(qc, "bundle_", None), options.history])


def _ground_truth_metrics(case: PreparedCase, truth_path: Path, labels: list[int],
                          preprocess: PreprocessConfig) -> dict[str, float]:
    """Dice / MSD / HD95 of one case.

    Whole cases are compared in the original file grid with the files' voxel
    spacing; slices of volumes (2D models) in the model grid, with the in-plane
    spacing scaled by the resize.
    """
    if "#" not in case.case_id:
        truth = read_mask(truth_path)
        prediction = read_mask(case.source.mask)
        truth_indices = label_indices(truth.array[0], labels, truth_path)
        prediction_indices = label_indices(prediction.array[0], labels, case.source.mask)
        if prediction_indices.shape != truth_indices.shape:
            raise SchemaError(f"{truth_path}: ground truth shape {truth_indices.shape} differs from the "
                              f"prediction's {prediction_indices.shape} ({case.source.mask})")
        return case_metrics(prediction_indices, truth_indices, labels, truth.spacing)
    truth_cases = prepare_case(CaseFiles(case.source.case_id, case.source.images, truth_path), preprocess, labels)
    truth_slice = next(c.mask for c in truth_cases if c.case_id == case.case_id)
    spacing = read_mask(truth_path).spacing
    in_plane = [axis for axis in range(len(case.original_shape)) if axis != preprocess.slice_axis]
    scaled = tuple(spacing[a] * case.original_shape[a] / size for a, size in zip(in_plane, case.mask.shape))
    return case_metrics(case.mask, truth_slice, labels, scaled)


CHUNK_CASES = 256
"""Files read, scored and written per step: memory stays flat however many cases a folder holds."""


@dataclass
class _Shard:
    """What one process keeps of its share of the cases while they stream past (bounded but for the rows)."""

    rows: list[dict[str, Any]]
    fingerprints: dict[str, str]
    reused: list[str]
    pool: GalleryPool


def score_folder(qc: ImageQC, predictions_dir: str | Path, images_dir: str | Path, out: str | Path,
                 options: ScoreOptions | None = None,
                 on_case: Callable[[int, int], None] | None = None) -> ScoreRun:
    """Score every predicted mask of a folder and write a report directory.

    Cases stream through in chunks of :data:`CHUNK_CASES` files: each chunk is
    read, scored and its heat maps written before the next is read; only the
    score rows and a bounded pool of gallery candidates stay in memory.

    Args:
        qc: A detector read with :meth:`ImageQC.load`.
        predictions_dir: Folder of predicted masks.
        images_dir: Folder of the matching images.
        out: Report directory to write (replaced atomically).
        options: Run options.
        on_case: Progress callback ``(done, total)``.

    Under ``torchrun`` (a process group is initialised) each rank scores every
    ``world_size``-th case and sends its heat maps, chunk by chunk, and its rows
    to rank 0, which writes the one report and history row; the other ranks
    return their share with an empty summary.

    Returns:
        The scores table, the summary and the exit code for cron / CI.

    Raises:
        OutputError: ``out`` would replace something segqc did not write.
        InputError: Input folders are unusable, or no case could be scored
            (the report listing each case's error is written first).
    """
    options = resolved_options(qc, options or ScoreOptions())
    predictions_dir, images_dir, out = Path(predictions_dir), Path(images_dir), Path(out)
    started, clock = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    identifier = model_id(qc)
    check_report_output(qc, predictions_dir, images_dir, out, options)
    cases = pair_cases(images_dir, predictions_dir, require_masks=False, require_images=False)
    truths = {}
    if options.ground_truth:
        truths = {c.case_id: c.mask for c in pair_cases(images_dir, options.ground_truth, require_masks=False,
                                                            require_images=False) if c.mask is not None}
    history = RunHistory(options.history) if options.history else None
    rank, world = distributed_context()
    mine = cases[rank::world]
    steps = math.ceil(math.ceil(len(cases) / world) / CHUNK_CASES)  # the same on every rank
    previous = out if out.is_dir() else None
    publication = PublishGuard()
    with owned_directory(out, OutputKind.REPORT, guard=publication) if rank == 0 else contextlib.nullcontext() \
            as staging:
        if staging is not None:
            (staging / "heatmaps").mkdir()
            (staging / "gallery").mkdir()
        shard = _Shard([], {}, [], GalleryPool(options.top_k, options.dice_threshold))
        for step in range(steps):
            chunk = mine[step * CHUNK_CASES:(step + 1) * CHUNK_CASES]
            prepared = _read_chunk(qc, chunk, truths, shard, history if options.incremental else None,
                                   identifier, predictions_dir, images_dir)
            files = _score_chunk(qc, prepared, truths, shard)
            for relative, data in _gathered_files(files, rank, world).items():
                (staging / relative).write_bytes(data)
            if on_case and rank == 0:
                on_case(min((step + 1) * CHUNK_CASES, len(mine)), len(mine))
        shard = _gather_shards(shard, rank, world)
        if rank != 0:  # rank 0 writes the one report
            return ScoreRun(pd.DataFrame(shard.rows), {}, out, 0)
        table = _rank(pd.DataFrame(shard.rows), qc, options)
        table = _write_gallery(qc, table, shard, truths, staging, previous, options)
        summary = _summary(qc, table, options, identifier, started, time.perf_counter() - clock, len(shard.reused))
        write_csv(table, staging / "scores.csv")
        (staging / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        render_report(staging, history.runs(identifier) + [summary] if history else None)
        if history and summary["run"]["scored"]:  # written as the report is published: both or neither
            publication.add(history.recording(
                {**summary, "report": str(out)},
                cases=[{**row, "fingerprint": shard.fingerprints[row["case_id"]]} for row in table.to_dict("records")
                       if row["status"] == "ok" and row["case_id"] in shard.fingerprints]))
    if not summary["run"]["scored"]:
        first = table["message"].iloc[0]
        raise InputError(f"{predictions_dir}: no case could be scored ({len(table)} error(s); first: "
                         f"{table['case_id'].iloc[0]}: {first}); every case's error is in {out / 'scores.csv'}")
    return ScoreRun(table, summary, out, summary["exit"]["code"])


def _read_chunk(qc: ImageQC, chunk: list[CaseFiles], truths: dict[str, Path], shard: _Shard,
                history: RunHistory | None, identifier: str, predictions_dir: Path,
                images_dir: Path) -> list[PreparedCase]:
    """Prepare a chunk's cases; error rows and rows reused from ``history`` go straight to ``shard``."""
    prepared = []
    for files in chunk:
        if files.problem:
            shard.rows.append(_error_row(files.case_id, files, files.problem))
        elif files.mask is None:
            message = f"no predicted mask for this image in {predictions_dir}"
            shard.rows.append(_error_row(files.case_id, files, message))
        elif not files.images:
            message = f"no image for this predicted mask in {images_dir}"
            shard.rows.append(_error_row(files.case_id, files, message))
        else:
            try:
                key = fingerprint([*files.images, files.mask, *([truths[files.case_id]] if files.case_id in truths
                                                                else [])])
                cached = history.cached_case(identifier, files.case_id, key) if history else None
                if cached is not None:
                    shard.rows.append(cached)
                    shard.fingerprints[files.case_id] = key
                    shard.reused.append(files.case_id)
                else:
                    for case in prepare_case(files, qc.preprocess, qc.labels_, qc.architecture_["image_channels"]):
                        prepared.append(case)
                        shard.fingerprints[case.case_id] = key
            except Exception as err:  # whatever breaks one case becomes its error row
                logger.debug("case %s", files.case_id, exc_info=True)
                shard.rows.append(_error_row(files.case_id, files, case_error(err)))
    return prepared


def _score_chunk(qc: ImageQC, prepared: list[PreparedCase], truths: dict[str, Path],
                 shard: _Shard) -> dict[str, bytes]:
    """Score a chunk's prepared cases into ``shard``; returns their heat-map files ``{relative path: bytes}``."""
    rows, heat, rebuilt = _score_prepared(qc, prepared, truths)
    shard.rows += rows
    shard.pool.offer(rows, prepared, heat, rebuilt)
    files = {}
    for index, (row, case) in enumerate(zip(rows, prepared)):
        if qc.preprocess.spatial_dims == 3:
            relative = f"heatmaps/{file_name(case.case_id)}.nii.gz"
            files[relative] = heatmaps.heat_volume_nifti(heat[index], case.original_shape, case.affine,
                                                         qc.preprocess)
        else:
            relative = f"heatmaps/{file_name(case.case_id)}.png"
            files[relative] = heatmaps.overlay_png(case.image, case.mask, heat[index], len(qc.labels_))
        row["heatmap"] = relative
    return files


def _gathered_files(files: dict[str, bytes], rank: int, world: int) -> dict[str, bytes]:
    """Every rank's chunk of heat-map files on rank 0 (an empty dict elsewhere); single processes pass through."""
    if world == 1:
        return files
    parts = [None] * world if rank == 0 else None
    torch.distributed.gather_object(files, parts, dst=0)
    return {name: data for part in parts for name, data in part.items()} if rank == 0 else {}


def _gather_shards(shard: _Shard, rank: int, world: int) -> _Shard:
    """Every rank's rows, fingerprints, reused cases and gallery candidates merged on rank 0.

    Single-process runs pass through.
    """
    if world == 1:
        return shard
    shards = [None] * world if rank == 0 else None
    torch.distributed.gather_object(shard, shards, dst=0)
    torch.distributed.barrier()  # every shard has arrived before any rank moves on (and may leave the group)
    if rank != 0:
        return shard
    merged = _Shard([], {}, [], GalleryPool(shard.pool.top_k, shard.pool.dice_threshold))
    for part in shards:
        merged.rows += part.rows
        merged.fingerprints.update(part.fingerprints)
        merged.reused += part.reused
        merged.pool.merge(part.pool)
    return merged


def _score_prepared(qc: ImageQC, prepared: list[PreparedCase], truths: dict[str, Path]
                    ) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Rows, heat maps ``(N, *spatial)`` and reconstructions ``(N, *spatial)`` of the cases that were read."""
    if not prepared:
        return [], np.empty(0), np.empty(0)
    masks = np.stack([c.mask for c in prepared])
    assessment = qc.assess(np.stack([c.image for c in prepared]), masks)
    num_classes = len(qc.labels_)
    agreement = dice_per_class(masks, assessment.reconstruction, num_classes)
    agreement_mean = mean_dice(agreement, masks, assessment.reconstruction)
    estimate = assessment.quality
    rows = []
    for index, case in enumerate(prepared):
        row = {"case_id": case.case_id, "status": "ok", "message": "", "score": float(assessment.scores[index]),
               "image": str(case.source.images[0]), "prediction": str(case.source.mask)}
        if estimate is not None:
            row.update(predicted_dice=float(estimate.dice[index]), predicted_dice_low=float(estimate.low[index]),
                       predicted_dice_high=float(estimate.high[index]))
            row.update({f"predicted_dice_{label}": float(v)
                        for label, v in zip(qc.labels_[1:], estimate.per_class[index])})
        row["reconstruction_dice"] = float(agreement_mean[index])
        row.update({f"norm_{level + 1}": float(v) for level, v in enumerate(assessment.norms[index])})
        truth = truths.get(case.source.case_id)
        if truth is not None:
            row["ground_truth"] = str(truth)
            try:
                row.update(_ground_truth_metrics(case, truth, qc.labels_, qc.preprocess))
            except Exception as err:  # noqa: BLE001 - a broken ground-truth file costs its metrics only
                row["message"] = f"ground truth not used: {case_error(err)}"
        rows.append(row)
    return rows, assessment.heat, assessment.reconstruction


def _rank(table: pd.DataFrame, qc: ImageQC, options: ScoreOptions) -> pd.DataFrame:
    """Ranks and verdicts of ok cases; ranked cases first, then errors.

    Cases reused from an earlier run (``--incremental``) keep their columns but
    get their verdict again under this run's rule and failure Dice.
    """
    ok = table["status"] == "ok"
    table["rank"] = pd.Series(pd.NA, index=table.index, dtype="Int64")
    if ok.any():
        table.loc[ok, "rank"] = ranks(table.loc[ok, "score"].to_numpy())
        if options.verdicts == "quality":
            rows = table.loc[ok]
            table.loc[ok, "verdict"] = quality_verdicts(rows["predicted_dice_low"].to_numpy(float),
                                                        rows["predicted_dice_high"].to_numpy(float),
                                                        options.dice_threshold)
        else:
            table.loc[ok, "verdict"] = qc.verdicts(table.loc[ok, "score"].to_numpy())
    first = ["case_id", "status", "message", "score", "rank", "verdict", "predicted_dice", "predicted_dice_low",
             "predicted_dice_high"]
    first = [column for column in first if column in table.columns]
    ordered = first + [c for c in table.columns if c not in first]
    return table[ordered].sort_values(["rank", "case_id"], na_position="last", kind="stable").reset_index(drop=True)


def _write_gallery(qc: ImageQC, table: pd.DataFrame, shard: _Shard, truths: dict[str, Path], staging: Path,
                   previous: Path | None, options: ScoreOptions) -> pd.DataFrame:
    """Gallery panels (see :func:`gallery_cases`); cases reused from ``previous`` get their old files.

    The table gets the panels' paths in ``gallery`` and why each case is shown in ``gallery_reason``.
    """
    shown = gallery_cases(table, options.top_k, options.dice_threshold)
    heat_files = table.pop("heatmap").fillna("") if "heatmap" in table else ""
    table["heatmap"], table["gallery"] = heat_files, ""
    table["gallery_reason"] = [shown.get(case_id, "") for case_id in table["case_id"]]
    reused = set(shard.reused)
    for index, row in table.iterrows():
        if row["status"] != "ok":
            continue
        name = file_name(row["case_id"])
        gallery_file = f"gallery/{name}.png"
        if row["case_id"] in reused:  # carry the earlier run's files over when they exist
            heat_file = f"heatmaps/{name}.{'nii.gz' if qc.preprocess.spatial_dims == 3 else 'png'}"
            for column, relative in (("heatmap", heat_file), ("gallery", gallery_file)):
                found = previous is not None and (previous / relative).is_file()
                if found:
                    shutil.copy2(previous / relative, staging / relative)
                table.at[index, column] = relative if found else ""
            continue
        candidate = shard.pool.candidates.get(row["case_id"])
        if row["case_id"] not in shown or candidate is None:
            continue
        case = candidate.case
        truth = _truth_in_model_grid(case, truths, qc)
        quality_text = (f"  Dice ~{row['predicted_dice']:.2f} [{row['predicted_dice_low']:.2f}, "
                        f"{row['predicted_dice_high']:.2f}]" if "predicted_dice" in row else "")
        title = f"#{int(row['rank'])} {case.case_id}  score {row['score']:.3g}{quality_text}  {row['verdict']}"
        (staging / gallery_file).write_bytes(heatmaps.gallery_png(title, case.image, case.mask, truth, candidate.heat,
                                                                  len(qc.labels_), candidate.reconstruction))
        table.at[index, "gallery"] = gallery_file
    return table


def _truth_in_model_grid(case: PreparedCase, truths: dict[str, Path], qc: ImageQC) -> np.ndarray | None:
    path = truths.get(case.source.case_id)
    if path is None:
        return None
    try:
        prepared = prepare_case(CaseFiles(case.source.case_id, case.source.images, path), qc.preprocess, qc.labels_)
    except Exception:  # noqa: BLE001 - the gallery panel is drawn without the ground truth
        return None
    return next((c.mask for c in prepared if c.case_id == case.case_id), None)


def _summary(qc: ImageQC, table: pd.DataFrame, options: ScoreOptions, identifier: str,
             started: datetime.datetime, seconds: float, reused: int) -> dict[str, Any]:
    ok = table[table["status"] == "ok"]
    verdicts = table["verdict"].value_counts()
    failed = int(verdicts.get("fail", 0))
    code = FAILED_QC_EXIT_CODE if options.fail_on is not None and failed > options.fail_on else 0
    summary: dict[str, Any] = {
        "segqc_version": __version__,
        "model": {"path": str(qc.bundle_), "id": identifier, "labels": qc.labels_},
        "run": {"started": started.isoformat(timespec="seconds"), "seconds": round(seconds, 3),
                "cases": len(table), "scored": len(ok), "errors": int((table["status"] != "ok").sum()),
                "skipped_unchanged": reused, "cases_per_second": round(len(table) / max(seconds, 1e-9), 3),
                "device": str(resolve_device(qc._training_config.device))},
        "thresholds": {"review": qc.calibration_.review, "fail": qc.calibration_.fail},
        "verdicts": {v: int(verdicts.get(v, 0)) for v in ("pass", "review", "fail", "error")},
        "verdict_rule": {"rule": options.verdicts, "dice_threshold": options.dice_threshold,
                         "coverage": qc.quality_.coverage if options.verdicts == "quality" else None},
        "predicted_dice_quantiles": (evaluation.score_quantiles(ok["predicted_dice"].to_numpy())
                                     if len(ok) and "predicted_dice" in ok else None),
        "score_quantiles": evaluation.score_quantiles(ok["score"].to_numpy()) if len(ok) else None,
        "top_k": options.top_k,
        "ground_truth": options.ground_truth is not None,
        "exit": {"fail_on": options.fail_on, "failed_cases": failed, "code": code},
    }
    if options.ground_truth is not None and "dice_mean" in table:
        summary.update(evaluation.summarise_metrics(table, options.top_k, options.dice_threshold))
    return summary
