"""`segqc score` and `segqc report` end to end on phantom files the tests write."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from segqc.cli import app
from segqc.history import RunHistory
from segqc.jobs.score import FAILED_QC_EXIT_CODE
from segqc.synthetic import phantoms

runner = CliRunner()
@pytest.fixture(scope="module")
def setup(image_model, tmp_path_factory):
    model_root, model = image_model
    root = tmp_path_factory.mktemp("score")
    (root / "model").symlink_to(model, target_is_directory=True)
    cases = phantoms.make_prediction_set(12, (32, 32), seed=1, failure_fraction=0.5)
    phantoms.write_cases(cases, root / "test", fmt="png")
    predictions = root / "test" / "predictions"
    (predictions / f"{cases[0].case_id}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # corrupt file
    odd = np.asarray(Image.open(predictions / f"{cases[1].case_id}.png")).copy()
    odd[:4, :4] = 7  # a label the model never saw
    Image.fromarray(odd).save(predictions / f"{cases[1].case_id}.png")
    return root, cases


def score_args(root, out="report", *extra: str) -> list[str]:
    return ["score", str(root / "test/predictions"), "--images", str(root / "test/images"), "--model",
            str(root / "model"), "--out", str(root / out), "--ground-truth", str(root / "test/masks"),
            "--top-k", "5", *extra]


def test_unpaired_files_become_error_rows(setup, tmp_path) -> None:
    root, cases = setup
    for name in ("images", "predictions", "masks"):
        (tmp_path / name).mkdir()
        for case in cases[2:6]:
            source = root / "test" / name / f"{case.case_id}.png"
            (tmp_path / name / source.name).write_bytes(source.read_bytes())
    (tmp_path / "images" / f"{cases[2].case_id}.png").rename(tmp_path / "images" / "no_prediction.png")
    result = runner.invoke(app, ["score", str(tmp_path / "predictions"), "--images", str(tmp_path / "images"),
                                 "--model", str(root / "model"), "--out", str(tmp_path / "report"),
                                 "--ground-truth", str(tmp_path / "masks")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "report" / "scores.csv", keep_default_na=False).set_index("case_id")
    assert table.loc[cases[2].case_id, "message"].startswith("no image for this predicted mask")
    assert table.loc["no_prediction", "message"].startswith("no predicted mask for this image")
    assert (table["status"] == "ok").sum() == 3


def test_score_writes_the_full_report(setup) -> None:
    root, cases = setup
    result = runner.invoke(app, score_args(root, "report", "--history", str(root / "history.sqlite")))
    assert result.exit_code == 0, result.output
    report = root / "report"
    table = pd.read_csv(report / "scores.csv", keep_default_na=False)
    assert len(table) == 12
    errors = table[table["status"] == "error"]
    assert set(errors["case_id"]) == {cases[0].case_id, cases[1].case_id}
    assert errors["message"].str.contains("7").any() and (errors["verdict"] == "error").all()
    ok = table[table["status"] == "ok"]
    assert sorted(ok["rank"].astype(int)) == list(range(1, 11))
    assert set(ok["verdict"]) <= {"pass", "review", "fail"}
    for column in ("dice_mean", "dice_1", "dice_2", "msd", "hd95", "norm_1", "norm_3"):
        assert column in table
    assert all((report / p).is_file() for p in ok["heatmap"])
    assert sum(bool(p) for p in ok["gallery"]) == 5
    summary = json.loads((report / "summary.json").read_text())
    assert summary["verdicts"]["error"] == 2 and summary["run"]["scored"] == 10
    assert summary["run"]["device"] == "cpu" and summary["run"]["cases_per_second"] > 0
    headline = summary["headline_ranking"]
    assert set(summary["correlations"][headline]) >= {"dice_mean", "msd", "hd95"}
    assert "auroc" in summary["failure_detection"][headline] and summary["exit"]["code"] == 0
    assert f"headline ranking: {summary['rankings'][headline]['label']}" in result.output
    assert f"AUROC {summary['failure_detection'][headline]['auroc']:.3f}" in result.output
    html = (report / "report.html").read_text()
    assert cases[5].case_id in html and "data:image/png;base64" in html
    assert not list(root.glob(".report*")), "no temporary directories left"


def test_fail_on_gives_a_distinct_exit_code(setup) -> None:
    root, _ = setup
    result = runner.invoke(app, score_args(root, "report-strict", "--fail-on", "0"))
    assert result.exit_code == FAILED_QC_EXIT_CODE, result.output


def test_history_and_incremental_runs(setup) -> None:
    root, _ = setup
    database = root / "nightly.sqlite"
    first = runner.invoke(app, score_args(root, "nightly", "--history", str(database), "--incremental"))
    second = runner.invoke(app, score_args(root, "nightly", "--history", str(database), "--incremental"))
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    summary = json.loads((root / "nightly" / "summary.json").read_text())
    assert summary["run"]["skipped_unchanged"] == 10
    first_table = pd.read_csv(root / "report" / "scores.csv")
    second_table = pd.read_csv(root / "nightly" / "scores.csv")
    np.testing.assert_allclose(np.sort(first_table["score"].dropna()), np.sort(second_table["score"].dropna()))
    runs = RunHistory(database).runs()
    assert len(runs) == 2 and runs[-1]["run"]["cases"] == 12 and runs[-1]["verdicts"]["error"] == 2
    rerender = runner.invoke(app, ["report", str(root / "nightly"), "--history", str(database)])
    assert rerender.exit_code == 0, rerender.output


def test_incremental_needs_history(setup) -> None:
    root, _ = setup
    result = runner.invoke(app, score_args(root, "x", "--incremental"))
    assert result.exit_code == 2 and "--history" in result.output


def test_missing_model_is_bad_input(setup) -> None:
    root, _ = setup
    result = runner.invoke(app, ["score", str(root / "test/predictions"), "--images", str(root / "test/images"),
                                 "--model", str(root / "nope"), "--out", str(root / "r")])
    assert result.exit_code == 2 and "not a segqc model bundle" in result.output


def test_python_api_mirrors_the_cli(setup) -> None:
    import segqc

    root, _ = setup
    qc = segqc.ImageQC.load(root / "model")
    run = segqc.score_folder(qc, root / "test/predictions", root / "test/images", root / "api-report",
                             segqc.ScoreOptions(ground_truth=root / "test/masks"))
    cli = pd.read_csv(root / "report" / "scores.csv")
    np.testing.assert_allclose(np.sort(run.table["score"].dropna()), np.sort(cli["score"].dropna()), rtol=1e-6)
    assert run.exit_code == 0 and (root / "api-report" / "report.html").is_file()


def test_streaming_in_small_chunks_gives_the_same_report(setup, monkeypatch) -> None:
    """Chunks of 3 files (errors, gallery pool pruning across chunks) give the report of one chunk."""
    from segqc.jobs import score as scoring
    from segqc.report import gallery

    root, _ = setup
    assert runner.invoke(app, score_args(root, "one-chunk")).exit_code == 0
    monkeypatch.setattr(scoring, "CHUNK_CASES", 3)
    offered = []
    original = gallery.GalleryPool.offer
    monkeypatch.setattr(gallery.GalleryPool, "offer", lambda pool, rows, *rest: (
        offered.append(len(rows)), original(pool, rows, *rest)))
    result = runner.invoke(app, score_args(root, "chunks"))
    assert result.exit_code == 0, result.output
    assert len(offered) == 4 and max(offered) <= 3
    whole = pd.read_csv(root / "one-chunk/scores.csv", keep_default_na=False)
    chunked = pd.read_csv(root / "chunks/scores.csv", keep_default_na=False)
    assert list(chunked.columns) == list(whole.columns)
    for column in ("case_id", "rank", "verdict", "status", "message", "heatmap", "gallery", "gallery_reason"):
        assert list(chunked[column]) == list(whole[column]), column
    ok = whole["status"] == "ok"
    np.testing.assert_allclose(chunked.loc[ok, "score"].astype(float), whole.loc[ok, "score"].astype(float),
                               rtol=1e-6)
    np.testing.assert_allclose(chunked.loc[ok, "dice_mean"].astype(float), whole.loc[ok, "dice_mean"].astype(float))
    for relative in whole.loc[whole["gallery"] != "", "gallery"]:
        assert (root / "chunks" / relative).is_file()


def test_the_gallery_pool_keeps_every_case_the_gallery_can_choose() -> None:
    """Pruned chunk by chunk, the pool still holds the top-K and the cases nearest the fail line."""
    from segqc.report.gallery import GalleryPool, gallery_cases

    rng = np.random.default_rng(0)
    scores, predicted = rng.normal(size=200), rng.uniform(0, 1, 200)
    pool = GalleryPool(top_k=6, dice_threshold=0.8)
    for start in range(0, 200, 7):
        rows = [{"score": scores[i], "predicted_dice": predicted[i]} for i in range(start, min(start + 7, 200))]
        cases = [type("Case", (), {"case_id": f"c{i}"})() for i in range(start, min(start + 7, 200))]
        pool.offer(rows, cases, np.zeros((len(rows), 2, 2)), np.zeros((len(rows), 2, 2)), {})
        assert len(pool.candidates) <= 4 * 6
    order = np.argsort(-scores, kind="stable")
    table = pd.DataFrame({"case_id": [f"c{i}" for i in range(200)], "status": "ok", "predicted_dice": predicted,
                          "rank": np.argsort(order) + 1})
    chosen = gallery_cases(table, 6, 0.8)
    assert len(chosen) == 9 and set(chosen) <= set(pool.candidates)
