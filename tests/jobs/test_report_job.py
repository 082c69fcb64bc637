"""rerender_report: report.html rendered again from a report's tables, with or without the run history."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest

from segqc.detectors.image import ImageQC
from segqc.errors import InputError, OutputError
from segqc.jobs.report import rerender_report
from segqc.jobs.score import ScoreOptions, score_folder
from segqc.synthetic import phantoms


@pytest.fixture(scope="module")
def scored(image_model, tmp_path_factory):
    """A report directory scored twice into one history (so the history has a trend)."""
    root = tmp_path_factory.mktemp("report-job")
    phantoms.write_cases(phantoms.make_prediction_set(4, (32, 32), seed=6), root / "cases", fmt="png")
    qc = ImageQC.load(image_model[1], device="cpu")
    for _ in range(2):
        score_folder(qc, root / "cases" / "predictions", root / "cases" / "images", root / "report",
                     ScoreOptions(history=root / "history.db"))
    return root


@pytest.fixture
def report(scored, tmp_path):
    """A fresh copy of the scored report to change."""
    return shutil.copytree(scored / "report", tmp_path / "report")


def test_a_deleted_report_page_is_rendered_again_from_the_tables(report) -> None:
    original = (report / "report.html").read_text()
    (report / "report.html").unlink()
    assert rerender_report(report) == report / "report.html"
    page = (report / "report.html").read_text()
    assert all(f"pred_{i:04d}" in page for i in range(4))
    assert 'id="trend"' in original and 'id="trend"' not in page  # no history given: no trend


def test_the_page_follows_the_tables_as_they_are_now(report) -> None:
    scores = pd.read_csv(report / "scores.csv")
    dropped = scores["case_id"].iloc[-1]
    scores.iloc[:-1].to_csv(report / "scores.csv", index=False)
    rerender_report(report)
    page = (report / "report.html").read_text()
    assert dropped not in page and scores["case_id"].iloc[0] in page


def test_with_the_history_the_page_shows_the_trend_of_the_models_runs(report, scored) -> None:
    rerender_report(report, scored / "history.db")
    assert 'id="trend"' in (report / "report.html").read_text()


def test_a_missing_history_file_is_an_input_error_and_the_page_is_kept(report, tmp_path) -> None:
    before = (report / "report.html").read_text()
    with pytest.raises(InputError, match=f"^{re.escape(str(tmp_path / 'none.db'))}: history database not found"):
        rerender_report(report, tmp_path / "none.db")
    assert (report / "report.html").read_text() == before
    assert not (tmp_path / "none.db").exists()


def test_a_folder_segqc_did_not_write_is_refused(tmp_path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep")
    with pytest.raises(OutputError, match="DIRECTORY"):
        rerender_report(tmp_path / "notes")
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]


def test_a_report_without_its_tables_is_an_input_error(report) -> None:
    (report / "summary.json").unlink()
    with pytest.raises(InputError, match="summary.json"):
        rerender_report(report)
