"""Score model for rows of mixed categorical / continuous variables.

A score model ties a network to its noise process and loss: ``forward`` returns
the per-row training loss (so the shared trainer and DDP can drive it), and
``variable_norms`` gives the squared score norm of every variable at every
level, the embedding used for anomaly detection (DESIGN.md section 3.4).

Row layout: every categorical column with ``K`` categories takes ``K`` slots of
the flat network input, then come the continuous columns (their perturbed
standardised values). Categorical columns are noised in one of two ways:

* ``gumbel`` (GNSM): the slots hold the ExpConcrete point ``y`` at temperature
  ``tau``; columns with the same ``K`` are processed together as one
  ``(B, m, K)`` tensor.
* ``gaussian``: the slots hold the one-hot vector plus Gaussian noise of scale
  ``tau`` (the level's categorical scale), denoised like continuous columns.
  By the Gumbel-max property an ExpConcrete point reveals its class at every
  temperature, so a denoiser can ignore the other columns; Gaussian noise of
  scale ~1 hides the class and forces the network to predict it from the rest
  of the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from segqc import losses, noise
from segqc.nets.tabular import TabularScoreNet

CategoricalNoise = Literal["gumbel", "gaussian"]


@dataclass(frozen=True)
class CategoryGroup:
    """Categorical columns sharing one number of categories ``K``.

    Attributes:
        num_classes: ``K``.
        columns: Indices of the columns among the categorical columns, ``(m,)``.
        slots: Indices into the flat row of each column's ``K`` slots, ``(m, K)``.
    """

    num_classes: int
    columns: torch.Tensor
    slots: torch.Tensor


def category_groups(cardinalities: Sequence[int]) -> list[CategoryGroup]:
    """Group categorical columns by their number of categories.

    Args:
        cardinalities: ``K`` of each categorical column, in row order.

    Returns:
        One :class:`CategoryGroup` per distinct ``K``.
    """
    offsets = torch.tensor([0, *cardinalities]).cumsum(0)[:-1]
    groups = []
    for k in sorted(set(cardinalities)):
        columns = torch.tensor([i for i, c in enumerate(cardinalities) if c == k], dtype=torch.long)
        slots = offsets[columns][:, None] + torch.arange(k)[None, :]
        groups.append(CategoryGroup(k, columns, slots))
    return groups


class TabularScoreModel(nn.Module):
    """GNSM for categorical columns plus Gaussian DSM for continuous columns.

    Args:
        cardinalities: Number of categories of each categorical column.
        taus: Categorical noise per level, shape ``(L,)``: temperatures
            (``gumbel``) or Gaussian scales of the one-hot slots (``gaussian``).
            The network is conditioned on them.
        sigmas: Gaussian scales per level and continuous column, shape
            ``(L, D_cont)`` (a row per level; K-DSM uses one row of per-feature scales).
        loss: Categorical loss, ``"kl"`` or ``"mse"`` (``gumbel`` only).
        delta: Floor of the one-hot before the logarithm.
        width: Hidden width of the network.
        depth: Number of residual blocks.
        embedding_size: Width of the noise-level embedding.
        dropout: Dropout in the blocks.
        categorical_noise: ``"gumbel"`` or ``"gaussian"`` (see the module docstring).
    """

    def __init__(self, cardinalities: Sequence[int], taus: torch.Tensor, sigmas: torch.Tensor,
                 loss: losses.CategoricalLoss = "kl", delta: float = noise.DEFAULT_DELTA,
                 width: int = 256, depth: int = 4, embedding_size: int = 128, dropout: float = 0.0,
                 categorical_noise: CategoricalNoise = "gumbel") -> None:
        super().__init__()
        if categorical_noise not in ("gumbel", "gaussian"):
            raise ValueError(f"unknown categorical noise {categorical_noise!r}; expected 'gumbel' or 'gaussian'")
        self.categorical_noise = categorical_noise
        self.cardinalities = [int(k) for k in cardinalities]
        self.num_continuous = int(sigmas.shape[1])
        if taus.ndim != 1 or sigmas.ndim != 2 or sigmas.shape[0] != taus.shape[0]:
            raise ValueError(f"taus (L,) and sigmas (L, D) disagree: {tuple(taus.shape)} vs {tuple(sigmas.shape)}")
        self.loss_kind = loss
        self.delta = delta
        self.register_buffer("taus", taus.float().clone())
        self.register_buffer("sigmas", sigmas.float().clone())
        self.groups = category_groups(self.cardinalities)
        self.num_categorical_slots = sum(self.cardinalities)
        self.num_variables = len(self.cardinalities) + self.num_continuous
        self.first_slot = torch.tensor([0, *self.cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.slot_variable = torch.cat([torch.repeat_interleave(torch.arange(len(self.cardinalities)),
                                                                torch.tensor(self.cardinalities, dtype=torch.long)),
                                        len(self.cardinalities) + torch.arange(self.num_continuous)])
        self.net = TabularScoreNet(self.num_categorical_slots + self.num_continuous, width, depth,
                                   embedding_size, dropout)

    @property
    def num_levels(self) -> int:
        """Number of noise levels ``L``."""
        return int(self.taus.shape[0])

    def _group_logits(self, codes: torch.Tensor, group: CategoryGroup) -> torch.Tensor:
        """Clean logits ``(B, m, K)`` of a group; code ``-1`` (unseen) gives a uniform location."""
        group_codes = codes[:, group.columns.to(codes.device)]
        one_hot = nn.functional.one_hot(group_codes.clamp_min(0), group.num_classes).float()
        one_hot = one_hot * (group_codes >= 0).unsqueeze(-1)
        return noise.clean_logits(one_hot, self.delta)

    def _assemble(self, parts: list[torch.Tensor], continuous: torch.Tensor) -> torch.Tensor:
        """Scatter per-group ``(B, m, K)`` tensors and continuous ``(B, D)`` into flat rows."""
        batch = continuous.shape[0]
        flat = continuous.new_zeros(batch, self.num_categorical_slots + self.num_continuous)
        for group, part in zip(self.groups, parts):
            flat[:, group.slots.to(flat.device).reshape(-1)] = part.reshape(batch, -1)
        flat[:, self.num_categorical_slots:] = continuous
        return flat

    def _split(self, flat: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Inverse of :meth:`_assemble`: per-group ``(B, m, K)`` and continuous ``(B, D)``."""
        parts = [flat[:, group.slots.to(flat.device)] for group in self.groups]
        return parts, flat[:, self.num_categorical_slots:]

    def _one_hot(self, codes: torch.Tensor) -> torch.Tensor:
        """One-hot slots ``(B, S)`` of category codes ``(B, D_cat)``; an unseen code (``-1``) gives zeros."""
        slots = torch.zeros(codes.shape[0], self.num_categorical_slots, device=codes.device)
        if self.cardinalities:
            first_slot = self.first_slot.to(codes.device)
            slots.scatter_(1, codes.clamp_min(0) + first_slot, (codes >= 0).float())
        return slots

    def _slot_sigmas(self, level: torch.Tensor) -> torch.Tensor:
        """Gaussian scales ``(B, S + D_cont)`` of every slot (``gaussian`` categorical noise)."""
        categorical = self.taus[level][:, None].expand(-1, self.num_categorical_slots)
        return torch.cat([categorical, self.sigmas[level]], 1)

    def forward(self, codes: torch.Tensor, continuous: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-row denoising loss at a random level of each row.

        Args:
            codes: Category codes, shape ``(B, D_cat)``, int64 (``-1`` = unseen).
            continuous: Standardised continuous values, shape ``(B, D_cont)``.
            generator: Source of randomness.

        Returns:
            Loss per row, mean over the row's variables, shape ``(B,)``.
        """
        device = continuous.device
        level = torch.randint(self.num_levels, (continuous.shape[0],), generator=generator, device=device)
        tau = self.taus[level]
        if self.categorical_noise == "gaussian":
            clean = torch.cat([self._one_hot(codes), continuous], 1)
            z = torch.randn(clean.shape, generator=generator, device=device)
            prediction = self.net(noise.gaussian_perturb(clean, self._slot_sigmas(level), z), tau)
            return losses.gaussian_dsm_loss(prediction, z).sum(-1) / max(self.num_variables, 1)
        inputs, targets = [], []
        for group in self.groups:
            logits = self._group_logits(codes, group)
            gumbel = noise.sample_gumbel(logits.shape, generator, device)
            inputs.append(noise.exp_concrete_perturb(logits, tau[:, None, None], gumbel))
            targets.append(noise.logit_noise_target(gumbel))
        z = torch.randn(continuous.shape, generator=generator, device=device)
        perturbed = noise.gaussian_perturb(continuous, self.sigmas[level], z)
        prediction = self.net(self._assemble(inputs, perturbed), tau)
        predicted_parts, predicted_z = self._split(prediction)
        total = losses.gaussian_dsm_loss(predicted_z, z).sum(-1)
        for part, target in zip(predicted_parts, targets):
            total = total + losses.categorical_dsm_loss(part, target, tau[:, None, None], self.loss_kind).sum(-1)
        return total / max(self.num_variables, 1)

    def slot_scores(self, codes: torch.Tensor, continuous: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """Estimated scores of clean rows at given levels, one per input slot.

        Args:
            codes: Category codes, shape ``(B, D_cat)``.
            continuous: Standardised continuous values, shape ``(B, D_cont)``.
            level: Level index of each row, shape ``(B,)``.

        Returns:
            Scores of the categorical slots then the continuous columns, shape ``(B, S + D_cont)``.
        """
        tau = self.taus[level]
        if self.categorical_noise == "gaussian":
            prediction = self.net(torch.cat([self._one_hot(codes), continuous], 1), tau)
            return noise.gaussian_score(prediction, self._slot_sigmas(level))
        inputs = [noise.noise_free_point(self._group_logits(codes, g), tau[:, None, None]) for g in self.groups]
        prediction = self.net(self._assemble(inputs, continuous), tau)
        parts, predicted_z = self._split(prediction)
        categorical = [noise.score_from_noise_logits(p, tau[:, None, None]) for p in parts]
        return self._assemble(categorical, noise.gaussian_score(predicted_z, self.sigmas[level]))

    def variable_norms(self, codes: torch.Tensor, continuous: torch.Tensor) -> torch.Tensor:
        """Squared score norm of every variable at every level of clean rows.

        A categorical variable's norm sums its ``K`` slots.

        Args:
            codes: Category codes, shape ``(B, D_cat)``.
            continuous: Standardised continuous values, shape ``(B, D_cont)``.

        Returns:
            Norms of shape ``(B, L, V)`` with ``V = D_cat + D_cont``.
        """
        batch, levels = continuous.shape[0], self.num_levels
        level = torch.arange(levels, device=continuous.device).repeat_interleave(batch)
        squared = self.slot_scores(codes.repeat(levels, 1), continuous.repeat(levels, 1), level) ** 2
        norms = squared.new_zeros(squared.shape[0], self.num_variables)
        norms.index_add_(1, self.slot_variable.to(squared.device), squared)
        return norms.reshape(levels, batch, self.num_variables).transpose(0, 1)

    def filter_norms(self, codes: torch.Tensor, continuous: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Level-free score norms of clean rows for EMA-teacher filtering.

        Scores are divided by their level's scale (``s / tau`` for ExpConcrete,
        ``s * sigma`` for Gaussian slots) so that norms at different levels are
        comparable; each row is scored at one random level.

        Returns:
            Norms of shape ``(B,)``.
        """
        level = torch.randint(self.num_levels, (continuous.shape[0],), generator=generator,
                              device=continuous.device)
        scores = self.slot_scores(codes, continuous, level)
        if self.categorical_noise == "gaussian":
            return ((scores * self._slot_sigmas(level)) ** 2).sum(-1)
        slots = self.num_categorical_slots
        tau = self.taus[level][:, None]
        return ((scores[:, :slots] / tau) ** 2).sum(-1) + ((scores[:, slots:] * self.sigmas[level]) ** 2).sum(-1)
