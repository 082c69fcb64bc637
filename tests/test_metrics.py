"""The one Dice of segqc against MONAI's ``compute_dice`` and a hand-written reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice

from segqc.metrics import case_metrics, dice_per_class, mean_dice


def monai_dice(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """MONAI's Dice per foreground class of a batch ``(N, *spatial)``, ``ignore_empty=False``."""
    def one_hot(labels: np.ndarray) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.as_tensor(labels), num_classes).movedim(-1, 1).float()

    return compute_dice(one_hot(prediction), one_hot(truth), include_background=False, ignore_empty=False).numpy()


@pytest.mark.parametrize("shape", [(16, 16), (8, 8, 8)], ids=["2d", "3d"])
@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_dice_matches_monai(shape, num_classes: int) -> None:
    rng = np.random.default_rng(num_classes)
    truth, prediction = rng.integers(0, num_classes, (4, *shape)), rng.integers(0, num_classes, (4, *shape))
    prediction[0] = 0  # a prediction without foreground: Dice 0 where the truth has the class
    truth[1] = prediction[1]
    np.testing.assert_allclose(dice_per_class(prediction, truth, num_classes),
                               monai_dice(prediction, truth, num_classes), rtol=1e-6)


def test_empty_mask_convention() -> None:
    empty, lesion = np.zeros((1, 8, 8), int), np.zeros((1, 8, 8), int)
    lesion[0, 2:4, 2:4] = 2
    assert dice_per_class(empty, empty, 3).tolist() == [[1.0, 1.0]]
    assert dice_per_class(empty, lesion, 3)[0, 1] == 0.0
    assert mean_dice(dice_per_class(empty, empty, 3), empty, empty).tolist() == [1.0]
    # only class 2 is present and counted
    assert mean_dice(dice_per_class(lesion, lesion, 3), lesion, lesion).tolist() == [1.0]


def test_mean_dice_averages_only_the_classes_present() -> None:
    truth = np.zeros((1, 8, 8), int)
    truth[0, :4] = 1
    prediction = truth.copy()
    prediction[0, :2] = 0  # class 1: Dice 2*16/(32+16) = 2/3; class 2 absent from both: not counted
    np.testing.assert_allclose(mean_dice(dice_per_class(prediction, truth, 3), prediction, truth), [2 / 3])


@pytest.mark.parametrize("labels", [[0, 1], [0, 3, 7]])
def test_case_metrics_name_each_label_value(labels) -> None:
    rng = np.random.default_rng(1)
    truth, prediction = rng.integers(0, len(labels), (2, 12, 12))
    metrics = case_metrics(prediction, truth, labels, (1.0, 1.0))
    per_class = dice_per_class(prediction[None], truth[None], len(labels))[0]
    assert [metrics[f"dice_{value}"] for value in labels[1:]] == pytest.approx(per_class.tolist())
    assert metrics["dice_mean"] == pytest.approx(float(mean_dice(per_class[None], prediction[None], truth[None])[0]))
    assert {"msd", "hd95"} <= set(metrics)
