"""Metrics: the one Dice of segqc against MONAI's ``compute_dice``; rankings against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice

from segqc.metrics import aurc, case_metrics, correlations, dice_per_class, failure_detection, mean_dice, top_k_indices

# Five cases listed out of score order; by score 1..5 the Dice is 0.9, 0.9, 0.6, 0.5, 0.1.
SCORES = [3.0, 1.0, 5.0, 2.0, 4.0]
DICE = [0.6, 0.9, 0.1, 0.9, 0.5]


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


def test_correlations_by_hand() -> None:
    # Pearson. Scores 1..5: mean 3, deviations -2..2, Sxx = 10.
    # Dice by score: mean 3.0 / 5 = 0.6, deviations .3, .3, 0, -.1, -.5;
    # Sxy = -.6 - .3 + 0 - .1 - 1.0 = -2.0; Syy = .09 + .09 + 0 + .01 + .25 = .44;
    # r = -2 / sqrt(10 * .44) = -2 / sqrt(4.4).
    # Spearman. Dice ranks by score: 4.5, 4.5, 3, 2, 1 (tie averaged); mean 3,
    # deviations 1.5, 1.5, 0, -1, -2; Sxy = -3 - 1.5 - 1 - 4 = -9.5; Syy = 9.5;
    # rho = -9.5 / sqrt(10 * 9.5) = -sqrt(0.95).
    # Top 3 (scores 5, 4, 3; Dice .1, .5, .6): score deviations 1, 0, -1 (Sxx 2);
    # Dice mean .4, deviations -.3, .1, .2; Sxy = -.3 - .2 = -.5; Syy = .14;
    # r = -.5 / sqrt(2 * .14) = -.5 / sqrt(.28); ranks perfectly reversed: rho = -1.
    result = correlations(SCORES, DICE, top_k=3)
    assert result["pearson"] == pytest.approx(-2 / math.sqrt(4.4))
    assert result["spearman"] == pytest.approx(-math.sqrt(0.95))
    assert result["pearson_top_k"] == pytest.approx(-0.5 / math.sqrt(0.28))
    assert result["spearman_top_k"] == pytest.approx(-1.0)
    assert (result["n"], result["n_top_k"]) == (5, 3)


def test_correlations_drop_nan_pairs_and_report_undefined_as_none() -> None:
    # A sixth case with the highest score but no metric: dropped pairwise, so the
    # overall figures are unchanged; it takes a top-3 place, leaving 2 pairs.
    result = correlations(SCORES + [6.0], DICE + [float("nan")], top_k=3)
    assert result["pearson"] == pytest.approx(-2 / math.sqrt(4.4))
    assert (result["n"], result["n_top_k"]) == (5, 2)
    assert result["pearson_top_k"] is None and result["spearman_top_k"] is None
    constant = correlations(SCORES, [0.7] * 5, top_k=5)
    assert constant["pearson"] is None and constant["spearman"] is None
    assert correlations([1.0, 2.0], [0.5, 0.4], top_k=2)["pearson"] is None


def test_top_k_larger_than_cases_uses_all() -> None:
    result = correlations(SCORES, DICE, top_k=50)
    assert result["pearson_top_k"] == pytest.approx(result["pearson"])
    assert result["n_top_k"] == 5


def test_top_k_selection_takes_highest_scores_first() -> None:
    assert top_k_indices(np.array(SCORES), 3).tolist() == [2, 4, 0]
    assert top_k_indices(np.array([1.0, 2.0, 2.0]), 2).tolist() == [1, 2]


def test_failure_detection_by_hand() -> None:
    # Threshold 0.8: Dice .9 and .85 pass; .6 and NaN fail.
    # AUROC: failures score .35, .8; passes .1, .4. Pairs where the failure
    # scores higher: (.35, .1), (.8, .1), (.8, .4) -> 3 of 4 = 0.75.
    # AP: by score descending .8 F, .4 P, .35 F, .1 P; precision at each
    # failure 1/1, 2/3 -> (1 + 2/3) / 2 = 5/6.
    # AURC: by score ascending .1, .35, .4, .8 with risk .1, .4, .15, 1 (NaN -> 1).
    # Mean risk of the first k: .1, .5/2 = .25, .65/3 = 13/60, 1.65/4 = .4125.
    # AURC = (6/60 + 15/60 + 13/60 + 24.75/60) / 4 = 58.75 / 240.
    result = failure_detection([0.1, 0.4, 0.35, 0.8], [0.9, 0.85, 0.6, float("nan")], dice_threshold=0.8)
    assert result["failures"] == 2
    assert result["auroc"] == pytest.approx(0.75)
    assert result["average_precision"] == pytest.approx(5 / 6)
    assert result["aurc"] == pytest.approx(58.75 / 240)
    assert result["dice_threshold"] == 0.8


def test_failure_detection_single_class_and_threshold_edge() -> None:
    result = failure_detection([0.1, 0.2, 0.3], [0.8, 0.9, 1.0], dice_threshold=0.8)  # 0.8 is not < 0.8
    assert result["failures"] == 0
    assert result["auroc"] is None and result["average_precision"] is None
    # Risks .2, .1, 0: mean risks .2, .15, .1 -> AURC .15.
    assert result["aurc"] == pytest.approx(0.15)
    assert failure_detection([], [])["aurc"] is None


def test_aurc_is_lowest_when_scores_rank_risk() -> None:
    risk = np.array([0.0, 0.1, 0.5, 0.9])
    assert aurc(np.array([1.0, 2.0, 3.0, 4.0]), risk) < aurc(np.array([4.0, 3.0, 2.0, 1.0]), risk)
