"""Noise processes of segqc: maths only, no ``nn.Module``.

Categorical variables are perturbed with the ExpConcrete (Gumbel) relaxation of
Maddison et al. (2017), as in Gumbel Noise Score Matching (GNSM); continuous
variables with Gaussian noise (Vincent, 2011). Every function takes the class
axis as ``dim`` so the same code serves table columns ``(B, D, K)`` and images
``(B, K, *spatial)``.

Notation (DESIGN.md section 3.1): ``l`` clean logits, ``tau`` temperature (the
paper's lambda), ``y`` the perturbed point in the log-simplex,
``e = l - tau * y`` the logit noise.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

DEFAULT_DELTA = 1e-5


def geometric_levels(start: float, stop: float, num: int) -> torch.Tensor:
    """Geometric sequence of noise levels from ``start`` to ``stop`` inclusive.

    Args:
        start: First level (the largest noise, e.g. ``tau_max = 20``).
        stop: Last level (the smallest noise, e.g. ``tau_min = 2``).
        num: Number of levels ``L`` (>= 1; with 1 only ``start`` is returned).

    Returns:
        Levels of shape ``(L,)``, float32.
    """
    if num < 1 or start <= 0 or stop <= 0:
        raise ValueError(f"need num >= 1 and positive levels, got {start=}, {stop=}, {num=}")
    if num == 1:
        return torch.tensor([float(start)])
    return torch.logspace(np.log10(start), np.log10(stop), num, dtype=torch.float64).float()


def clean_logits(one_hot: torch.Tensor, delta: float = DEFAULT_DELTA) -> torch.Tensor:
    """Logits of a one-hot (or soft) categorical: ``log(max(x, delta))``.

    Args:
        one_hot: Non-negative class weights, any shape.
        delta: Floor that keeps the logarithm finite.

    Returns:
        Logits of the same shape.
    """
    return torch.log(one_hot.clamp_min(delta))


def mixed_location_logits(one_hot: torch.Tensor, beta: torch.Tensor, delta: float = DEFAULT_DELTA,
                          dim: int = -1) -> torch.Tensor:
    """Logits of a location mixed towards uniform: ``log(max((1 - beta) x + beta / K, delta))``.

    With ``beta = 0`` this is :func:`clean_logits`. A ``beta`` that grows with the
    noise level hides the clean class at high noise, so a denoiser must infer it
    from context (DESIGN.md section 3.1).

    Args:
        one_hot: One-hot classes, classes on ``dim``.
        beta: Mixing weights in ``[0, 1)``, broadcastable to ``one_hot``.
        delta: Floor before the logarithm.
        dim: Class axis.

    Returns:
        Logits of the shape of ``one_hot``.
    """
    num_classes = one_hot.shape[dim]
    return clean_logits((1.0 - beta) * one_hot + beta / num_classes, delta)


def sample_gumbel(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Draw iid standard Gumbel noise ``g = -log(-log(u))``."""
    u = torch.rand(shape, generator=generator, device=device)
    tiny = torch.finfo(u.dtype).tiny
    return -torch.log(-torch.log(u.clamp(tiny, 1.0 - 1e-7)))


def exp_concrete_perturb(logits: torch.Tensor, tau: torch.Tensor, gumbel: torch.Tensor,
                         dim: int = -1) -> torch.Tensor:
    """ExpConcrete sample ``y = log_softmax((l + g) / tau)`` (paper eq. 3).

    Args:
        logits: Clean logits ``l``, shape ``(..., K, ...)`` with classes on ``dim``.
        tau: Temperatures, broadcastable to ``logits``.
        gumbel: Gumbel noise ``g`` of the same shape as ``logits``.
        dim: Class axis.

    Returns:
        The perturbed point ``y`` in the log-simplex, shape of ``logits``.
    """
    return torch.log_softmax((logits + gumbel) / tau, dim=dim)


def noise_free_point(logits: torch.Tensor, tau: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The ExpConcrete point with zero Gumbel noise, ``log_softmax(l / tau)``.

    This is where a clean input sits at temperature ``tau``; scoring evaluates
    the network there (MSMA embedding of clean inputs).
    """
    return torch.log_softmax(logits / tau, dim=dim)


def logit_noise_target(gumbel: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Target distribution ``softmax(e) = softmax(-g)`` of the logit noise.

    ``e = l - tau * y`` equals ``-g`` plus a constant per variable, so its
    softmax is computed from the Gumbel draw directly, without cancellation.
    """
    return torch.softmax(-gumbel, dim=dim)


def exp_concrete_score(y: torch.Tensor, logits: torch.Tensor, tau: torch.Tensor,
                       dim: int = -1) -> torch.Tensor:
    """Closed-form score ``d/dy log p(y) = -tau + tau*K*softmax(l - tau*y)`` (eq. 4).

    Args:
        y: Point in the log-simplex, classes on ``dim``.
        logits: Location logits ``log(alpha)``, same shape.
        tau: Temperatures, broadcastable.
        dim: Class axis.

    Returns:
        The score, same shape as ``y``.
    """
    return score_from_noise_logits(logits - tau * y, tau, dim)


def score_from_noise_logits(noise_logits: torch.Tensor, tau: torch.Tensor,
                            dim: int = -1) -> torch.Tensor:
    """Score from (predicted) logit noise: ``s = -tau + tau*K*softmax(e)``."""
    num_classes = noise_logits.shape[dim]
    return tau * (num_classes * torch.softmax(noise_logits, dim=dim) - 1.0)


def exp_concrete_log_prob(y: torch.Tensor, logits: torch.Tensor, tau: torch.Tensor,
                          dim: int = -1) -> torch.Tensor:
    """Log-density of ExpConcrete(alpha, tau) at ``y`` (Maddison et al., 2017).

    ``log p = log((K-1)!) + (K-1) log tau + sum_k(log a_k - tau y_k)
    - K logsumexp_k(log a_k - tau y_k)``.

    Returns:
        Log-density with ``dim`` reduced.
    """
    num_classes = y.shape[dim]
    z = logits - tau * y
    log_tau = torch.log(torch.as_tensor(tau, dtype=y.dtype)).expand_as(y).select(dim, 0)
    log_norm = torch.lgamma(torch.tensor(float(num_classes), dtype=y.dtype))
    return log_norm + (num_classes - 1) * log_tau + z.sum(dim) - num_classes * torch.logsumexp(z, dim=dim)


def gaussian_perturb(x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Gaussian perturbation ``x_tilde = x + sigma * z``."""
    return x + sigma * noise


def gaussian_score(noise_estimate: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Score from a noise estimate: ``s = -z / sigma`` (target ``-(x_tilde - x)/sigma^2``)."""
    return -noise_estimate / sigma


def kurtosis_sigmas(values: np.ndarray, trim: float = 0.02, base: float = 0.5, slope: float = 0.33,
                    low: float = 0.1, high: float = 3.0) -> np.ndarray:
    """Per-feature K-DSM noise scales from the shape of each marginal.

    Trim ``trim`` of each tail, standardise, take the Pearson kurtosis ``k`` and
    set ``sigma = clip(base * (1 + slope * (k - 3)), low, high)``.

    Args:
        values: Continuous features, shape ``(N, D)``.
        trim: Fraction trimmed from each tail before the kurtosis.

    Returns:
        Noise scales of shape ``(D,)``, float32.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected a (N, D) array, got shape {values.shape}")
    sigmas = np.empty(values.shape[1])
    for j, column in enumerate(values.T):
        column = column[np.isfinite(column)]
        lo, hi = np.quantile(column, [trim, 1.0 - trim]) if column.size else (0.0, 0.0)
        kept = column[(column >= lo) & (column <= hi)]
        if kept.size < 4 or np.std(kept) == 0:
            kurt = 3.0
        else:
            kurt = float(stats.kurtosis(kept, fisher=False))
        sigmas[j] = np.clip(base * (1.0 + slope * (kurt - 3.0)), low, high)
    return sigmas.astype(np.float32)
