"""The tabular jobs: fit_table writes a bundle, score_table scores a table with it; neither overwrites others' files."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import chained_table
from sklearn.metrics import roc_auc_score

from segqc.errors import ConfigError, OutputError
from segqc.jobs.tabular import fit_table, score_table

MODEL = {"levels": 5, "width": 32, "depth": 2, "embedding_size": 16}
TRAINING = {"steps": 150, "batch_size": 128, "lr": 1e-2, "val_every": 50, "checkpoint_every": 50, "device": "cpu"}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("tabular-jobs")
    chained_table(500, seed=0)[0].to_csv(root / "train.csv", index=False)
    config = root / "config.yaml"
    config.write_text("model:\n  width: 999\n  levels: 5\ntraining:\n  steps: 5000\n  seed: 3\n")
    steps = []
    detector = fit_table(root / "train.csv", root / "model", config=config,
                         model={**MODEL, "dropout": None}, training=TRAINING, ignore=["d"], id_column="id",
                         on_step=steps.append)
    return root, detector, steps


def test_fit_table_writes_a_bundle_from_the_file_and_the_overrides(fitted) -> None:
    root, detector, steps = fitted
    metadata = json.loads((root / "model" / "segqc.json").read_text())
    assert metadata["mode"] == "tabular"
    assert metadata["model"]["width"] == 32 and metadata["model"]["levels"] == 5  # overrides beat the file
    assert metadata["training"]["steps"] == 150 and metadata["training"]["seed"] == 3  # the file fills the rest
    assert metadata["model"]["dropout"] == detector.model.dropout  # a None override leaves the value alone
    assert len(steps) == 150 and steps[-1].step == 150
    assert not (root / "model.checkpoints").exists()  # checkpoints are removed once the bundle is written
    assert detector.schema_.id_column == "id" and "d" not in [c.name for c in detector.schema_.categorical]


def test_score_table_round_trip_ranks_planted_anomalies_first(fitted) -> None:
    root, _, _ = fitted
    test, is_anomaly = chained_table(200, seed=4, anomalies=20)
    test.to_csv(root / "new.csv", index=False)
    result, trimming = score_table(root / "new.csv", root / "model", root / "scores.csv", device="cpu")
    assert trimming == ""  # fitted on every row
    written = pd.read_csv(root / "scores.csv")
    assert list(written["id"]) == list(test["id"]) == list(result["id"])
    pd.testing.assert_series_equal(written["score"], result["score"], check_exact=False)
    assert {"score", "rank", "verdict"} <= set(written.columns)
    assert roc_auc_score(is_anomaly, written["score"]) >= 0.9
    top = written.nsmallest(20, "rank")
    assert test.loc[top.index, "id"].isin(test["id"][is_anomaly]).mean() >= 0.7
    assert (written.loc[is_anomaly, "verdict"] != "pass").mean() > 0.5


def test_score_table_replaces_its_own_scores_but_not_another_file(fitted) -> None:
    root, _, _ = fitted
    chained_table(40, seed=5)[0].to_csv(root / "small.csv", index=False)
    score_table(root / "small.csv", root / "model", root / "again.csv")
    score_table(root / "small.csv", root / "model", root / "again.csv")  # its own earlier output: replaced
    assert len(pd.read_csv(root / "again.csv")) == 40
    (root / "notes.csv").write_text("mine\n")
    with pytest.raises(OutputError, match="notes.csv"):
        score_table(root / "small.csv", root / "model", root / "notes.csv")
    assert (root / "notes.csv").read_text() == "mine\n"
    with pytest.raises(OutputError, match="input"):
        score_table(root / "small.csv", root / "model", root / "small.csv")


def test_fit_table_refuses_a_folder_it_did_not_write_and_writes_nothing(tmp_path) -> None:
    chained_table(60, seed=0)[0].to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.txt").write_text("precious")
    with pytest.raises(OutputError, match="not written by segqc"):
        fit_table(tmp_path / "train.csv", tmp_path / "out", model=MODEL, training=TRAINING)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["results.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "train.csv"]


def test_fit_table_refuses_a_bad_option_before_training(tmp_path) -> None:
    chained_table(60, seed=0)[0].to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(ConfigError, match="steps"):
        fit_table(tmp_path / "train.csv", tmp_path / "model", model=MODEL, training={**TRAINING, "steps": 0})
    assert not (tmp_path / "model").exists()
