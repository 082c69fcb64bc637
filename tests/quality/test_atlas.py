"""Atlas agreement: the masks of the most similar reference images as pseudo ground truths."""

from __future__ import annotations

import numpy as np
import pytest

from segqc.metrics import dice_per_class, mean_dice
from segqc.quality import atlas as atlas_module
from segqc.quality.atlas import Atlas


def _references(spatial_dims: int, num_classes: int, count: int = 12, size: int = 16,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose bright box is where the mask is, at a random place per case."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 0.1, (count, 1, *(size,) * spatial_dims)).astype(np.float32)
    masks = np.zeros((count, *(size,) * spatial_dims), np.int64)
    for index in range(count):
        corner = rng.integers(1, size // 2, spatial_dims)
        box = tuple(slice(c, c + size // 3) for c in corner)
        masks[(index, *box)] = 1 + index % (num_classes - 1)
        images[(index, 0, *box)] += 1.0
    return images, masks


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("num_classes", [2, 4])
def test_a_reference_case_finds_itself_and_its_mask_agrees(spatial_dims: int, num_classes: int) -> None:
    images, masks = _references(spatial_dims, num_classes)
    reference = Atlas(images, masks, num_classes, neighbours=1)
    features = reference.features(images, masks)
    assert features.shape == (len(images), 4 + num_classes - 1)
    np.testing.assert_allclose(features[:, 0], 1.0, atol=1e-3)  # nearest similarity: itself
    np.testing.assert_allclose(features[:, 2], 1.0)  # Dice with its own mask
    empty = reference.features(images, np.zeros_like(masks))
    assert (empty[:, 2] < 0.5).all()


def test_agreement_falls_as_the_prediction_moves_away_from_the_neighbours_masks() -> None:
    images, masks = _references(2, 2, count=30)
    reference = Atlas(images[:20], masks[:20], 2)
    test_images, truth = images[20:], masks[20:]
    dice = [reference.features(test_images, np.roll(truth, shift, axis=1))[:, 2].mean() for shift in (0, 3, 6)]
    assert dice[0] > dice[1] > dice[2]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_cases_on_another_grid_are_resampled_to_the_atlas(spatial_dims: int) -> None:
    images, masks = _references(spatial_dims, 3, size=16)
    reference = Atlas(images, masks, 3, neighbours=1)
    doubled = [np.repeat(np.repeat(images, 2, axis=2), 2, axis=3), np.repeat(np.repeat(masks, 2, axis=1), 2, axis=2)]
    if spatial_dims == 3:
        doubled = [np.repeat(doubled[0], 2, axis=4), np.repeat(doubled[1], 2, axis=3)]
    features = reference.features(*doubled)
    assert np.median(features[:, 2]) > 0.9


def test_sampling_bounds_the_stored_values_and_round_trips(monkeypatch) -> None:
    images, masks = _references(2, 3, count=40)
    monkeypatch.setattr(atlas_module, "MAX_VALUES", 10 * 2 * 16 * 16)
    sampled = Atlas.sample(images, masks, 3, size=256, seed=0)
    assert len(sampled.images) == 10 and sampled.images.dtype == np.float16 and sampled.masks.dtype == np.uint8
    again = Atlas.from_arrays(sampled.to_arrays())
    np.testing.assert_array_equal(again.features(images, masks), sampled.features(images, masks))


def test_features_match_a_direct_computation() -> None:
    """Reference implementation: NCC by hand, Dice with the k nearest masks by :func:`dice_per_class`."""
    images, masks = _references(2, 3, count=15, seed=3)
    reference = Atlas(images[:10], masks[:10], 3, neighbours=3)
    rng = np.random.default_rng(1)
    predictions = np.where(rng.random(masks[10:].shape) < 0.05, 0, masks[10:])
    features = reference.features(images[10:], predictions)
    atlas_images = images[:10].astype(np.float16).astype(np.float64).reshape(10, -1)
    for row, (image, prediction) in enumerate(zip(images[10:], predictions)):
        flat = image.reshape(-1).astype(np.float64)
        similarity = [np.corrcoef(flat, other)[0, 1] for other in atlas_images]
        nearest = np.argsort(similarity)[::-1][:3]
        repeated = np.repeat(prediction[None], 3, 0)
        per_class = dice_per_class(repeated, masks[nearest], 3)
        dice = mean_dice(per_class, repeated, masks[nearest])
        np.testing.assert_allclose(features[row], [similarity[nearest[0]], np.mean(np.array(similarity)[nearest]),
                                                   dice.mean(), dice.max(), *per_class.mean(0)], rtol=1e-4,
                                   atol=1e-5)
