"""The noise maths against autograd and sampling references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from segqc import noise


@pytest.mark.parametrize("num_classes", [2, 3, 5, 10])
@pytest.mark.parametrize("tau", [0.5, 2.0, 20.0])
def test_closed_form_score_equals_autograd_of_log_density(num_classes: int, tau: float) -> None:
    generator = torch.Generator().manual_seed(num_classes)
    logits = torch.randn(16, num_classes, generator=generator, dtype=torch.float64)
    tau_t = torch.tensor(tau, dtype=torch.float64)
    y = noise.exp_concrete_perturb(logits, tau_t, noise.sample_gumbel(logits.shape, generator).double())
    y = y.detach().requires_grad_(True)
    log_prob = noise.exp_concrete_log_prob(y, logits, tau_t)
    (autograd,) = torch.autograd.grad(log_prob.sum(), y)
    torch.testing.assert_close(noise.exp_concrete_score(y, logits, tau_t), autograd)


def test_score_on_image_layout_class_axis_one() -> None:
    logits = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    y = noise.exp_concrete_perturb(logits, torch.tensor(2.0), noise.sample_gumbel(logits.shape).double(), dim=1)
    y = y.detach().requires_grad_(True)
    (autograd,) = torch.autograd.grad(noise.exp_concrete_log_prob(y, logits, 2.0, dim=1).sum(), y)
    torch.testing.assert_close(noise.exp_concrete_score(y, logits, torch.tensor(2.0), dim=1), autograd)


def test_log_density_matches_torch_relaxed_categorical() -> None:
    """Maddison et al.'s density equals torch's ExpRelaxedCategorical."""
    logits = torch.randn(8, 4, dtype=torch.float64)
    dist = ExpRelaxedCategorical(torch.tensor(1.5, dtype=torch.float64), logits=logits)
    y = dist.sample()
    torch.testing.assert_close(noise.exp_concrete_log_prob(y, torch.log_softmax(logits, -1), 1.5), dist.log_prob(y))


@pytest.mark.parametrize("tau", [0.5, 2.0, 20.0])
def test_argmax_follows_location_probabilities(tau: float) -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    n = 200_000
    generator = torch.Generator().manual_seed(0)
    logits = torch.log(probs).expand(n, 4)
    y = noise.exp_concrete_perturb(logits, torch.tensor(tau), noise.sample_gumbel(logits.shape, generator))
    frequencies = torch.bincount(y.argmax(-1), minlength=4).float() / n
    torch.testing.assert_close(frequencies, probs, atol=0.005, rtol=0)


def test_logit_noise_target_equals_softmax_of_l_minus_tau_y() -> None:
    one_hot = torch.nn.functional.one_hot(torch.tensor([0, 2, 1]), 3).double()
    logits = noise.clean_logits(one_hot)
    gumbel = noise.sample_gumbel(logits.shape).double()
    tau = torch.tensor([[2.0], [7.0], [20.0]], dtype=torch.float64)
    y = noise.exp_concrete_perturb(logits, tau, gumbel)
    torch.testing.assert_close(noise.logit_noise_target(gumbel), torch.softmax(logits - tau * y, -1))


def test_noise_free_point_has_uniform_noise_target() -> None:
    logits = noise.clean_logits(torch.eye(4))
    y0 = noise.noise_free_point(logits, torch.tensor(3.0))
    score = noise.exp_concrete_score(y0, logits, torch.tensor(3.0))
    torch.testing.assert_close(score, torch.zeros_like(score), atol=1e-4, rtol=0)


def test_geometric_levels() -> None:
    levels = noise.geometric_levels(20.0, 2.0, 20)
    assert levels.shape == (20,)
    torch.testing.assert_close(levels[[0, -1]], torch.tensor([20.0, 2.0]))
    ratios = levels[1:] / levels[:-1]
    torch.testing.assert_close(ratios, ratios[:1].expand_as(ratios))
    assert noise.geometric_levels(5.0, 1.0, 1).tolist() == [5.0]
    with pytest.raises(ValueError):
        noise.geometric_levels(1.0, 0.0, 3)


def test_gaussian_score_is_the_dsm_target() -> None:
    x, z, sigma = torch.randn(5, 3), torch.randn(5, 3), torch.tensor(0.4)
    x_tilde = noise.gaussian_perturb(x, sigma, z)
    torch.testing.assert_close(noise.gaussian_score(z, sigma), -(x_tilde - x) / sigma**2)


def test_kurtosis_sigmas_follow_the_marginal_shape() -> None:
    rng = np.random.default_rng(0)
    values = np.stack([rng.normal(size=20000), rng.standard_t(3, size=20000), rng.uniform(size=20000),
                       np.ones(20000)], 1)
    sigmas = noise.kurtosis_sigmas(values)
    reference = stats.kurtosis(stats.trimboth(values[:, 0], 0.02), fisher=False)
    assert sigmas[0] == pytest.approx(0.5 * (1 + 0.33 * (reference - 3)), abs=1e-3)
    assert sigmas[1] > sigmas[0] > sigmas[2]  # heavy tails -> more noise, light tails -> less
    assert sigmas[3] == pytest.approx(0.5)  # constant column: neutral
    assert np.all((sigmas >= 0.1) & (sigmas <= 3.0))
