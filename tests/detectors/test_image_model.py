"""Image score model and ImageQC on phantoms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from segqc import noise
from segqc.config import ImageModelConfig, TrainingConfig
from segqc.detectors.image import ImageQC
from segqc.errors import BundleError, SchemaError
from segqc.scoremodels import image as image_scoremodel
from segqc.scoremodels.image import ImageScoreModel
from segqc.synthetic import phantoms

TINY_NET = {"nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": []}


def tiny_model(spatial_dims: int, channels: int, classes: int, size: int = 8) -> ImageScoreModel:
    torch.manual_seed(0)
    return ImageScoreModel(spatial_dims, channels, classes, noise.geometric_levels(20, 2, 3),
                           torch.tensor([0.9, 0.45, 0.0]), network={**TINY_NET, "input_size": size})


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_shapes(spatial_dims: int, num_classes: int) -> None:
    model = tiny_model(spatial_dims, 2, num_classes)
    spatial = (8,) * spatial_dims
    images, masks = torch.randn(3, 2, *spatial), torch.randint(0, num_classes, (3, *spatial))
    assert model(images, masks).shape == (3,)
    norms, heat = model.embed(images, masks)
    assert norms.shape == (3, 3) and heat.shape == (3, *spatial)
    assert model.filter_norms(images, masks).shape == (3,)
    assert model.scores(images, masks, torch.zeros(3, dtype=torch.long)).shape == (3, num_classes, *spatial)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_embedding_is_the_same_with_levels_in_one_pass_or_one_at_a_time(spatial_dims: int, monkeypatch) -> None:
    """Batching levels into one network pass is only a speed-up: norms and heat match the per-level reference."""
    model = tiny_model(spatial_dims, 1, 3)
    with torch.no_grad():  # a non-zero output layer, so the scores are not all 0
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    spatial = (8,) * spatial_dims
    images, masks = torch.randn(3, 1, *spatial), torch.randint(0, 3, (3, *spatial))
    together = model.embed(images, masks)
    monkeypatch.setattr(image_scoremodel, "PASS_VOXELS", 1)
    expected_norms = torch.stack([(model.scores(images, masks, torch.full((3,), i)) ** 2).sum(1).flatten(1).sum(1)
                                  for i in range(model.num_levels)], 1)
    separate = model.embed(images, masks)
    assert expected_norms.abs().min() > 0
    for batched, single in zip(together, separate):
        torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(together[0], expected_norms, rtol=1e-4, atol=1e-6)


def test_untrained_model_has_zero_scores() -> None:
    """The zero-initialised output predicts uniform noise: score 0 everywhere."""
    model = tiny_model(2, 1, 3)
    norms, _ = model.embed(torch.randn(2, 1, 8, 8), torch.randint(0, 3, (2, 8, 8)))
    torch.testing.assert_close(norms, torch.zeros_like(norms))


def test_tiny_model_overfits_one_pair() -> None:
    model = tiny_model(2, 1, 3)
    images, masks = torch.randn(4, 1, 8, 8), torch.randint(0, 3, (4, 8, 8))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    first = None
    for _ in range(150):
        loss = model(images, masks, generator).mean()
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.5 * first


def phantom_arrays(cases, predicted: bool = False) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([c.image for c in cases])
    masks = np.stack([c.prediction if predicted else c.mask for c in cases]).astype(np.int64)
    return images, masks


@pytest.fixture(scope="module")
def fitted() -> ImageQC:
    train = phantom_arrays(phantoms.make_training_set(120, (32, 32), seed=0))
    model = ImageModelConfig(levels=4, network={**TINY_NET, "nf": 12, "ch_mult": [1, 2, 2]}, max_components=2)
    training = TrainingConfig(steps=300, batch_size=16, lr=3e-3, val_every=100, device="cpu")
    return ImageQC(model, training, labels=[0, 1, 2]).fit(*train)


def test_gross_failures_score_higher(fitted: ImageQC) -> None:
    cases = phantoms.make_prediction_set(60, (32, 32), seed=1, failure_fraction=0.5,
                                         modes=("empty", "missing", "shift", "class_swap"), severity_range=(0.8, 1.0))
    scores = fitted.decision_function(phantom_arrays(cases, predicted=True))
    failed = np.array([c.is_failure for c in cases])
    assert roc_auc_score(failed, scores) >= 0.85


def test_heat_map_points_at_the_error(fitted: ImageQC) -> None:
    case = phantoms.make_training_set(1, (32, 32), seed=7)[0]
    wrong = case.mask.copy()
    wrong[:8, :8] = 2  # a false lesion in a corner
    _, _, heat = fitted.score_pairs(case.image[None], wrong[None].astype(np.int64))
    assert heat[0][:8, :8].mean() > heat[0][8:, 8:].mean()


def test_save_load_round_trip(fitted: ImageQC, tmp_path) -> None:
    images, masks = phantom_arrays(phantoms.make_training_set(5, (32, 32), seed=3))
    loaded = ImageQC.load(fitted.save(tmp_path / "model"))
    np.testing.assert_allclose(loaded.decision_function((images, masks)), fitted.decision_function((images, masks)),
                               rtol=1e-5)
    assert loaded.labels_ == [0, 1, 2] and loaded.threshold_ == fitted.threshold_
    with pytest.raises(BundleError, match="'image' model"):
        from segqc.detectors.tabular import TabularQC
        TabularQC.load(tmp_path / "model")


def test_wrong_inputs_are_named(fitted: ImageQC) -> None:
    images, masks = phantom_arrays(phantoms.make_training_set(2, (32, 32), seed=3))
    with pytest.raises(SchemaError, match="class index 7"):
        fitted.decision_function((images, np.full_like(masks, 7)))
    with pytest.raises(SchemaError, match="1-channel 2D"):
        fitted.decision_function((np.repeat(images, 3, 1), masks))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_reconstruction_is_the_same_in_parts_or_whole(spatial_dims: int, monkeypatch) -> None:
    """Splitting a large batch into network passes of PASS_VOXELS is only a speed-up."""
    model = tiny_model(spatial_dims, 1, 3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    images = torch.randn(3, 1, *(8,) * spatial_dims)
    with torch.no_grad():
        whole = model.reconstruct(images, torch.Generator().manual_seed(0))
        monkeypatch.setattr(image_scoremodel, "PASS_VOXELS", 1)
        parts = model.reconstruct(images, torch.Generator().manual_seed(0))
    torch.testing.assert_close(parts, whole, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_a_reconstruction_of_several_draws_is_the_mean_of_single_draws(spatial_dims: int) -> None:
    model = tiny_model(spatial_dims, 1, 3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        images = torch.randn(2, 1, *(8,) * spatial_dims)
        generator = torch.Generator().manual_seed(3)
        singles = [model.reconstruct(images, generator, levels=2) for _ in range(3)]
        mean = model.reconstruct(images, torch.Generator().manual_seed(3), levels=2, draws=3)
    torch.testing.assert_close(mean, torch.stack(singles).mean(0))
    torch.testing.assert_close(mean.sum(1), torch.ones(2, *(8,) * spatial_dims))
    assert not torch.allclose(singles[0], singles[1])


def _pass_shapes(voxels: int, size: int, count: int, levels: int) -> set[tuple[int, int]]:
    """(cases, levels) of every network pass embed runs on ``count`` cases padded as the detector pads them."""
    unit = image_scoremodel.pass_plan(voxels, size, 1)[0]
    padded = -(-count // unit) * unit
    cases, per_pass = image_scoremodel.pass_plan(voxels, size, levels)
    return {(len(range(start, min(start + cases, padded))), len(range(first, min(first + per_pass, levels))))
            for start in range(0, padded, cases) for first in range(0, levels, per_pass)}


@pytest.mark.parametrize("voxels", [8 ** 2, 64 ** 2, 24 ** 3, 32 ** 3, 48 ** 3, 96 ** 3])
@pytest.mark.parametrize("size", [1, 12, 16, 21])
def test_pass_plan_gives_short_batches_the_passes_of_a_full_one(voxels: int, size: int) -> None:
    """A padded last batch runs network passes of the full batch's shapes, with little padding."""
    full = _pass_shapes(voxels, size, size, 10)
    unit = image_scoremodel.pass_plan(voxels, size, 1)[0]
    assert size % unit == 0 and unit * voxels <= max(voxels, image_scoremodel.PASS_VOXELS)
    for count in range(1, size + 1):
        assert _pass_shapes(voxels, size, count, 10) <= full
        assert -(-count // unit) * unit - count < unit
