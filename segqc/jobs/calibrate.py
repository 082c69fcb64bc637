"""The job behind ``segqc calibrate``: intervals that hold for a user's segmenter, from its labelled cases.

The labelled cases (the segmenter's predictions with ground truth) are read and
assessed exactly as ``segqc score`` would, with the true Dice defined as in its
report; their residuals calibrate a copy of the model's predicted-Dice
intervals (:mod:`segqc.quality.calibration`), written as a new bundle. The
model given is never changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segqc.data.cases import prepare_case
from segqc.data.grouping import group_regex, source_groups
from segqc.data.pairing import pair_cases
from segqc.detectors.image import ImageQC
from segqc.errors import ConfigError, InputError, OutputError
from segqc.jobs.score import CHUNK_CASES
from segqc.jobs.scored_cases import score_cases
from segqc.manifests import OutputKind
from segqc.outputs import check_output_dir
from segqc.quality.calibration import LabelledCalibration
from segqc.quality.estimator import QualityEstimate


@dataclass
class CalibrationRun:
    """Outcome of :func:`calibrate_model`.

    Attributes:
        detector: The calibrated detector (written to ``out``).
        found: What the calibration found (cases, bias correction, errors, a warning).
        out: The new bundle.
    """

    detector: ImageQC
    found: LabelledCalibration
    out: Path


def calibrate_model(model: Path, predictions: Path, images: Path, ground_truth: Path, out: Path,
                    coverage: float | None = None, group_pattern: str | None = None, device: str | None = None,
                    on_case: Callable[[int, int], None] | None = None) -> CalibrationRun:
    """Calibrate a model's predicted-Dice intervals on labelled cases and write the result as a new bundle.

    Args:
        model: The model bundle to calibrate (left as it is).
        predictions: Folder of the segmenter's masks, named like their images.
        images: Folder of the images.
        ground_truth: Folder of the ground-truth masks of the same cases.
        out: The new bundle; must not exist.
        coverage: Nominal coverage of the intervals; default: the model's.
        group_pattern: Regular expression naming each case's source in its case id (files cut from one volume or
            image stay on one side of every internal split); slices of one volume are always one source.
        device: ``auto``, ``cpu`` or ``cuda`` (default: as trained).
        on_case: Progress callback ``(done, total)``.

    Raises:
        OutputError: ``out`` exists or overlaps an input.
        InputError: A case without ground truth, unreadable files, label values the model does not know, or
            fewer than five usable cases.
        ConfigError: A bad ``coverage`` or ``group_pattern``, or a model without a predicted-Dice estimator.
    """
    model, predictions, images, ground_truth, out = (Path(p) for p in (model, predictions, images, ground_truth, out))
    if out.exists() or out.is_symlink():
        raise OutputError(f"--out {out}: exists; 'segqc calibrate' writes a new model and never changes one, so "
                          "choose a new folder")
    check_output_dir(out, OutputKind.MODEL, [model, predictions, images, ground_truth], mode="image")
    group_regex(group_pattern)
    if coverage is not None and not 0 < coverage < 1:
        raise ConfigError(f"--coverage {coverage}: expected a share in (0, 1), e.g. 0.8")
    qc = ImageQC.load(model, device=device)
    if getattr(qc, "quality_", None) is None:
        raise ConfigError(f"--model {model}: this model has no predicted-Dice estimator to calibrate (too few "
                          "held-out sources at training); retrain it with more cases")
    cases = pair_cases(images, predictions)
    truths = {c.case_id: c.mask for c in pair_cases(images, ground_truth, require_masks=False, require_images=False)
              if c.mask is not None}
    missing = [c.case_id for c in cases if c.case_id not in truths]
    if missing:
        raise InputError(f"{ground_truth}: no ground truth for case {missing[0]!r} ({len(missing)} of {len(cases)} "
                         "labelled cases lack one); every case given to calibrate needs its ground truth")
    estimates, true, groups = [], [], []
    columns = ["dice_mean", *(f"dice_{label}" for label in qc.labels_[1:])]
    for start in range(0, len(cases), CHUNK_CASES):
        prepared = [case for files in cases[start:start + CHUNK_CASES]
                    for case in prepare_case(files, qc.preprocess, qc.labels_)]
        scored = score_cases(qc, prepared, truths)
        for row in scored.rows:
            if row["message"]:
                raise InputError(f"{row['ground_truth']}: {row['message']}")
            true.append([row.get(column, np.nan) for column in columns])
        groups += source_groups(prepared, group_pattern)
        if scored.quality is not None:
            estimates.append(scored.quality)
        if on_case is not None:
            on_case(min(start + CHUNK_CASES, len(cases)), len(cases))
    if not estimates:
        raise InputError(f"{predictions}: no case could be assessed")
    found = qc.calibrate_with(QualityEstimate.concatenate(estimates), np.asarray(true, np.float64), groups, coverage)
    qc.save(out)
    return CalibrationRun(qc, found, out)
