"""The shared trainer: learning, reproducibility, resume, filtering, checkpoints."""

from __future__ import annotations

import logging

import torch

from segqc.config import TrainingConfig
from segqc.fitting.checkpoints import CHECKPOINT_NAME
from segqc.fitting.trainer import Trainer
from segqc.noise import geometric_levels
from segqc.scoremodels.tabular import TabularScoreModel


def make_model(seed: int = 0) -> TabularScoreModel:
    torch.manual_seed(seed)
    return TabularScoreModel([3, 4], geometric_levels(20, 2, 4), geometric_levels(1, 0.1, 4)[:, None],
                             width=32, depth=1, embedding_size=16)


def make_data(n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, 3, (n,), generator=generator)
    return torch.stack([a, a + 1], 1), a[:, None].float() + 0.1 * torch.randn(n, 1, generator=generator)


def config(**changes) -> TrainingConfig:
    return TrainingConfig(**{"steps": 60, "batch_size": 64, "lr": 3e-3, "val_every": 20, "checkpoint_every": 20,
                             "device": "cpu", **changes})


def test_training_reduces_the_validation_loss() -> None:
    data, model = make_data(), make_model()
    trainer = Trainer(model, config(steps=150, val_every=25))
    before = trainer.validation_loss(model, data)
    result = trainer.fit(data, data)
    losses = [h["val_loss"] for h in result.history]
    assert losses[-1] < 0.9 * before
    assert result.best_val_loss == min(losses)
    assert result.best_step == result.history[losses.index(min(losses))]["step"]


def test_runs_are_reproducible_with_a_seed() -> None:
    data = make_data()
    first = Trainer(make_model(), config()).fit(data, data).state_dict
    second = Trainer(make_model(), config()).fit(data, data).state_dict
    for key in first:
        torch.testing.assert_close(first[key], second[key])


def test_resume_continues_exactly_where_the_checkpoint_left(tmp_path) -> None:
    data = make_data()
    straight = Trainer(make_model(), config()).fit(data, data)
    Trainer(make_model(), config(steps=60), tmp_path).fit(data, data)
    checkpoint = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert checkpoint["step"] == 60
    # Interrupted after 40 steps: rebuild the checkpoint of step 40, then resume.
    partial = tmp_path / "partial"
    trainer = Trainer(make_model(), config(steps=60, checkpoint_every=20), partial)
    _run_until(trainer, data, stop_after=40)
    resumed = Trainer(make_model(seed=99), config(), partial).fit(data, data, resume=True)
    for key in straight.state_dict:
        torch.testing.assert_close(straight.state_dict[key], resumed.state_dict[key])


def test_resume_without_a_checkpoint_warns_and_starts_at_step_0(tmp_path, caplog) -> None:
    data = make_data()
    with caplog.at_level(logging.WARNING, logger="segqc"):
        result = Trainer(make_model(), config(steps=20, checkpoint_every=0), tmp_path / "none").fit(data, data,
                                                                                                  resume=True)
    warned = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert [record.getMessage() for record in warned] == [
        f"no checkpoint at {tmp_path / 'none' / CHECKPOINT_NAME} to resume from; training starts at step 0"]
    assert result.history[0]["step"] == 20
    caplog.clear()
    Trainer(make_model(), config(steps=20, checkpoint_every=0), tmp_path / "none").fit(data, data)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]  # no resume asked


def test_snapshots_are_the_ema_weights_of_their_step_and_survive_a_resume(tmp_path) -> None:
    data = make_data()
    straight = Trainer(make_model(), config(steps=60), snapshot_steps=(10, 30)).fit(data, data)
    shorter = Trainer(make_model(), config(steps=60), snapshot_steps=()).fit(data, data)
    assert sorted(straight.snapshots) == [10, 30] and not shorter.snapshots
    partial = tmp_path / "partial"
    interrupted = Trainer(make_model(), config(steps=60, checkpoint_every=20), partial, snapshot_steps=(10, 30))
    _run_until(interrupted, data, stop_after=40)
    resumed = Trainer(make_model(seed=99), config(), partial, snapshot_steps=(10, 30)).fit(data, data, resume=True)
    for step in (10, 30):
        for key, value in straight.snapshots[step].items():
            torch.testing.assert_close(resumed.snapshots[step][key], value)
    assert any(not torch.equal(straight.snapshots[10][k], straight.state_dict[k]) for k in straight.state_dict)


def _run_until(trainer: Trainer, data, stop_after: int) -> None:
    """Run a trainer and kill it (KeyboardInterrupt) after ``stop_after`` steps."""

    def on_step(info) -> None:
        if info.step == stop_after:
            raise KeyboardInterrupt

    trainer.on_step = on_step
    try:
        trainer.fit(data, data)
    except KeyboardInterrupt:
        pass


def test_ema_teacher_filtering_trains() -> None:
    data = make_data()
    result = Trainer(make_model(), config(contaminated=True, filter_warmup=0.2)).fit(data, data)
    assert all(torch.isfinite(v).all() for v in result.state_dict.values())


def test_without_validation_the_last_weights_are_kept() -> None:
    result = Trainer(make_model(), config(steps=30, val_every=10)).fit(make_data(), None)
    assert result.best_step == 30
