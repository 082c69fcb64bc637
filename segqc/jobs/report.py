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
        runs = RunHistory(history).runs(read_summary(directory / "summary.json")["model"]["id"])
    return render_report(directory, runs)
