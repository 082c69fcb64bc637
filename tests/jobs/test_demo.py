"""`segqc demo --fast` end to end."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from segqc.cli import app


def test_fast_demo_writes_a_report_and_prints_the_summary(tmp_path) -> None:
    result = CliRunner().invoke(app, ["demo", "--fast", "--out", str(tmp_path / "demo"), "--device", "cpu"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    report = tmp_path / "demo" / "report"
    assert (report / "report.html").is_file() and (tmp_path / "demo" / "model" / "segqc.json").is_file()
    summary = json.loads((report / "summary.json").read_text())
    assert summary["run"]["scored"] == 30 and summary["failure_detection"]["score"]["auroc"] is not None
    for text in ("verdicts:", "Spearman", "failure detection", "headline ranking", "report.html"):
        assert text in result.output
