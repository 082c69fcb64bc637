"""TabularScoreModel ensembles: scores from the members' mean noise estimate, loss = the members' mean loss."""

from __future__ import annotations

import pytest
import torch

from segqc.scoremodels.tabular import TabularScoreModel


def _model(categorical_noise: str, members: int) -> TabularScoreModel:
    torch.manual_seed(0)
    return TabularScoreModel([2, 3, 3], torch.tensor([2.0, 1.0, 0.5]), torch.full((3, 2), 0.5), width=16, depth=1,
                             embedding_size=8, categorical_noise=categorical_noise, members=members)


def _member(ensemble: TabularScoreModel, index: int, categorical_noise: str) -> TabularScoreModel:
    single = _model(categorical_noise, 1)
    single.nets[0].load_state_dict(ensemble.nets[index].state_dict())
    return single


@pytest.mark.parametrize("categorical_noise", ["gaussian", "gumbel"])
def test_ensemble_scores_and_loss_average_its_members(categorical_noise: str) -> None:
    ensemble = _model(categorical_noise, 2)
    with torch.no_grad():
        for parameter in ensemble.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    members = [_member(ensemble, index, categorical_noise) for index in range(2)]
    codes = torch.stack([torch.randint(0, k, (7,)) for k in (2, 3, 3)], 1)
    continuous = torch.randn(7, 2)
    with torch.no_grad():
        norms = [model.variable_norms(codes, continuous) for model in members]
        assert not torch.allclose(norms[0], norms[1])
        level = torch.randint(0, 3, (7,))
        if categorical_noise == "gaussian":  # scores are linear in the noise estimate
            torch.testing.assert_close(ensemble.slot_scores(codes, continuous, level),
                                       sum(model.slot_scores(codes, continuous, level) for model in members) / 2)
        twins = _model(categorical_noise, 2)
        for net in twins.nets:
            net.load_state_dict(ensemble.nets[0].state_dict())
        torch.testing.assert_close(twins.variable_norms(codes, continuous), norms[0])
        losses = [model(codes, continuous, torch.Generator().manual_seed(1)) for model in [ensemble, *members]]
    torch.testing.assert_close(losses[0], (losses[1] + losses[2]) / 2)
