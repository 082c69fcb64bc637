"""Predicted Dice of a trained model: reconstruction, estimator in the bundle, graded series, reports and batches."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from segqc.cli import app
from segqc.config import ImageModelConfig, TrainingConfig
from segqc.detectors.image import ImageQC
from segqc.metrics import dice_per_class, mean_dice
from segqc.quality.estimator import QualityEstimator
from segqc.synthetic import corruptions as degradations
from segqc.synthetic import phantoms


@pytest.fixture(scope="module")
def trained() -> ImageQC:
    """A small 2D model trained on 48 phantoms of 32 x 32 (about half a minute on one thread)."""
    cases = phantoms.make_training_set(48, (32, 32), seed=0)
    images = np.stack([case.image for case in cases]).astype(np.float32)
    masks = np.stack([case.mask for case in cases]).astype(np.int64)
    torch.manual_seed(0)
    model = ImageModelConfig(levels=6, network={"nf": 16, "ch_mult": [1, 2], "num_res_blocks": 1},
                             degradations_per_case=12)
    training = TrainingConfig(steps=300, batch_size=16, lr=3e-3, val_every=100, checkpoint_every=0,
                              val_fraction=0.25, device="cpu")
    return ImageQC(model, training).fit(images, masks, groups=[f"s{i // 2}" for i in range(48)])


@pytest.fixture(scope="module")
def unseen() -> tuple[np.ndarray, np.ndarray]:
    cases = phantoms.make_training_set(12, (32, 32), seed=5)
    return (np.stack([case.image for case in cases]).astype(np.float32),
            np.stack([case.mask for case in cases]).astype(np.int64))


def test_the_reconstruction_recovers_the_phantom_masks(trained, unseen) -> None:
    images, truth = unseen
    rebuilt = trained.assess(images, truth).reconstruction
    assert mean_dice(dice_per_class(rebuilt, truth, 3), rebuilt, truth).mean() > 0.3
    assert trained.training_["val_sources"] == 6 and trained.quality_ is not None


def test_the_teaching_set_holds_the_networks_own_segmentations_only_when_snapshots_are_asked_for(trained) -> None:
    held_out = trained.training_["val_sources"] * 2
    assert len(trained.quality_.targets_) == held_out * 12
    cases = phantoms.make_training_set(24, (32, 32), seed=1)
    images = np.stack([case.image for case in cases]).astype(np.float32)
    masks = np.stack([case.mask for case in cases]).astype(np.int64)
    model = ImageModelConfig(levels=4, network={"nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1},
                             degradations_per_case=4, quality_snapshots=[0.5])
    training = TrainingConfig(steps=20, batch_size=8, val_every=10, checkpoint_every=0, val_fraction=0.25,
                              device="cpu")
    taught = ImageQC(model, training).fit(images, masks, groups=[f"s{i // 2}" for i in range(24)])
    # Per held-out case: 4 degradations, then for the step-10 network and the final one its mask and its grafts.
    per_case = 4 + 2 * (1 + degradations.GRAFTS_PER_SEGMENTATION)
    assert len(taught.quality_.targets_) == taught.training_["val_sources"] * 2 * per_case
    assert taught.quality_.targets_[:, 0].min() < taught.quality_.targets_[:, 0].max() <= 1


def test_the_reconstruction_that_agrees_best_with_held_out_masks_is_kept(trained, unseen) -> None:
    choice = trained.reconstruction_
    assert set(choice["held_out_dice"]) == {"anneal", "average"}
    assert choice["held_out_dice"][choice["method"]] == max(choice["held_out_dice"].values())
    images, truth = unseen
    rebuilt = trained._reconstruct(torch.as_tensor(images), choice["method"])
    np.testing.assert_array_equal(trained.assess(images, truth).reconstruction, rebuilt.argmax(1))


def test_predicted_dice_falls_along_a_graded_corruption_series(trained, unseen) -> None:
    images, truth = unseen
    rng = np.random.default_rng(4)
    predicted, true = [], []
    for strength in (0.0, 0.5, 1.0):
        degraded = np.stack([degradations.degrade(m, "erode", strength, rng, 3) if strength else m for m in truth])
        predicted.append(trained.assess(images, degraded).quality.dice.mean())
        true.append(mean_dice(dice_per_class(degraded, truth, 3), degraded, truth).mean())
    assert true[0] > true[1] > true[2]
    assert predicted[0] > predicted[1] > predicted[2], predicted


def test_the_estimator_survives_the_bundle(trained, unseen, tmp_path) -> None:
    images, truth = unseen
    before = trained.assess(images, truth)
    after = ImageQC.load(trained.save(tmp_path / "model")).assess(images, truth)
    loaded = ImageQC.load(tmp_path / "model")
    assert loaded.reconstruction_ == trained.reconstruction_
    np.testing.assert_allclose(after.quality.dice, before.quality.dice)
    np.testing.assert_array_equal(after.reconstruction, before.reconstruction)


def test_an_estimator_fitted_before_the_boundary_features_gets_only_its_leading_columns(trained, unseen) -> None:
    images, truth = unseen
    legacy = copy.copy(trained)
    boundary_columns = 4 * (trained.architecture_["num_classes"] - 1)
    estimator = trained.quality_
    legacy.quality_ = QualityEstimator(estimator.coverage, estimator.seed).fit(
        estimator.features_[:, :-boundary_columns], estimator.targets_, np.arange(len(estimator.targets_)) % 5)
    assessment = legacy.assess(images, truth)
    assert assessment.quality.dice.shape == (len(truth),) and np.isfinite(assessment.quality.dice).all()


def test_score_reports_predicted_dice_and_quality_verdicts(trained, tmp_path) -> None:
    trained.save(tmp_path / "model")
    phantoms.write_cases(phantoms.make_prediction_set(16, (32, 32), seed=7, failure_fraction=0.5), tmp_path / "test",
                         fmt="png")
    command = ["score", str(tmp_path / "test/predictions"), "--images", str(tmp_path / "test/images"), "--model",
               str(tmp_path / "model"), "--ground-truth", str(tmp_path / "test/masks"), "--top-k", "4"]
    result = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "report"), "--verdict-by", "mean"])
    assert result.exit_code == 0, result.output
    assert "predicted Dice vs true Dice: MAE" in result.stderr and "false alarms" in result.stderr
    table = pd.read_csv(tmp_path / "report/scores.csv")
    for column in ("predicted_dice", "predicted_dice_low", "predicted_dice_high", "predicted_dice_1",
                   "predicted_dice_2", "reconstruction_dice"):
        assert table[column].between(0, 1).all()
    assert (table["predicted_dice_low"] <= table["predicted_dice_high"]).all()
    expected = np.where(table["predicted_dice_high"] < 0.8, "fail",
                        np.where(table["predicted_dice_low"] < 0.8, "review", "pass"))
    assert (table["verdict"] == expected).all()
    assert set(table["gallery_reason"].dropna()) <= {"top-k", "near the fail line"}
    assert (table["gallery_reason"] == "near the fail line").sum() == 2
    summary = json.loads((tmp_path / "report/summary.json").read_text())
    assert summary["verdict_rule"] == {"rule": "quality", "dice_threshold": 0.8, "coverage": 0.8, "by": "mean"}
    assert summary["interval"]["source"] == "self-made" and "optimistic" in summary["interval"]["text"]
    assert summary["predicted_dice"]["mae"] is not None and "misses" in summary["verdict_quality"]
    assert summary["headline_ranking"] == "predicted_dice"
    assert set(summary["failure_detection"]) == {"predicted_dice", "score", "reconstruction_dice", "predicted_dice_1",
                                                 "predicted_dice_2"}
    html = (tmp_path / "report/report.html").read_text()
    assert "Predicted Dice vs. ground truth" in html and '<tr data-ranking="predicted_dice" class="headline">' in html
    lenient = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "lenient"), "--dice-threshold", "0.3",
                                       "--verdicts", "score"])
    assert lenient.exit_code == 0, lenient.output
    lenient_summary = json.loads((tmp_path / "lenient/summary.json").read_text())
    assert lenient_summary["verdict_rule"]["rule"] == "score"
    assert {figures["dice_threshold"] for figures in lenient_summary["failure_detection"].values()} == {0.3}


def test_a_cases_assessment_does_not_depend_on_its_batch(trained, unseen) -> None:
    images, truth = unseen
    together = trained.assess(images, truth)
    alone = trained.assess(images[5:6], truth[5:6])
    np.testing.assert_array_equal(alone.reconstruction[0], together.reconstruction[5])
    np.testing.assert_allclose(alone.quality.dice[0], together.quality.dice[5], rtol=1e-6)
    np.testing.assert_allclose(alone.scores[0], together.scores[5], rtol=1e-5)
