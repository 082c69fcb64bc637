"""Scoring a folder of predicted masks: the job behind ``segqc score``.

For every case: pair the prediction with its image (same rules as training),
preprocess both exactly as the bundle says, score, rank, give a verdict and a
heat map (:mod:`segqc.jobs.scored_cases`); with ground truth also Dice / MSD /
HD95 and the summary figures of :mod:`segqc.report.summary`. A case that cannot
be read or does not match the model becomes an ``error`` row and the run goes
on, whatever went wrong with it. Cases stream through in chunks, and under
``torchrun`` in shards gathered on rank 0. The report directory is written to a
temporary sibling and renamed, so an interrupted run never leaves a broken
report; the history row is written just before the report is swapped into place
and committed right after, so the two agree (both or neither). The layout is documented in
``docs/report-format.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist

from segqc import __version__
from segqc.atomic import PublishGuard
from segqc.config import VERDICT_BY, VERDICT_RULES, ImageModelConfig
from segqc.csvfiles import write_csv
from segqc.data.cases import PreparedCase, prepare_case
from segqc.data.pairing import CaseFiles, pair_cases
from segqc.detectors.image import ImageQC
from segqc.errors import ConfigError, InputError, case_error
from segqc.fitting.device import distributed_context, distributed_session
from segqc.history import RunHistory, fingerprint
from segqc.jobs.scored_cases import error_row, rank_table, score_cases
from segqc.jobs.segment import SegmenterRequest, segment_images
from segqc.jobs.volume_rows import (
    SLICES_FILE,
    is_volume_model,
    keep_failing_worst_slices,
    score_volume_chunk,
    slices_table,
)
from segqc.manifests import OutputKind
from segqc.outputs import check_output_dir, owned_directory
from segqc.report import heatmaps, render_report
from segqc.report.gallery import GalleryPool, heat_map_file, write_gallery
from segqc.report.summary import score_quantiles, summarise_metrics
from segqc.report.volumes import CARDS_DIR
from segqc.segmenters import SegmentRun
from segqc.verdicts import OUTCOMES

logger = logging.getLogger(__name__)

FAILED_QC_EXIT_CODE = 3
CHUNK_CASES = 256
"""Files read, scored and written per step: memory stays flat however many cases a folder holds."""
CHUNK_VOLUMES = 1
"""Files per step when cases are volumes (:mod:`segqc.jobs.volume_rows`): one volume in memory at a time."""


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
        interval_coverage: Nominal coverage of the predicted-Dice intervals; ``None``: the model's.
        verdict_by: ``mean`` or ``worst`` (see :data:`segqc.config.VERDICT_BY`); ``None``: the model's.

    Raises:
        ConfigError: An option is out of range, or ``incremental`` is asked without ``history``.
    """

    ground_truth: Path | None = None
    top_k: int = 50
    dice_threshold: float | None = None
    verdicts: str | None = None
    fail_on: int | None = None
    history: Path | None = None
    incremental: bool = False
    interval_coverage: float | None = None
    verdict_by: str | None = None

    def __post_init__(self) -> None:
        if self.incremental and self.history is None:
            raise ConfigError("--incremental needs --history FILE, where earlier results are kept")
        if self.top_k < 1:
            raise ConfigError(f"--top-k {self.top_k}: expected at least 1")
        if self.dice_threshold is not None and not 0 < self.dice_threshold <= 1:
            raise ConfigError(f"--dice-threshold {self.dice_threshold}: expected a Dice in (0, 1]")
        if self.fail_on is not None and self.fail_on < 0:
            raise ConfigError(f"--fail-on {self.fail_on}: expected a number of cases >= 0")
        if self.verdicts is not None and self.verdicts not in VERDICT_RULES:
            raise ConfigError(f"--verdicts {self.verdicts!r}: expected one of {', '.join(VERDICT_RULES)}")
        if self.verdict_by is not None and self.verdict_by not in VERDICT_BY:
            raise ConfigError(f"--verdict-by {self.verdict_by!r}: expected one of {', '.join(VERDICT_BY)}")
        if self.interval_coverage is not None and not 0 < self.interval_coverage < 1:
            raise ConfigError(f"--interval-coverage {self.interval_coverage}: expected a share in (0, 1), e.g. 0.9")


@dataclass
class ScoreRun:
    """Outcome of a scoring run.

    Attributes:
        table: The ``scores.csv`` rows (on a ``torchrun`` rank other than 0: its own share only).
        summary: The ``summary.json`` content (empty on ranks other than 0).
        report: The report directory.
        exit_code: 0, or :data:`FAILED_QC_EXIT_CODE` when more than ``fail_on`` cases failed QC.
        segmented: What ``--segmenter`` wrote (``None`` without one).
    """

    table: pd.DataFrame
    summary: dict[str, Any]
    report: Path
    exit_code: int
    segmented: SegmentRun | None = None

    @property
    def is_writer(self) -> bool:
        """Whether this process wrote the report (rank 0, or the only process)."""
        return bool(self.summary)


def resolved_options(qc: ImageQC, options: ScoreOptions) -> ScoreOptions:
    """``options`` with the model's failure Dice, verdict rule and interval coverage where none was given.

    An ``interval_coverage`` other than the model's is applied to ``qc``'s estimator here.

    Raises:
        ConfigError: The quality rule or an interval coverage is asked of a model without a quality estimator,
            or a coverage its intervals cannot be recomputed for.
    """
    model = qc.model or ImageModelConfig()
    estimator = getattr(qc, "quality_", None)
    rule = options.verdicts or (model.verdicts if estimator is not None else "score")
    if rule == "quality" and estimator is None:
        raise ConfigError("--verdicts quality: this model has no predicted-Dice estimator (too few held-out "
                          "sources at training); use --verdicts score or retrain with more cases")
    if options.interval_coverage is not None:
        if estimator is None:
            raise ConfigError("--interval-coverage: this model has no predicted-Dice estimator")
        try:
            qc.quality_ = estimator.recalibrated(options.interval_coverage)
        except ValueError as err:
            raise ConfigError(f"--interval-coverage {options.interval_coverage}: {err}") from None
    threshold = options.dice_threshold if options.dice_threshold is not None else model.dice_threshold
    coverage = qc.quality_.coverage if estimator is not None else None
    return dataclasses.replace(options, dice_threshold=threshold, verdicts=rule, interval_coverage=coverage,
                               verdict_by=options.verdict_by or model.verdict_by)


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


def score_predictions(model: Path, images: Path, out: Path, options: ScoreOptions, predictions: Path | None = None,
                      segmenter: SegmenterRequest | None = None, device: str | None = None,
                      on_case: Callable[[int, int], None] | None = None,
                      on_segment: Callable[[int, int], None] | None = None) -> ScoreRun:
    """``segqc score``: load the model, check every option and output, (segment,) score and report.

    Args:
        model: Model bundle directory.
        images: Folder of the images.
        out: Report directory.
        options: Run options.
        predictions: Folder of predicted masks; or ``None`` with ``segmenter``.
        segmenter: A segmenter whose masks (written to ``OUT.predictions``) are scored instead.
        device: ``auto``, ``cpu`` or ``cuda`` (default: as trained).
        on_case: Scoring progress ``(done, total)``.
        on_segment: Segmenting progress ``(done, total)``.

    Returns:
        The run (on ``torchrun`` ranks other than 0, their share only: see :attr:`ScoreRun.is_writer`).
    """
    if (predictions is None) == (segmenter is None):
        raise ConfigError("give either a PREDICTIONS folder or --segmenter SPEC (not both)")
    qc = ImageQC.load(model, device=device)
    options = resolved_options(qc, options)
    check_report_output(qc, predictions, images, out, options)
    segmented = None
    with distributed_session(qc.scoring_device) as sharded:
        if segmenter is not None:
            predictions = out.with_name(f"{out.name}.predictions")
            check_output_dir(predictions, OutputKind.MASKS, [images, model, options.ground_truth, options.history,
                                                             *segmenter.inputs], option="--out (segmenter masks)")
            if distributed_context()[0] == 0:
                segmented = segment_images(segmenter, images, predictions, device, qc.labels_, on_segment)
            if sharded:
                dist.barrier()
        run = score_folder(qc, predictions, images, out, options, on_case)
    return dataclasses.replace(run, segmented=segmented)


@dataclass
class _Shard:
    """What one process keeps of its share of the cases while they stream past (bounded but for the rows)."""

    rows: list[dict[str, Any]]
    fingerprints: dict[str, str]
    reused: list[str]
    pool: GalleryPool
    slices: list[pd.DataFrame] = dataclasses.field(default_factory=list)


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
    if getattr(qc, "model_id_", None) is None:
        raise ConfigError("score a saved model: ImageQC.load(path), so reports can name the model")
    options = resolved_options(qc, options or ScoreOptions())
    predictions_dir, images_dir, out = Path(predictions_dir), Path(images_dir), Path(out)
    started, clock = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    check_report_output(qc, predictions_dir, images_dir, out, options)
    cases = pair_cases(images_dir, predictions_dir, require_masks=False, require_images=False)
    truths = {}
    if options.ground_truth:
        truths = {c.case_id: c.mask for c in pair_cases(images_dir, options.ground_truth, require_masks=False,
                                                            require_images=False) if c.mask is not None}
    history = RunHistory(options.history) if options.history else None
    rank, world = distributed_context()
    mine = cases[rank::world]
    size = CHUNK_VOLUMES if is_volume_model(qc) else CHUNK_CASES
    steps = math.ceil(math.ceil(len(cases) / world) / size)  # the same on every rank
    previous = out if out.is_dir() else None
    publication = PublishGuard()
    with owned_directory(out, OutputKind.REPORT, guard=publication) if rank == 0 else contextlib.nullcontext() \
            as staging:
        if staging is not None:
            (staging / "heatmaps").mkdir()
            (staging / "gallery").mkdir()
            if is_volume_model(qc):
                (staging / CARDS_DIR).mkdir()
        shard = _Shard([], {}, [], GalleryPool(options.top_k, options.dice_threshold))
        for step in range(steps):
            chunk = mine[step * size:(step + 1) * size]
            prepared = _read_chunk(qc, chunk, truths, shard, history if options.incremental else None,
                                   predictions_dir, images_dir)
            files = _score_chunk(qc, prepared, truths, shard)
            for relative, data in _gathered_files(files, rank, world).items():
                (staging / relative).write_bytes(data)
            if on_case and rank == 0:
                on_case(min((step + 1) * size, len(mine)), len(mine))
        shard = _gather_shards(shard, rank, world)
        if rank != 0:  # rank 0 writes the one report
            return ScoreRun(pd.DataFrame(shard.rows), {}, out, 0)
        table = rank_table(pd.DataFrame(shard.rows), qc, options.verdicts, options.dice_threshold, options.verdict_by)
        if is_volume_model(qc):
            table = keep_failing_worst_slices(table, qc.labels_)
            write_csv(slices_table(shard.slices, qc, options.verdicts, options.dice_threshold), staging / SLICES_FILE)
        table = write_gallery(table, shard.pool, staging, previous, set(shard.reused),
                              qc.preprocess.spatial_dims, len(qc.labels_))
        summary = _summary(qc, table, options, started, time.perf_counter() - clock, len(shard.reused))
        write_csv(table, staging / "scores.csv")
        (staging / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        render_report(staging, history.runs(qc.model_id_) + [summary] if history else None)
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
                history: RunHistory | None, predictions_dir: Path, images_dir: Path) -> list[PreparedCase]:
    """Prepare a chunk's cases; error rows and rows reused from ``history`` go straight to ``shard``."""
    prepared = []
    for files in chunk:
        if files.problem:
            shard.rows.append(error_row(files.case_id, files, files.problem))
        elif files.mask is None:
            shard.rows.append(error_row(files.case_id, files, f"no predicted mask for this image in {predictions_dir}"))
        elif not files.images:
            shard.rows.append(error_row(files.case_id, files, f"no image for this predicted mask in {images_dir}"))
        else:
            try:
                key = fingerprint([*files.images, files.mask, *([truths[files.case_id]] if files.case_id in truths
                                                                else [])])
                cached = history.cached_case(qc.model_id_, files.case_id, key) if history else None
                if cached is not None:
                    shard.rows.append(cached)
                    shard.fingerprints[files.case_id] = key
                    shard.reused.append(files.case_id)
                else:
                    for case in prepare_case(files, qc.preprocess, qc.labels_, qc.architecture_["image_channels"]):
                        prepared.append(case)
                        shard.fingerprints[case.case_id] = key
                    shard.fingerprints[files.case_id] = key  # volume rows are keyed by their file's case id
            except Exception as err:  # noqa: BLE001 - whatever breaks one case becomes its error row
                logger.debug("case %s", files.case_id, exc_info=True)
                shard.rows.append(error_row(files.case_id, files, case_error(err)))
    return prepared


def _score_chunk(qc: ImageQC, prepared: list[PreparedCase], truths: dict[str, Path],
                 shard: _Shard) -> dict[str, bytes]:
    """Score a chunk's prepared cases into ``shard``; returns their heat-map files ``{relative path: bytes}``."""
    if is_volume_model(qc):  # one row per volume; slices or tiles go to slices.csv
        volumes = score_volume_chunk(qc, prepared, truths)
        shard.rows += volumes.rows
        shard.slices.append(volumes.units)
        return volumes.files
    scored = score_cases(qc, prepared, truths)
    shard.rows += scored.rows
    shard.pool.offer(scored.rows, prepared, scored.heat, scored.reconstruction, scored.truths)
    files = {}
    for index, (row, case) in enumerate(zip(scored.rows, prepared)):
        relative = heat_map_file(case.case_id, qc.preprocess.spatial_dims)
        if qc.preprocess.spatial_dims == 3:
            files[relative] = heatmaps.heat_volume_nifti(scored.heat[index], case.original_shape, case.affine,
                                                         qc.preprocess)
        else:
            files[relative] = heatmaps.overlay_png(case.image, case.mask, scored.heat[index], len(qc.labels_))
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
        merged.slices += part.slices
    return merged


def _summary(qc: ImageQC, table: pd.DataFrame, options: ScoreOptions, started: datetime.datetime, seconds: float,
             reused: int) -> dict[str, Any]:
    """The ``summary.json`` content of a run (see ``docs/report-format.md``)."""
    ok = table[table["status"] == "ok"]
    verdicts = table["verdict"].value_counts()
    failed = int(verdicts.get("fail", 0))
    code = FAILED_QC_EXIT_CODE if options.fail_on is not None and failed > options.fail_on else 0
    summary: dict[str, Any] = {
        "segqc_version": __version__,
        "model": {"path": str(qc.bundle_), "id": qc.model_id_, "labels": qc.labels_},
        "run": {"started": started.isoformat(timespec="seconds"), "seconds": round(seconds, 3),
                "cases": len(table), "scored": len(ok), "errors": int((table["status"] != "ok").sum()),
                "skipped_unchanged": reused, "cases_per_second": round(len(table) / max(seconds, 1e-9), 3),
                "device": str(qc.scoring_device)},
        "thresholds": {"review": qc.calibration_.review, "fail": qc.calibration_.fail},
        "verdicts": {v: int(verdicts.get(v, 0)) for v in OUTCOMES},
        "verdict_rule": {"rule": options.verdicts, "dice_threshold": options.dice_threshold,
                         "coverage": qc.quality_.coverage if options.verdicts == "quality" else None,
                         "by": options.verdict_by if options.verdicts == "quality" else None},
        "interval": qc.quality_.calibration_.describe() if getattr(qc, "quality_", None) is not None else None,
        "predicted_dice_quantiles": (score_quantiles(ok["predicted_dice"].to_numpy())
                                     if len(ok) and "predicted_dice" in ok else None),
        "score_quantiles": score_quantiles(ok["score"].to_numpy()) if len(ok) else None,
        "top_k": options.top_k,
        "ground_truth": options.ground_truth is not None,
        "exit": {"fail_on": options.fail_on, "failed_cases": failed, "code": code},
    }
    if options.ground_truth is not None and "dice_mean" in table:
        summary.update(summarise_metrics(table, options.top_k, options.dice_threshold))
    return summary
