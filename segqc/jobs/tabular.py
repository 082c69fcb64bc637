"""The jobs behind ``segqc tabular fit`` and ``segqc tabular score``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from segqc.config import TabularModelConfig, TrainingConfig, merged_config, read_mapping_file
from segqc.csvfiles import write_csv
from segqc.detectors.tabular import TabularQC
from segqc.fitting.checkpoints import checkpoints_for
from segqc.fitting.trainer import StepInfo
from segqc.manifests import OutputKind
from segqc.outputs import check_output_dir, check_output_file, owned_file


def fit_table(data: Path, out: Path, config: Path | None = None, model: Mapping[str, Any] | None = None,
              training: Mapping[str, Any] | None = None, categorical: Sequence[str] = (),
              continuous: Sequence[str] = (), ignore: Sequence[str] = (), id_column: str | None = None,
              resume: bool = False, on_step: Callable[[StepInfo], None] | None = None,
              on_read: Callable[[int, int, str], None] | None = None) -> TabularQC:
    """Learn what normal rows of a table look like and write the model bundle ``out``.

    Args:
        data: Training table (CSV / TSV / Parquet).
        out: Model bundle directory.
        config: YAML / JSON file with ``model`` and ``training`` sections, or ``None``.
        model: Model options overriding the file's (``None`` values ignored).
        training: Training options overriding the file's (``None`` values ignored).
        categorical: Columns to treat as categorical.
        continuous: Columns to treat as continuous.
        ignore: Columns to leave out.
        id_column: Column of row ids (left out of the model, copied to the scores).
        resume: Continue an interrupted run from the checkpoint beside ``out``.
        on_step: Progress callback after each training step.
        on_read: Progress callback ``(done, total, status)`` while the table is read and encoded.

    Returns:
        The fitted detector.
    """
    check_output_dir(out, OutputKind.MODEL, [data, config], mode="tabular")
    sections = read_mapping_file(config, ("model", "training"), "config file") if config else {}
    detector = TabularQC(merged_config(TabularModelConfig, sections, "model", model or {}),
                         merged_config(TrainingConfig, sections, "training", training or {}),
                         list(categorical), list(continuous), list(ignore), id_column)
    with checkpoints_for(out, "tabular") as checkpoints:
        detector.fit(data, on_step=on_step, checkpoint_dir=checkpoints, resume=resume, on_read=on_read)
        detector.save(out)
    return detector


def score_table(data: Path, model: Path, out: Path, device: str | None = None,
                on_read: Callable[[int, int, str], None] | None = None) -> tuple[pd.DataFrame, str]:
    """Score every row of a table with a tabular model and write the scores CSV ``out``.

    The CSV is spreadsheet-safe (:mod:`segqc.csvfiles`) and written atomically as segqc's own file
    (:func:`segqc.outputs.owned_file`); a pipe or device such as ``/dev/stdout`` is written directly.

    Returns:
        The scores, one row per input row in input order (see :meth:`TabularQC.score_table`), and what the
        model left out of its training rows as anomalous (:attr:`TabularQC.trimming`).
    """
    check_output_file(out, [data, model])
    detector = TabularQC.load(model, device=device)
    result = detector.score_table(data, on_read=on_read)
    with owned_file(out) as target:
        write_csv(result, target)
    return result, detector.trimming
