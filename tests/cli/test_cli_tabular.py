"""`segqc tabular fit|score` through Typer's CliRunner."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import chained_table
from typer.testing import CliRunner

from segqc.cli import app

runner = CliRunner()
FAST = ["--steps", "400", "--width", "48", "--depth", "2", "--levels", "5", "--batch-size", "128", "--device", "cpu"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple:
    root = tmp_path_factory.mktemp("cli")
    chained_table(600)[0].to_csv(root / "train.csv", index=False)
    config = root / "config.yaml"
    config.write_text("training:\n  lr: 0.01\n  val_every: 100\nmodel:\n  embedding_size: 16\n")
    result = runner.invoke(app, ["tabular", "fit", str(root / "train.csv"), "--out", str(root / "model"),
                                 "--id-column", "id", "--config", str(config), *FAST])
    assert result.exit_code == 0, result.output
    return root, result


def test_fit_writes_a_bundle_and_cleans_checkpoints(fitted) -> None:
    root, result = fitted
    assert (root / "model" / "segqc.json").is_file()
    assert not (root / "model.checkpoints").exists()
    assert "model written to" in result.output


def test_score_writes_one_row_per_input_row_in_order(fitted) -> None:
    root, _ = fitted
    test, is_anomaly = chained_table(120, seed=2, anomalies=12)
    test.to_parquet(root / "new.parquet")
    result = runner.invoke(app, ["tabular", "score", str(root / "new.parquet"), "--model", str(root / "model"),
                                 "--out", str(root / "scores.csv")])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(root / "scores.csv")
    assert scores["id"].tolist() == test["id"].tolist()
    assert list(scores.columns[:5]) == ["id", "score", "rank", "verdict", "unseen_categories"]
    assert scores.loc[is_anomaly, "rank"].median() < scores.loc[~is_anomaly, "rank"].median()
    assert "rows scored" in result.output


def _one_error_line(result) -> str:
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:")
    return lines[0]


BAD_FILES = {
    "empty.csv": b"",
    "header.csv": b"a,b,c\n",
    "latin1.csv": "name,city\nJosé,Zürich\n".encode("latin-1") * 30,
    "malformed.csv": b"a,b\n1,2\n3,4,5,6\n",
    "nan_only.csv": b"a,b\n" + b",\n" * 30,
    "no_usable.csv": b"a,b\n" + b"1,x\n" * 40,
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_training_files_exit_2_with_one_line_and_no_output(tmp_path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(BAD_FILES[name])
    result = runner.invoke(app, ["tabular", "fit", str(path), "--out", str(tmp_path / "model"), *FAST])
    assert result.exit_code == 2
    assert name in _one_error_line(result)
    assert not (tmp_path / "model").exists()


def test_directory_instead_of_a_file(tmp_path) -> None:
    (tmp_path / "folder").mkdir()
    result = runner.invoke(app, ["tabular", "fit", str(tmp_path / "folder"), "--out", str(tmp_path / "model")])
    assert result.exit_code == 2 and "is a directory" in _one_error_line(result)


def test_score_with_wrong_columns_keeps_old_output(fitted, tmp_path) -> None:
    root, _ = fitted
    out = tmp_path / "scores.csv"
    previous = "row,score,rank,verdict,unseen_categories\n0,1.5,1,pass,0\n"
    out.write_text(previous)
    pd.DataFrame({"id": ["x"], "a": [1]}).to_csv(tmp_path / "wrong.csv", index=False)
    result = runner.invoke(app, ["tabular", "score", str(tmp_path / "wrong.csv"), "--model", str(root / "model"),
                                 "--out", str(out)])
    assert result.exit_code == 2 and "missing column" in _one_error_line(result)
    assert out.read_text() == previous


def test_unknown_column_and_option_values(tmp_path) -> None:
    chained_table(100)[0].to_csv(tmp_path / "t.csv", index=False)
    result = runner.invoke(app, ["tabular", "fit", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"),
                                 "--categorical", "vlaue"])
    assert result.exit_code == 2 and "did you mean 'value'" in _one_error_line(result)
    result = runner.invoke(app, ["tabular", "fit", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"),
                                 "--method", "msmaa"])
    assert result.exit_code == 2 and "did you mean 'msma'" in _one_error_line(result)
    (tmp_path / "c.yaml").write_text("training:\n  stpes: 3\n")
    result = runner.invoke(app, ["tabular", "fit", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"),
                                 "--config", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2 and "training.stpes (did you mean 'steps'?)" in _one_error_line(result)


def test_score_with_a_missing_model(tmp_path) -> None:
    chained_table(30)[0].to_csv(tmp_path / "t.csv", index=False)
    result = runner.invoke(app, ["tabular", "score", str(tmp_path / "t.csv"), "--model", str(tmp_path / "none"),
                                 "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 2 and "not a segqc model bundle" in _one_error_line(result)
    assert not (tmp_path / "s.csv").exists()


def test_help_teaches_every_option_with_defaults() -> None:
    result = runner.invoke(app, ["tabular", "fit", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("--categorical", "--contaminated", "--contamination", "--resume", "(default: msma)",
                 "(default: 2000)"):
        assert text in result.output


def test_resume_without_a_checkpoint_starts_fresh(tmp_path) -> None:
    chained_table(300)[0].to_csv(tmp_path / "t.csv", index=False)
    args = ["tabular", "fit", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"), "--id-column", "id",
            "--steps", "40", "--width", "16", "--depth", "1", "--levels", "3", "--device", "cpu", "--resume"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "segqc.json").is_file()
    said = "".join(result.stderr.split())  # the log line may be wrapped, the path included
    assert "WARNING" in result.stderr and "".join(
        f"no checkpoint at {tmp_path / 'm.checkpoints' / 'last.pt'} to resume from; training starts at step 0"
        .split()) in said


def test_contamination_is_reported_by_fit_and_score(tmp_path) -> None:
    chained_table(600, seed=3, anomalies=30)[0].to_csv(tmp_path / "t.csv", index=False)
    result = runner.invoke(app, ["tabular", "fit", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"),
                                 "--id-column", "id", "--contamination", "0.05", *FAST])
    assert result.exit_code == 0, result.output
    assert "contamination: 5.0% of the training rows anomalous as given; 27 of 540 left out" in result.output
    result = runner.invoke(app, ["tabular", "score", str(tmp_path / "t.csv"), "--model", str(tmp_path / "m"),
                                 "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 0, result.output
    assert "model fitted with contamination: 5.0%" in result.output


@pytest.mark.parametrize("options,message", [
    (["--contamination", "lots"], "--contamination 'lots': expected 'auto' or a share"),
    (["--contamination", "0.5"], "--contamination '0.5': expected 'auto' or a share"),
    (["--contamination", "nan"], "--contamination 'nan': expected"),
    (["--contamination", "0.1", "--contaminated"], "give one of them"),
])
def test_bad_contamination_exits_2_and_writes_nothing(tmp_path, options: list[str], message: str) -> None:
    chained_table(100)[0].to_csv(tmp_path / "t.csv", index=False)
    before = (tmp_path / "t.csv").read_bytes()
    result = runner.invoke(app, ["tabular", "fit", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"), *options])
    assert result.exit_code == 2 and message in _one_error_line(result)
    assert not (tmp_path / "m").exists() and (tmp_path / "t.csv").read_bytes() == before
