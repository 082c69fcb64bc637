"""Noise-level embeddings: shapes, dtype, and how they depend on the level."""

from __future__ import annotations

import pytest
import torch

from segqc.nets.embeddings import GaussianFourierProjection, NoiseEmbedding

LEVELS = torch.tensor([0.05, 0.5, 2.0, 20.0])


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("module", [GaussianFourierProjection, NoiseEmbedding])
@pytest.mark.parametrize("size", [2, 16, 64])
def test_one_float32_embedding_of_the_given_size_per_level(module, size: int) -> None:
    out = module(size)(LEVELS)
    assert out.shape == (len(LEVELS), size) and out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("module", [GaussianFourierProjection, NoiseEmbedding])
def test_distinct_levels_get_distinct_embeddings_and_equal_levels_equal_ones(module) -> None:
    embed = module(32)
    out = embed(torch.tensor([0.5, 2.0, 0.5, 20.0]))
    torch.testing.assert_close(out[0], out[2])
    for a, b in [(0, 1), (0, 3), (1, 3)]:
        assert not torch.allclose(out[a], out[b], atol=1e-3)


@pytest.mark.parametrize("module", [GaussianFourierProjection, NoiseEmbedding])
def test_a_level_is_embedded_alike_alone_or_in_a_batch(module) -> None:
    embed = module(16)
    together = embed(LEVELS)
    for index, level in enumerate(LEVELS):
        torch.testing.assert_close(embed(level[None])[0], together[index])


def test_fourier_features_are_sine_cosine_pairs_of_the_log_level() -> None:
    embed = GaussianFourierProjection(8, scale=4.0)
    out = embed(LEVELS)
    sines, cosines = out[:, :4], out[:, 4:]
    torch.testing.assert_close(sines**2 + cosines**2, torch.ones(len(LEVELS), 4))
    phase = torch.log(LEVELS)[:, None] * embed.frequencies * 2 * torch.pi
    torch.testing.assert_close(sines, torch.sin(phase))


def test_the_fourier_frequencies_are_fixed_not_learned_and_travel_with_the_state_dict() -> None:
    embed = GaussianFourierProjection(8)
    assert list(embed.parameters()) == [] and "frequencies" in embed.state_dict()
    other = GaussianFourierProjection(8)
    assert not torch.equal(other(LEVELS), embed(LEVELS))
    other.load_state_dict(embed.state_dict())
    torch.testing.assert_close(other(LEVELS), embed(LEVELS))


def test_a_larger_scale_varies_faster_with_the_level() -> None:
    nearby = torch.tensor([1.0, 1.01])

    def change(scale: float) -> float:
        torch.manual_seed(0)
        out = GaussianFourierProjection(256, scale)(nearby)
        return float((out[0] - out[1]).norm())

    assert change(16.0) > 4 * change(1.0)


def test_an_odd_size_is_refused() -> None:
    with pytest.raises(ValueError, match="even"):
        GaussianFourierProjection(7)
    with pytest.raises(ValueError, match="even"):
        NoiseEmbedding(15)


def test_the_noise_embedding_is_trainable() -> None:
    embed = NoiseEmbedding(8)
    embed(LEVELS).square().sum().backward()
    grads = [p.grad for p in embed.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
