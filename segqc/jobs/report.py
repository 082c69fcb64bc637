"""The job behind ``segqc report``: render ``report.html`` again from a report directory's tables."""

from __future__ import annotations

from pathlib import Path

from segqc.errors import InputError
from segqc.history import RunHistory
from segqc.manifests import OutputKind
from segqc.outputs import check_output_member
from segqc.report import render_report
from segqc.report.html import REPORT_FILE, read_summary


def rerender_report(directory: Path, history: Path | None = None) -> Path:
    """Render ``directory/report.html`` from its ``scores.csv`` and ``summary.json``.

    Args:
        directory: A report directory written by ``segqc score`` (only its ``report.html`` is replaced).
        history: SQLite history whose runs of the same model feed the trend chart, or ``None``.

    Returns:
        The path of ``report.html``.
    """
    check_output_member(directory, REPORT_FILE, OutputKind.REPORT, "DIRECTORY")  # only report.html is replaced
    runs = None
    if history is not None:
        if not history.is_file():
            raise InputError(f"{history}: history database not found")
        with RunHistory(history) as database:
            runs = database.runs(_model_id(directory / "summary.json"))
    return render_report(directory, runs)


def _model_id(summary_file: Path) -> str:
    """The id of the model a report's ``summary.json`` names (which picks its runs from a history).

    Raises:
        InputError: The summary names no model id.
    """
    model = read_summary(summary_file).get("model")
    model_id = model.get("id") if isinstance(model, dict) else None
    if not isinstance(model_id, str) or not model_id:
        raise InputError(f'{summary_file}: names no model id ("model": {{"id": ...}}), which --history needs to '
                         "pick this model's runs; leave out --history, or score again to rewrite the report")
    return model_id
