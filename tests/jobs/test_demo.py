"""`segqc demo --fast` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segqc.cli import app
from segqc.jobs.demo import run_demo


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


def tree(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_an_interrupted_rerun_keeps_the_earlier_demo_whole(tmp_path: Path, monkeypatch) -> None:
    run_demo(tmp_path / "demo", fast=True, device="cpu")
    before = tree(tmp_path / "demo")

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("segqc.jobs.demo.score_folder", interrupted)  # after the new data and model were written
    with pytest.raises(KeyboardInterrupt):
        run_demo(tmp_path / "demo", fast=True, seed=5, device="cpu")
    assert tree(tmp_path / "demo") == before and [p.name for p in tmp_path.iterdir()] == ["demo"]
