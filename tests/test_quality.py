"""Predicted Dice: degradations, features, the estimator and its interval, source-grouped splits, and a trained model."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage
from typer.testing import CliRunner

from segqc.synthetic import corruptions as degradations
from segqc.synthetic import phantoms
from segqc.cli import app
from segqc.config import ImageModelConfig, TrainingConfig
from segqc.data.images import CaseFiles
from segqc.data.cases import PreparedCase
from segqc.data.grouping import split_groups
from segqc.data.grouping import source_groups
from segqc.detectors.image import ImageQC
from segqc.quality import teaching
from segqc.quality.teaching import snapshot_steps
from segqc.errors import ConfigError
from segqc.metrics import case_metrics
from segqc.metrics import dice_per_class, mean_dice
from segqc.quality.estimator import QualityEstimator
from segqc.quality.features import boundary_features
from segqc.verdicts import quality_verdicts


def masks_like(spatial: tuple[int, ...], count: int, seed: int) -> np.ndarray:
    """Phantom ground-truth masks (classes 0, 1, 2), ``(count, *spatial)``."""
    return np.stack([case.mask for case in phantoms.make_training_set(count, spatial, seed=seed)]).astype(np.int64)


@pytest.mark.parametrize("spatial", [(32, 32), (16, 16, 16)], ids=["2d", "3d"])
@pytest.mark.parametrize("num_classes", [2, 3])
def test_every_degradation_keeps_shape_and_labels(spatial, num_classes) -> None:
    masks = np.minimum(masks_like(spatial, 3, 0), num_classes - 1)
    rng = np.random.default_rng(0)
    for mask in masks:
        for kind in degradations.KINDS:
            out = degradations.degrade(mask, kind, 0.7, rng, num_classes)
            assert out.shape == mask.shape and out.dtype == mask.dtype
            assert out.min() >= 0 and out.max() < num_classes


@pytest.mark.parametrize("kind", ["erode", "dilate", "shift", "drop", "smooth", "blocky"])
def test_stronger_degradations_lower_dice(kind) -> None:
    masks = masks_like((48, 48), 12, 1)
    rng = np.random.default_rng(1)
    means = []
    for strength in (0.1, 0.5, 1.0):
        degraded = np.stack([degradations.degrade(m, kind, strength, rng, 3) for m in masks])
        means.append(mean_dice(dice_per_class(degraded, masks, 3), degraded, masks).mean())
    assert means[0] > means[1] > means[2], means


def test_dice_matches_the_monai_reference() -> None:
    rng = np.random.default_rng(2)
    truth = masks_like((32, 32), 6, 2)
    predictions = np.stack([degradations.degrade(m, kind, 0.6, rng, 3) for m, kind in
                            zip(truth, ["erode", "shift", "empty", "extra", "swap", "good"])])
    ours = mean_dice(dice_per_class(predictions, truth, 3), predictions, truth)
    reference = [case_metrics(p, t, [0, 1, 2], (1.0, 1.0))["dice_mean"] for p, t in zip(predictions, truth)]
    np.testing.assert_allclose(ours, reference, atol=1e-9)


def test_plan_mixes_good_masks_and_every_failure() -> None:
    plan = teaching.degradation_plan(33, np.random.default_rng(0))
    kinds = [kind for kind, _ in plan]
    assert kinds.count("good") == 11 and set(kinds) == set(degradations.KINDS)
    assert all(0 < strength <= 1 for _, strength in plan)


@pytest.mark.parametrize("spatial", [(32, 32), (16, 16, 16)], ids=["2d", "3d"])
def test_a_graft_takes_the_other_segmentation_in_a_region_of_the_asked_share(spatial) -> None:
    mask, other = masks_like(spatial, 2, 3)
    rng = np.random.default_rng(0)
    for strength in (0.0, 0.3, 1.0):
        grafted = degradations.graft(mask, other, strength, rng)
        taken = (grafted == other) & (other != mask)
        assert ((grafted == mask) | (grafted == other)).all() and grafted.dtype == mask.dtype
        assert abs(taken.sum() / max((other != mask).sum(), 1) - strength) < 0.2
    np.testing.assert_array_equal(degradations.graft(mask, other, 1.0, rng), other)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_the_teaching_set_holds_degradations_and_every_segmentation_with_its_grafts(num_classes) -> None:
    masks = np.minimum(masks_like((24, 24), 4, 6), num_classes - 1)
    others = [np.roll(masks, 3, axis=1), np.zeros_like(masks)]
    candidates, sources = teaching.teaching_set(masks, others, 5, np.random.default_rng(0), num_classes)
    per_case = 5 + len(others) * (1 + degradations.GRAFTS_PER_SEGMENTATION)
    assert len(candidates) == len(sources) == 4 * per_case
    assert np.bincount(sources).tolist() == [per_case] * 4
    whole = [index for index in range(4 * 5, len(candidates), 1 + degradations.GRAFTS_PER_SEGMENTATION)]
    np.testing.assert_array_equal(candidates[whole], np.concatenate(others))
    dice = mean_dice(dice_per_class(candidates, masks[sources], num_classes), candidates, masks[sources])
    assert dice.min() < 0.5 < dice.max()


def test_snapshot_steps_are_inside_the_run() -> None:
    assert snapshot_steps([0.05, 0.1, 0.2, 0.4], 1500) == [75, 150, 300, 600]
    assert snapshot_steps([0.01, 0.02, 0.5, 0.99], 10) == [1, 5]
    assert snapshot_steps([], 100) == []


def test_estimator_learns_dice_with_honest_intervals() -> None:
    rng = np.random.default_rng(3)
    features = rng.uniform(0, 1, (900, 4))
    dice = np.clip(features[:, 0] * 0.8 + 0.2 * features[:, 1] + rng.normal(0, 0.05, 900), 0, 1)
    targets = np.column_stack([dice, dice, 1 - dice])
    groups = np.repeat(np.arange(150), 6)
    estimator = QualityEstimator(coverage=0.8).fit(features[:600], targets[:600], groups[:600])
    estimate = estimator.predict(features[600:])
    truth = dice[600:]
    assert np.abs(estimate.dice - truth).mean() < 0.08
    coverage = ((truth >= estimate.low) & (truth <= estimate.high)).mean()
    assert 0.7 <= coverage <= 0.95
    assert estimate.per_class.shape == (300, 2) and (estimate.low <= estimate.dice).all()
    restored = QualityEstimator.from_arrays(estimator.to_arrays()).predict(features[600:])
    np.testing.assert_array_equal(restored.dice, estimate.dice)
    np.testing.assert_array_equal(restored.high, estimate.high)


def test_recalibrating_the_interval_matches_fitting_at_that_coverage() -> None:
    rng = np.random.default_rng(4)
    features = rng.uniform(0, 1, (300, 3))
    dice = np.clip(0.3 + 0.6 * features[:, 0] + rng.normal(0, 0.05, 300), 0, 1)
    targets, groups = np.column_stack([dice, dice]), np.arange(300) // 5
    narrow = QualityEstimator(coverage=0.5).fit(features, targets, groups)
    wide = QualityEstimator(coverage=0.9).fit(features, targets, groups)
    restored = QualityEstimator.from_arrays(narrow.to_arrays()).recalibrated(0.9)
    np.testing.assert_array_equal(restored.below_, wide.below_)
    np.testing.assert_array_equal(restored.predict(features).low, wide.predict(features).low)
    assert (wide.below_ >= narrow.below_).all() and (wide.below_ > narrow.below_).any()
    assert narrow.coverage == 0.5, "recalibrating returns a new estimator"
    with pytest.raises(ValueError, match="coverage"):
        narrow.recalibrated(1.0)
    old = {k: v for k, v in narrow.to_arrays().items() if k != "held_out"}
    with pytest.raises(ValueError, match="retrain"):
        QualityEstimator.from_arrays(old).recalibrated(0.8)


def boundary_reference(image: np.ndarray, mask: np.ndarray, heat: np.ndarray, label: int, band: int) -> list[float]:
    """:func:`boundary_features` of one case and class, written out case by case."""
    intensity = image.mean(0)
    step = ndimage.generate_binary_structure(mask.ndim, 1)
    inside = mask == label
    if not inside.any():
        return [0.0] * 4
    outer = ndimage.binary_dilation(inside, step, band) & ~inside
    inner = inside & ~ndimage.binary_erosion(inside, step, band, border_value=1)
    edge = inside & ~ndimage.binary_erosion(inside, step, 1, border_value=1)
    gradient = np.sqrt(sum(part ** 2 for part in np.gradient(intensity)))
    spread = intensity.std() + 1e-6
    return [(intensity[inside].mean() - intensity[outer].mean()) / spread,
            (intensity[inner].mean() - intensity[outer].mean()) / spread,
            gradient[edge].mean() / (gradient.mean() + 1e-6), np.log1p(heat[inner | outer].mean())]


@pytest.mark.parametrize("spatial", [(32, 32), (16, 16, 16)], ids=["2d", "3d"])
@pytest.mark.parametrize("num_classes", [2, 3])
def test_boundary_features_match_a_case_by_case_reference(spatial, num_classes) -> None:
    cases = phantoms.make_training_set(4, spatial, seed=2)
    images = np.stack([case.image for case in cases]).astype(np.float32)
    masks = np.minimum(np.stack([case.mask for case in cases]), num_classes - 1)
    masks[0] = 0  # no foreground at all
    heat = np.random.default_rng(0).random(masks.shape).astype(np.float32)
    features = boundary_features(images, masks, heat, num_classes, band=2)
    assert features.shape == (4, 4 * (num_classes - 1))
    expected = [sum((boundary_reference(images[i], masks[i], heat[i], label, 2) for label in range(1, num_classes)),
                    []) for i in range(4)]
    np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(features[0], 0)


def test_a_mask_on_the_image_edges_shows_more_boundary_evidence_than_a_shifted_one() -> None:
    cases = phantoms.make_training_set(8, (48, 48), seed=3)
    images = np.stack([case.image for case in cases]).astype(np.float32)
    masks = (np.stack([case.mask for case in cases]) > 0).astype(np.int64)
    shifted = np.roll(masks, 5, axis=2)
    heat = np.zeros(masks.shape, np.float32)
    on_edges, off_edges = boundary_features(images, masks, heat, 2), boundary_features(images, shifted, heat, 2)
    assert (np.abs(on_edges[:, 1]) > np.abs(off_edges[:, 1])).mean() >= 0.75  # inner band against outer band
    assert (on_edges[:, 2] > off_edges[:, 2]).mean() >= 0.75  # gradient on the boundary


def test_verdicts_follow_the_interval() -> None:
    verdicts = quality_verdicts(np.array([0.1, 0.7, 0.85, 0.8]), np.array([0.7, 0.9, 0.95, 0.99]), 0.8)
    assert list(verdicts) == ["fail", "review", "pass", "pass"]


def test_group_split_never_puts_one_source_on_both_sides() -> None:
    groups = np.repeat([f"volume{i}" for i in range(17)], np.arange(1, 18))  # 1..17 slices per volume
    for seed in range(10):
        train, val = split_groups(groups, 0.2, seed)
        assert not set(groups[train]) & set(groups[val])
        assert len(train) + len(val) == len(groups) and len(train) > 0
        assert 0.1 < len(val) / len(groups) < 0.45


def prepared(case_id: str, source: str) -> PreparedCase:
    return PreparedCase(case_id, np.zeros((1, 2, 2), np.float32), None, CaseFiles(source, [], None), (2, 2),
                        np.eye(4))


def test_slices_of_a_volume_and_pattern_matches_form_one_source() -> None:
    cases = [prepared("vol1#2:0", "vol1"), prepared("vol1#2:1", "vol1"), prepared("p7_slice01", "p7_slice01"),
             prepared("p7_slice02", "p7_slice02"), prepared("other", "other")]
    assert source_groups(cases) == ["vol1", "vol1", "p7_slice01", "p7_slice02", "other"]
    assert source_groups(cases, r"(p\d+)_slice") == ["vol1", "vol1", "p7", "p7", "other"]
    with pytest.raises(ConfigError, match="--group-pattern"):
        source_groups(cases, "(unclosed")


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
    result = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "report")])
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
    assert summary["verdict_rule"] == {"rule": "quality", "dice_threshold": 0.8, "coverage": 0.8}
    assert summary["predicted_dice"]["mae"] is not None and "misses" in summary["verdict_quality"]
    assert "Predicted vs. true Dice" in (tmp_path / "report/report.html").read_text()
    lenient = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "lenient"), "--dice-threshold", "0.3",
                                       "--verdicts", "score"])
    assert lenient.exit_code == 0, lenient.output
    lenient_summary = json.loads((tmp_path / "lenient/summary.json").read_text())
    assert lenient_summary["verdict_rule"]["rule"] == "score"
    assert lenient_summary["failure_detection"]["dice_threshold"] == 0.3


def test_a_cases_assessment_does_not_depend_on_its_batch(trained, unseen) -> None:
    images, truth = unseen
    together = trained.assess(images, truth)
    alone = trained.assess(images[5:6], truth[5:6])
    np.testing.assert_array_equal(alone.reconstruction[0], together.reconstruction[5])
    np.testing.assert_allclose(alone.quality.dice[0], together.quality.dice[5], rtol=1e-6)
    np.testing.assert_allclose(alone.scores[0], together.scores[5], rtol=1e-5)
