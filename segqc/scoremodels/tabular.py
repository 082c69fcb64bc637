"""Score model for rows of mixed categorical / continuous variables.

A score model ties a network to its noise process and loss: ``forward`` returns
the per-row training loss (so the shared trainer and DDP can drive it), and
``score_norms`` gives the multiscale score-norm embedding used for anomaly
detection (DESIGN.md section 3.4).

Row layout: every categorical column with ``K`` categories takes ``K`` slots of
the flat network input (its ExpConcrete point ``y``), then come the continuous
columns (their perturbed standardised values). Columns with the same ``K`` are
processed together as one ``(B, m, K)`` tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from segqc import losses, noise
from segqc.nets.tabular import TabularScoreNet


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
        taus: Temperatures per level, shape ``(L,)``.
        sigmas: Gaussian scales per level and continuous column, shape
            ``(L, D_cont)`` (a row per level; K-DSM uses one row of per-feature scales).
        loss: Categorical loss, ``"kl"`` or ``"mse"``.
        delta: Floor of the one-hot before the logarithm.
        width: Hidden width of the network.
        depth: Number of residual blocks.
        embedding_size: Width of the noise-level embedding.
        dropout: Dropout in the blocks.
    """

    def __init__(self, cardinalities: Sequence[int], taus: torch.Tensor, sigmas: torch.Tensor,
                 loss: losses.CategoricalLoss = "kl", delta: float = noise.DEFAULT_DELTA,
                 width: int = 256, depth: int = 4, embedding_size: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
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

    def scores(self, codes: torch.Tensor, continuous: torch.Tensor,
               level: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Estimated scores of clean rows at given levels.

        Args:
            codes: Category codes, shape ``(B, D_cat)``.
            continuous: Standardised continuous values, shape ``(B, D_cont)``.
            level: Level index of each row, shape ``(B,)``.

        Returns:
            Per-group categorical scores ``(B, m, K)`` and continuous scores ``(B, D_cont)``.
        """
        tau = self.taus[level]
        inputs = [noise.noise_free_point(self._group_logits(codes, g), tau[:, None, None]) for g in self.groups]
        prediction = self.net(self._assemble(inputs, continuous), tau)
        parts, predicted_z = self._split(prediction)
        categorical = [noise.score_from_noise_logits(p, tau[:, None, None]) for p in parts]
        return categorical, noise.gaussian_score(predicted_z, self.sigmas[level])

    def score_norms(self, codes: torch.Tensor, continuous: torch.Tensor) -> torch.Tensor:
        """Multiscale embedding ``eta(x)``: squared score norms at every level.

        Args:
            codes: Category codes, shape ``(B, D_cat)``.
            continuous: Standardised continuous values, shape ``(B, D_cont)``.

        Returns:
            ``||s(x, level_i)||^2`` summed over all variables, shape ``(B, L)``.
        """
        batch, levels = continuous.shape[0], self.num_levels
        level = torch.arange(levels, device=continuous.device).repeat_interleave(batch)
        categorical, cont = self.scores(codes.repeat(levels, 1), continuous.repeat(levels, 1), level)
        norms = (cont**2).sum(-1)
        for part in categorical:
            norms = norms + (part**2).sum((-1, -2))
        return norms.reshape(levels, batch).T

    def filter_norms(self, codes: torch.Tensor, continuous: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Level-free score norms of clean rows for EMA-teacher filtering.

        Scores are divided by their level's scale (``s / tau``, ``s * sigma``) so
        that norms at different levels are comparable; each row is scored at one
        random level.

        Returns:
            Norms of shape ``(B,)``.
        """
        level = torch.randint(self.num_levels, (continuous.shape[0],), generator=generator,
                              device=continuous.device)
        categorical, cont = self.scores(codes, continuous, level)
        norms = ((cont * self.sigmas[level]) ** 2).sum(-1)
        tau = self.taus[level][:, None, None]
        for part in categorical:
            norms = norms + ((part / tau) ** 2).sum((-1, -2))
        return norms
