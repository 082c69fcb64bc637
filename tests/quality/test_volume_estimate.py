"""Predicted Dice of a volume from its units: exact against a direct 3D computation with oracle units."""

from __future__ import annotations

import numpy as np
import pytest

from segqc.data.regions import cut, tile_boxes
from segqc.metrics import dice_per_class, mean_dice
from segqc.quality.volumes import overlap_weighted, volume_estimate


def _volumes(num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A truth with ``K - 1`` blobs in a 32 x 32 x 24 volume, and a damaged prediction of it."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((32, 32, 24), np.int64)
    for label in range(1, num_classes):
        centre = rng.uniform([8, 8, 6], [24, 24, 18])
        radius = rng.uniform(3, 7)
        grid = np.indices(truth.shape).transpose(1, 2, 3, 0)
        truth[np.linalg.norm((grid - centre) / [1, 1, 0.8], axis=-1) < radius] = label
    prediction = truth.copy()
    prediction[rng.random(truth.shape) < 0.08] = 0
    prediction[:, :, 10:13][prediction[:, :, 10:13] > 0] = num_classes - 1  # one structure grows into another
    prediction = np.roll(prediction, 1, axis=0)
    return prediction, truth


def _units(array: np.ndarray, route: str) -> np.ndarray:
    """Slices along the last axis (2D route) or 16 x 16 x 8 tiles (3D route), ``(S, *unit)``."""
    if route == "2d":
        return np.moveaxis(array, -1, 0)
    return cut(array, tile_boxes(array.shape, (16, 16, 8)))


@pytest.mark.parametrize("route", ["2d", "3d"])
@pytest.mark.parametrize("num_classes", [2, 4])
def test_oracle_units_give_the_3d_dice(route: str, num_classes: int) -> None:
    prediction, truth = _volumes(num_classes, seed=num_classes)
    units_p, units_t = _units(prediction, route), _units(truth, route)
    per_unit = dice_per_class(units_p, units_t, num_classes)
    areas = [np.stack([(u == k).reshape(len(u), -1).sum(1) for k in range(1, num_classes)], 1)
             for u in (units_p, units_t)]
    estimate = volume_estimate(per_unit, per_unit - 0.1, np.minimum(per_unit + 0.1, 1), *areas)
    direct = dice_per_class(prediction[None], truth[None], num_classes)[0]
    np.testing.assert_allclose(estimate.per_structure, direct, atol=1e-12)
    assert estimate.dice == pytest.approx(mean_dice(direct[None], prediction[None], truth[None])[0])
    assert estimate.low == pytest.approx(estimate.dice - 0.1)  # interval ends aggregate with the same weights


def test_worst_units_and_absent_structures() -> None:
    dice = np.array([[0.9, 1.0], [0.2, 1.0], [0.5, 1.0], [0.1, 1.0]])
    predicted = np.array([[10, 0], [5, 0], [5, 0], [0, 0]])
    reference = np.array([[10, 0], [5, 0], [0, 0], [0, 0]])
    estimate = volume_estimate(dice, dice, dice, predicted, reference, worst_units=2)
    assert estimate.worst[0].tolist() == [1, 2]  # unit 3 holds no voxel of the structure
    assert estimate.present.tolist() == [True, False]
    assert estimate.per_structure[1] == 1.0 and estimate.dice == estimate.per_structure[0]
    assert overlap_weighted(dice[:, 0], predicted[:, 0], reference[:, 0]) == pytest.approx((18 + 2 + 2.5) / 35)
