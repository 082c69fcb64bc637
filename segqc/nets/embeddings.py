"""Noise-level embeddings shared by the tabular and image score networks."""

from __future__ import annotations

import math

import torch
from torch import nn


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of a scalar noise level (Song et al., 2021).

    The level is embedded through its logarithm, so that a geometric schedule of
    levels becomes evenly spaced in the embedding's input.

    Args:
        embedding_size: Number of output features (even).
        scale: Standard deviation of the fixed random frequencies.
    """

    def __init__(self, embedding_size: int = 128, scale: float = 16.0) -> None:
        super().__init__()
        if embedding_size % 2:
            raise ValueError(f"embedding_size must be even, got {embedding_size}")
        self.register_buffer("frequencies", torch.randn(embedding_size // 2) * scale)

    def forward(self, level: torch.Tensor) -> torch.Tensor:
        """Embed noise levels.

        Args:
            level: Positive noise levels, shape ``(B,)``.

        Returns:
            Embeddings of shape ``(B, embedding_size)``.
        """
        phase = torch.log(level)[:, None] * self.frequencies[None, :] * 2 * math.pi
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)


class NoiseEmbedding(nn.Sequential):
    """Fourier projection of ``log(level)`` followed by a two-layer MLP.

    Args:
        embedding_size: Width of the Fourier features and of the output.
        scale: Frequency scale of the Fourier projection.
    """

    def __init__(self, embedding_size: int = 128, scale: float = 16.0) -> None:
        super().__init__(
            GaussianFourierProjection(embedding_size, scale),
            nn.Linear(embedding_size, embedding_size * 4),
            nn.SiLU(),
            nn.Linear(embedding_size * 4, embedding_size),
        )
