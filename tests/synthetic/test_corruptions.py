"""The corruption library: every kind keeps shape and labels, strength lowers Dice, grafts take the asked share."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import masks_like

from segqc.metrics import dice_per_class, mean_dice
from segqc.synthetic import corruptions as degradations


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
