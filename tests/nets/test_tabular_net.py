"""The tabular score network: shapes, dtype, FiLM conditioning on the noise level."""

from __future__ import annotations

import pytest
import torch

from segqc.nets.tabular import FiLM, TabularScoreNet


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


def film_on(module: torch.nn.Module) -> None:
    """Give every FiLM layer non-zero weights (they start at zero: identity modulation)."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, FiLM):
                layer.project.weight.normal_(0, 0.5)
                layer.project.bias.normal_(0, 0.5)


@pytest.mark.parametrize(("features", "width", "depth", "batch"), [(1, 8, 1, 1), (7, 16, 2, 5), (30, 32, 3, 64)])
def test_output_has_the_input_shape_and_dtype(features: int, width: int, depth: int, batch: int) -> None:
    net = TabularScoreNet(features, width=width, depth=depth, embedding_size=8)
    out = net(torch.randn(batch, features), torch.rand(batch) + 0.1)
    assert out.shape == (batch, features) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert len(net.blocks) == depth


def test_at_initialisation_the_level_does_not_change_the_output() -> None:
    """FiLM starts at zero, so an untrained network begins as one unconditioned ResNet."""
    net = TabularScoreNet(5, width=16, depth=2, embedding_size=8).eval()
    x = torch.randn(4, 5)
    torch.testing.assert_close(net(x, torch.full((4,), 0.1)), net(x, torch.full((4,), 10.0)))


def test_with_film_weights_the_output_depends_on_the_level() -> None:
    net = TabularScoreNet(5, width=16, depth=2, embedding_size=8).eval()
    film_on(net)
    x = torch.randn(4, 5)
    low, high = net(x, torch.full((4,), 0.1)), net(x, torch.full((4,), 10.0))
    assert (low - high).abs().max() > 1e-2


def test_a_row_gets_the_same_output_in_a_batch_of_mixed_levels_as_alone() -> None:
    """Distinct levels are embedded once and mapped back to their rows: the mapping must not mix rows up."""
    net = TabularScoreNet(6, width=16, depth=2, embedding_size=8).eval()
    film_on(net)
    x = torch.randn(7, 6)
    levels = torch.tensor([3.0, 0.2, 3.0, 1.0, 0.2, 5.0, 1.0])
    together = net(x, levels)
    for row in range(len(x)):
        torch.testing.assert_close(net(x[row:row + 1], levels[row:row + 1])[0], together[row], rtol=1e-5, atol=1e-5)


def test_film_scales_and_shifts_each_row_by_its_levels_embedding() -> None:
    film = FiLM(embedding_size=3, features=2)
    with torch.no_grad():
        film.project.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]))
    h = torch.ones(3, 2)
    embedding = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    out = film(h, embedding, torch.tensor([1, 0, 1]))
    expected_row = torch.tensor([1 * (1 + 1.0) + 3.0, 1 * (1 + 2.0) + 6.0])
    torch.testing.assert_close(out, torch.stack([expected_row, torch.ones(2), expected_row]))


def test_every_parameter_gets_a_gradient() -> None:
    net = TabularScoreNet(4, width=8, depth=2, embedding_size=8)
    film_on(net)
    net(torch.randn(6, 4), torch.tensor([0.5, 1.0, 2.0, 0.5, 1.0, 2.0])).square().sum().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_dropout_acts_only_in_training_mode() -> None:
    net = TabularScoreNet(4, width=16, depth=2, embedding_size=8, dropout=0.5)
    film_on(net)
    x, level = torch.randn(8, 4), torch.ones(8)
    net.eval()
    torch.testing.assert_close(net(x, level), net(x, level))
    net.train()
    assert not torch.equal(net(x, level), net(x, level))
