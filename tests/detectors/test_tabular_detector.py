"""TabularQC: the estimator contract, detection quality and persistence."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
from conftest import chained_table, joint_table
from sklearn.metrics import average_precision_score, roc_auc_score

from segqc.bundle import METADATA_FILE, WEIGHTS_FILE, metadata_digest
from segqc.config import CLEAN_SIGMA_MIN, CONTAMINATED_SIGMA_MIN, TabularModelConfig
from segqc.data.tabular import encode
from segqc.detectors.tabular import TabularQC
from segqc.errors import BundleError, InputError, NotFittedError, SchemaError
from segqc.fitting.trainer import Trainer, typical_mask


def test_init_stores_arguments_only(tiny_model, tiny_training) -> None:
    qc = TabularQC(tiny_model, tiny_training, categorical=["a"], id_column="id")
    assert qc.model is tiny_model and qc.categorical == ["a"] and qc.id_column == "id"
    assert not [name for name in vars(qc) if name.endswith("_")]
    with pytest.raises(NotFittedError):
        qc.decision_function(chained_table(30)[0])


@pytest.mark.parametrize("method", ["msma", "kdsm"])
def test_fit_detects_planted_anomalies(tiny_model, tiny_training, train_frame, method: str) -> None:
    qc = TabularQC(dataclasses.replace(tiny_model, method=method), tiny_training, id_column="id")
    assert qc.fit(train_frame) is qc
    test, is_anomaly = chained_table(300, seed=1, anomalies=30)
    scores = qc.decision_function(test)
    assert scores.shape == (300,) and np.isfinite(scores).all()
    assert roc_auc_score(is_anomaly, scores) >= 0.9
    predictions = qc.predict(test)
    assert set(np.unique(predictions)) <= {0, 1}
    np.testing.assert_array_equal(predictions, (scores > qc.threshold_).astype(int))
    assert qc.decision_scores_.shape == (len(train_frame),)
    if method == "msma":  # a table taken to be clean: the noise levels end at the fine floor
        assert qc.model_.taus.min().item() == pytest.approx(CLEAN_SIGMA_MIN)


@pytest.mark.parametrize("method", ["msma", "kdsm"])
def test_joint_anomalies_with_normal_marginals_are_found(tiny_model, tiny_training, method: str) -> None:
    qc = TabularQC(dataclasses.replace(tiny_model, method=method), tiny_training).fit(joint_table(800)[0])
    test, is_anomaly = joint_table(300, seed=1, anomalies=30)
    assert roc_auc_score(is_anomaly, qc.decision_function(test)) >= 0.9


def test_an_anomaly_only_in_a_continuous_column_is_found(tiny_model, tiny_training) -> None:
    """Four categorical columns and one continuous: the continuous column must still count."""
    qc = TabularQC(tiny_model, tiny_training).fit(joint_table(800)[0])
    test, is_anomaly = joint_table(300, seed=2, anomalies=30, kind="continuous")
    table = qc.score_table(test)
    assert roc_auc_score(is_anomaly, table["score"]) >= 0.9
    assert set(table["top_column"]) <= {"a", "b", "c", "d", "value"}
    assert ((table["top_share"] >= 0) & (table["top_share"] <= 1)).all()


def test_score_table_keeps_input_order_and_ids(tiny_model, tiny_training, train_frame) -> None:
    qc = TabularQC(dataclasses.replace(tiny_model, method="msma"), tiny_training, id_column="id").fit(train_frame)
    test = chained_table(40, seed=3, anomalies=4)[0]
    table = qc.score_table(test)
    assert table["id"].tolist() == test["id"].tolist()
    assert sorted(table["rank"]) == list(range(1, 41))
    assert table.loc[table["score"].idxmax(), "rank"] == 1
    assert set(table["verdict"]) <= {"pass", "review", "fail"}
    assert [c for c in table.columns if c.startswith("norm_")] == [f"norm_{i}" for i in range(1, 6)]


def test_unseen_categories_raise_the_score(tiny_model, tiny_training, train_frame, caplog) -> None:
    qc = TabularQC(tiny_model, tiny_training, id_column="id").fit(train_frame)
    test = chained_table(50, seed=4)[0]
    odd = test.copy()
    odd.loc[:9, "d"] = "never-seen"
    with caplog.at_level(logging.WARNING):
        table = qc.score_table(odd)
    assert "never-seen" in caplog.text
    assert table["unseen_categories"].tolist() == [1] * 10 + [0] * 40
    assert (table["score"][:10].to_numpy() > qc.score_table(test)["score"][:10].to_numpy()).mean() >= 0.8


def test_wrong_columns_are_named(tiny_model, tiny_training, train_frame) -> None:
    qc = TabularQC(tiny_model, tiny_training, id_column="id").fit(train_frame)
    with pytest.raises(SchemaError, match="'c'"):
        qc.decision_function(train_frame.drop(columns=["c"]))


def test_too_few_rows(tiny_model, tiny_training) -> None:
    with pytest.raises(InputError, match="need at least"):
        TabularQC(tiny_model, tiny_training).fit(chained_table(10)[0])


def test_contaminated_training_with_ema_teacher(tiny_model, tiny_training) -> None:
    frame, is_anomaly = chained_table(600, seed=5, anomalies=30)
    training = dataclasses.replace(tiny_training, contaminated=True)
    qc = TabularQC(tiny_model, training, id_column="id").fit(frame)
    assert roc_auc_score(is_anomaly, qc.decision_scores_) >= 0.8


@pytest.mark.parametrize("seed", [0, 1])
def test_contamination_estimate_is_close_to_the_planted_share(tiny_model, tiny_training, seed: int) -> None:
    """10 % anomalies among typical rows without rare values: the estimate lies within 0.05 of the planted share.

    (On a clean table the estimate leans high: 0.003-0.14 over 11 fits of tiny models, see docs/benchmarks.md.)
    """
    frame, is_anomaly = chained_table(1000, seed=seed, anomalies=100, noise=0.0)
    qc = TabularQC(dataclasses.replace(tiny_model, contamination="auto"), tiny_training, id_column="id").fit(frame)
    assert abs(qc.contamination_ - is_anomaly.mean()) <= 0.05
    summary = qc.training_
    assert summary["contamination_estimated"] and summary["training_rows"] == 900
    assert summary["trimmed_rows"] == round(qc.contamination_ * 900)
    assert f"{summary['trimmed_rows']} of 900 left out of the fit" in qc.trimming


def test_trimming_beats_the_plain_fit_on_a_contaminated_table(tiny_model, tiny_training) -> None:
    """10 % anomalies in the training rows: leaving out the estimated share ranks new anomalies far better."""
    frame, _ = chained_table(1000, seed=0, anomalies=100)
    test, is_anomaly = chained_table(600, seed=100, anomalies=60)
    precision = {}
    for contamination in (0.0, "auto"):
        qc = TabularQC(dataclasses.replace(tiny_model, contamination=contamination), tiny_training,
                       id_column="id").fit(frame)
        precision[contamination] = average_precision_score(is_anomaly, qc.decision_function(test))
    assert precision["auto"] >= precision[0.0] + 0.2, precision  # measured 0.52 -> 0.94
    assert qc.contamination_ > 0.05 and "estimated" in qc.trimming


def test_a_given_contamination_is_left_out_as_given(tiny_model, tiny_training, train_frame, tmp_path) -> None:
    qc = TabularQC(dataclasses.replace(tiny_model, contamination=0.1), tiny_training, id_column="id")
    qc.fit(train_frame)
    assert qc.contamination_ == 0.1 and qc.training_["trimmed_rows"] == round(0.1 * qc.training_["training_rows"])
    assert "10.0% of the training rows anomalous as given" in qc.trimming
    assert qc.model_.taus.min().item() == pytest.approx(CONTAMINATED_SIGMA_MIN)  # anomalies blurred, not learnt
    assert TabularQC.load(qc.save(tmp_path / "model")).trimming == qc.trimming
    assert TabularQC(tiny_model, tiny_training, id_column="id").fit(train_frame).trimming == ""


def test_the_final_fit_carries_on_from_the_ranking_fit(tiny_model, tiny_training, train_frame, monkeypatch) -> None:
    """With trimming, the ranking fit and the final fit share ``training.steps`` and one progress count."""
    started = []
    original = Trainer.fit

    def spy(trainer, *args, **kwargs):
        started.append((trainer.config.steps, {k: v.clone() for k, v in trainer.model.state_dict().items()}))
        return original(trainer, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", spy)
    progress = []
    qc = TabularQC(dataclasses.replace(tiny_model, contamination=0.1, ranking_fraction=0.25), tiny_training,
                   id_column="id").fit(train_frame, on_step=lambda info: progress.append((info.step, info.total)))
    (ranking_steps, initial), (final_steps, carried) = started
    assert (ranking_steps, final_steps) == (100, 300)
    assert progress == [(step, 400) for step in range(1, 401)]
    summary = qc.training_
    assert summary["steps"] == 400 and summary["ranking_steps"] == 100 and 100 < summary["best_step"] <= 400
    assert [entry["step"] for entry in summary["history"]] == list(range(150, 401, 50))
    assert any(not torch.equal(initial[k], carried[k]) for k in initial)  # the final fit starts where ranking ended


def test_a_trimmed_fit_resumes_where_it_was_interrupted(tiny_model, tiny_training, train_frame, tmp_path) -> None:
    """Interrupted in its final part, a trimmed fit ranks again and carries on from the checkpoint exactly."""
    model = dataclasses.replace(tiny_model, contamination=0.1)
    straight = TabularQC(model, tiny_training, id_column="id").fit(train_frame)

    def interrupt(info) -> None:
        if info.step == 250:  # the final part's checkpoint of overall step 200 is on disk
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        TabularQC(model, tiny_training, id_column="id").fit(train_frame, on_step=interrupt, checkpoint_dir=tmp_path)
    steps = []
    resumed = TabularQC(model, tiny_training, id_column="id").fit(
        train_frame, on_step=lambda info: steps.append(info.step), checkpoint_dir=tmp_path, resume=True)
    assert steps == [*range(1, 101), *range(201, 401)]  # ranked again, then on from the checkpoint
    for key, value in straight.model_.state_dict().items():
        torch.testing.assert_close(resumed.model_.state_dict()[key], value)
    assert resumed.training_["steps"] == 400 and resumed.training_["best_step"] == straight.training_["best_step"]
    np.testing.assert_allclose(resumed.decision_scores_, straight.decision_scores_)


def test_ema_teacher_filter_drops_planted_anomalies(tiny_model, tiny_training) -> None:
    """The teacher's rule (keep the 80 % lowest norms of a batch) removes most planted anomalies."""
    frame, is_anomaly = joint_table(1000, seed=6, anomalies=50)
    training = dataclasses.replace(tiny_training, contaminated=True)
    qc = TabularQC(tiny_model, training).fit(frame)
    table = encode(frame, qc.schema_)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        norms = qc.model_.filter_norms(torch.from_numpy(table.codes), torch.from_numpy(table.continuous), generator)
    dropped = ~typical_mask(norms, training.filter_keep).numpy()
    assert dropped[is_anomaly].mean() >= 0.7  # 0.2 by chance
    assert dropped[~is_anomaly].mean() <= 0.2


def test_save_load_round_trip_and_tampering(tiny_model, tiny_training, train_frame, tmp_path) -> None:
    qc = TabularQC(tiny_model, tiny_training, id_column="id").fit(train_frame)
    path = qc.save(tmp_path / "model")
    loaded = TabularQC.load(path)
    test = chained_table(60, seed=6, anomalies=6)[0]
    np.testing.assert_allclose(loaded.decision_function(test), qc.decision_function(test), rtol=1e-5)
    assert loaded.threshold_ == qc.threshold_
    assert not list(tmp_path.glob(".model*")), "no temporary directories left behind"

    weights = path / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(BundleError, match="checksum mismatch"):
        TabularQC.load(path)


def test_foreign_bundles_are_refused(tiny_model, tiny_training, train_frame, tmp_path) -> None:
    path = TabularQC(tiny_model, tiny_training).fit(train_frame).save(tmp_path / "model")
    meta = json.loads((path / METADATA_FILE).read_text())
    (path / METADATA_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(BundleError, match="format version 99"):
        TabularQC.load(path)
    older = {k: v for k, v in meta.items() if k != "head"}  # as written before the per-variable head
    (path / METADATA_FILE).write_text(json.dumps({**older, "digest": metadata_digest(older)}))
    with pytest.raises(BundleError, match="earlier segqc.*refit"):
        TabularQC.load(path)
    (path / METADATA_FILE).write_text(json.dumps({**meta, "mode": "image"}))
    with pytest.raises(BundleError, match="'image' model"):
        TabularQC.load(path)
    with pytest.raises(BundleError, match="not a segqc model bundle"):
        TabularQC.load(tmp_path)


def test_training_on_two_threads_is_reproducible(tiny_training, train_frame) -> None:
    """The level embedding is gathered without fancy indexing, whose CPU backward adds with atomics on threads."""
    model = TabularModelConfig(levels=3, width=128, depth=1, embedding_size=16)  # FiLM gradient 128 x 256: threaded
    training = dataclasses.replace(tiny_training, steps=30)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first, second = (TabularQC(model, training, id_column="id").fit(train_frame).model_.state_dict()
                         for _ in range(2))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(first[name], second[name]) for name in first)
