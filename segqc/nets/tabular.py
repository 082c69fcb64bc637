"""Tabular score network: ResNet blocks with FiLM conditioning on the noise level.

Follows the GNSM paper's appendix (eqs. 18-21): ``Net(x, t) = Head(ResBlock(...
ResBlock(x, t)))`` with ``ResBlock(x, t) = x + Linear(FiLM(Linear(act(LN(x))), t))``
and ``Head = Linear(LeakyReLU(LayerNorm(x)))``.
"""

from __future__ import annotations

import torch
from torch import nn

from segqc.nets.embeddings import NoiseEmbedding


class FiLM(nn.Module):
    """Feature-wise affine modulation ``h * (1 + gamma(t)) + beta(t)`` (Perez et al., 2018)."""

    def __init__(self, embedding_size: int, features: int) -> None:
        super().__init__()
        self.project = nn.Linear(embedding_size, 2 * features)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, h: torch.Tensor, embedding: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        """Modulate ``h`` of shape ``(B, F)``.

        Args:
            h: Features, shape ``(B, F)``.
            embedding: Embeddings of the distinct levels in the batch, ``(U, E)``.
            inverse: Row of ``embedding`` for each row of ``h``, ``(B,)``.
        """
        # A one-hot product, not ``[inverse]``: on several CPU threads the backward of fancy indexing
        # adds with atomics in no fixed order, and training was not reproducible run to run.
        select = nn.functional.one_hot(inverse, embedding.shape[0]).to(h.dtype)
        gamma, beta = (select @ self.project(embedding)).chunk(2, dim=-1)
        return h * (1.0 + gamma) + beta


class TabularResBlock(nn.Module):
    """Pre-norm residual block: LayerNorm, GELU, Linear, FiLM, dropout, Linear."""

    def __init__(self, width: int, embedding_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.dense_in = nn.Linear(width, width)
        self.film = FiLM(embedding_size, width)
        self.dropout = nn.Dropout(dropout)
        self.dense_out = nn.Linear(width, width)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, embedding: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x`` of shape ``(B, width)`` (see :meth:`FiLM.forward`)."""
        h = self.dense_in(self.act(self.norm(x)))
        h = self.dense_out(self.dropout(self.film(h, embedding, inverse)))
        return x + h


class TabularScoreNet(nn.Module):
    """Noise-conditioned ResNet mapping a perturbed row to its noise estimate.

    Args:
        num_features: Width of the flat input and output: the sum of the
            categories of every categorical column plus the continuous columns.
        width: Hidden width of every block.
        depth: Number of residual blocks.
        embedding_size: Width of the noise-level embedding.
        dropout: Dropout inside the blocks.
        fourier_scale: Frequency scale of the Fourier level embedding.
    """

    def __init__(self, num_features: int, width: int = 256, depth: int = 4, embedding_size: int = 128,
                 dropout: float = 0.0, fourier_scale: float = 16.0) -> None:
        super().__init__()
        self.embed = NoiseEmbedding(embedding_size, fourier_scale)
        self.stem = nn.Linear(num_features, width)
        self.blocks = nn.ModuleList(TabularResBlock(width, embedding_size, dropout) for _ in range(depth))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.LeakyReLU(), nn.Linear(width, num_features))

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """Estimate the noise of perturbed rows.

        Args:
            x: Perturbed rows, shape ``(B, num_features)``.
            level: Noise level of each row, shape ``(B,)``.

        Returns:
            Noise estimates (categorical logit noise, continuous Gaussian noise),
            shape ``(B, num_features)``.
        """
        # Levels come from a short schedule: embed each distinct level once.
        distinct, inverse = torch.unique(level, return_inverse=True)
        embedding = self.embed(distinct)
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, embedding, inverse)
        return self.head(h)
