"""Dice against a hand-written reference."""

from __future__ import annotations

import numpy as np
import pytest

from segqc.metrics import dice_per_class, mean_dice


def reference_dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * (a & b).sum() / total


@pytest.mark.parametrize("shape", [(16, 16), (8, 8, 8)])
@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_dice_matches_reference(shape, num_classes: int) -> None:
    rng = np.random.default_rng(num_classes)
    truth, prediction = rng.integers(0, num_classes, shape), rng.integers(0, num_classes, shape)
    expected = [reference_dice(prediction == k, truth == k) for k in range(1, num_classes)]
    np.testing.assert_allclose(dice_per_class(prediction, truth, num_classes), expected, rtol=1e-6)


def test_empty_mask_convention() -> None:
    empty, lesion = np.zeros((8, 8), int), np.zeros((8, 8), int)
    lesion[2:4, 2:4] = 2
    assert dice_per_class(empty, empty, 3).tolist() == [1.0, 1.0]
    assert dice_per_class(empty, lesion, 3)[1] == 0.0
    assert mean_dice(empty, empty, 3) == 1.0
    assert mean_dice(lesion, lesion, 3) == 1.0  # only class 2 is present and counted
