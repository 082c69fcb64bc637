"""DSM losses: values, minima and the weighting of the paper."""

from __future__ import annotations

import pytest
import torch

from segqc import losses


@pytest.mark.parametrize("kind", ["kl", "mse"])
@pytest.mark.parametrize("num_classes", [2, 3, 7])
def test_categorical_loss_is_zero_at_the_target_and_positive_elsewhere(kind: str, num_classes: int) -> None:
    logits = torch.randn(4, 6, num_classes)
    target = torch.softmax(logits, -1)
    tau = torch.tensor(3.0)
    zero = losses.categorical_dsm_loss(logits, target, tau, kind)
    assert zero.shape == (4, 6)
    torch.testing.assert_close(zero, torch.zeros_like(zero), atol=1e-3, rtol=0)
    assert (losses.categorical_dsm_loss(torch.zeros_like(logits), target, tau, kind) > 0).all()


def test_mse_loss_matches_the_paper_formula() -> None:
    logits, target = torch.randn(3, 4), torch.softmax(torch.randn(3, 4), -1)
    tau = torch.tensor([[2.0], [5.0], [20.0]])
    expected = (tau.squeeze(1) * 4) ** 2 * ((torch.softmax(logits, -1) - target) ** 2).sum(-1)
    torch.testing.assert_close(losses.categorical_dsm_loss(logits, target, tau, "mse"), expected)


def test_kl_loss_matches_torch_kl_div() -> None:
    logits, target = torch.randn(3, 5), torch.softmax(torch.randn(3, 5), -1)
    expected = torch.nn.functional.kl_div(torch.log_softmax(logits, -1), target, reduction="none").sum(-1)
    torch.testing.assert_close(losses.categorical_dsm_loss(logits, target, torch.tensor(1.0 / 5), "kl"), expected)


def test_class_axis_one_for_images() -> None:
    logits, target = torch.randn(2, 3, 4, 4), torch.softmax(torch.randn(2, 3, 4, 4), 1)
    per_pixel = losses.categorical_dsm_loss(logits, target, torch.tensor(2.0), "mse", dim=1)
    assert per_pixel.shape == (2, 4, 4)


def test_unknown_loss_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown categorical loss"):
        losses.categorical_dsm_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor(1.0), "huber")  # type: ignore[arg-type]


def test_gaussian_loss_equals_weighted_score_matching() -> None:
    z_hat, z, sigma = torch.randn(6), torch.randn(6), torch.tensor(0.3)
    weighted = sigma**2 * (-z_hat / sigma - (-z / sigma)) ** 2
    torch.testing.assert_close(losses.gaussian_dsm_loss(z_hat, z), weighted)
