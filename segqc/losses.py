"""Denoising score-matching losses (pure functions).

Each loss returns one value per variable (the class axis reduced), so callers
choose how to reduce over variables and samples.
"""

from __future__ import annotations

from typing import Literal

import torch

CategoricalLoss = Literal["kl", "mse"]


def categorical_dsm_loss(noise_logits: torch.Tensor, target: torch.Tensor, tau: torch.Tensor,
                         kind: CategoricalLoss = "kl", dim: int = -1) -> torch.Tensor:
    """GNSM loss for categorical variables (paper eqs. 6 and 17).

    ``mse``: ``tau^2 K^2 ||softmax(e_hat) - softmax(e)||^2``;
    ``kl``: ``tau^2 K^2 KL(softmax(e) || softmax(e_hat))``.

    Args:
        noise_logits: Predicted logit noise ``e_hat``, classes on ``dim``.
        target: Target distribution ``softmax(e)``, same shape.
        tau: Temperatures, broadcastable to the inputs.
        kind: ``"kl"`` or ``"mse"``.
        dim: Class axis.

    Returns:
        Loss per variable: the inputs' shape with ``dim`` reduced.
    """
    num_classes = noise_logits.shape[dim]
    weight = (tau * num_classes) ** 2
    if kind == "mse":
        per_class = (torch.softmax(noise_logits, dim=dim) - target) ** 2
    elif kind == "kl":
        per_class = target * (torch.log(target.clamp_min(1e-30)) - torch.log_softmax(noise_logits, dim=dim))
    else:
        raise ValueError(f"unknown categorical loss {kind!r}; expected 'kl' or 'mse'")
    return (weight * per_class).sum(dim)


def gaussian_dsm_loss(noise_estimate: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Gaussian DSM loss with the ``sigma^2`` weight: ``||z_hat - z||^2`` per variable.

    ``sigma^2 ||s - (-z/sigma)||^2`` with ``s = -z_hat/sigma`` reduces to this.
    """
    return (noise_estimate - noise) ** 2
