"""One trainer for every score model (tabular and image).

A score model is an ``nn.Module`` whose ``forward(*batch, generator=g)`` returns
the per-sample denoising loss ``(B,)``; with ``contaminated`` training it also
offers ``filter_norms(*batch, generator=g) -> (B,)``. The data are tensors held
in memory (one tuple of ``(N, ...)`` tensors); batches are drawn at random with
replacement from a seeded generator, so a CPU run is reproducible and a resumed
run continues exactly where the checkpoint left it.

Features: AdamW, cosine learning rate, EMA of the weights (the EMA model is what
gets validated, selected and returned), gradient clipping, validation with
best-checkpoint selection, periodic atomic checkpoints and resume, bfloat16
autocast on CUDA, EMA-teacher filtering (K-DSM) and PyTorch DDP when run under
``torchrun`` (each process draws its own batches; gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from segqc.config import TrainingConfig
from segqc.errors import InputError
from segqc.fitting.checkpoints import CHECKPOINT_NAME
from segqc.fitting.device import distributed_context, resolve_device
from segqc.outputs import owned_member
from segqc.torchfile import load_torch_file

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, ...]


@dataclass
class StepInfo:
    """What a progress callback is told after each step."""

    step: int
    total: int
    loss: float
    val_loss: float | None
    elapsed: float


@dataclass
class TrainResult:
    """Outcome of training.

    Attributes:
        state_dict: Weights of the selected EMA model (best validation loss).
        best_step: Step of the selected weights.
        best_val_loss: Its validation loss (``nan`` without validation data).
        history: One dict per validation: step, train_loss, val_loss.
        seconds: Wall time of the training loop.
        snapshots: EMA weights (on the CPU) at each of the trainer's ``snapshot_steps``.
    """

    state_dict: dict[str, torch.Tensor]
    best_step: int
    best_val_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


def typical_mask(norms: torch.Tensor, keep: float) -> torch.Tensor:
    """The EMA-teacher rule: keep the ``keep`` fraction of samples with the lowest score norms.

    Args:
        norms: Score norms, shape ``(N,)``.
        keep: Fraction kept, in ``(0, 1]``.

    Returns:
        Boolean mask of shape ``(N,)``.
    """
    return norms <= torch.quantile(norms, keep)


class Trainer:
    """Trains a score model on in-memory tensors.

    Args:
        model: Score model; ``forward(*batch, generator=g)`` returns ``(B,)`` losses.
        config: Optimisation settings.
        checkpoint_dir: Where ``last.pt`` is written every ``checkpoint_every``
            steps (rank 0 only); ``None`` disables checkpoints.
        on_step: Called after every step with a :class:`StepInfo` (rank 0 only).
        snapshot_steps: Steps after which a copy of the EMA weights is kept
            (:attr:`TrainResult.snapshots`; they survive a resume): the same
            network earlier in training, a weaker segmenter whose mistakes teach
            the quality estimator.
    """

    def __init__(self, model: nn.Module, config: TrainingConfig, checkpoint_dir: str | Path | None = None,
                 on_step: Callable[[StepInfo], None] | None = None, snapshot_steps: Sequence[int] = ()) -> None:
        self.config = config
        self.snapshot_steps = frozenset(int(step) for step in snapshot_steps)
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.on_step = on_step
        self.rank, self.world_size = distributed_context()

    def _autocast(self):
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _ema_update(self, ema: nn.Module, step: int) -> None:
        decay = min(self.config.ema_decay, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            for ema_p, p in zip(ema.parameters(), self.model.parameters()):
                ema_p.lerp_(p.detach(), 1.0 - decay)

    @torch.no_grad()
    def validation_loss(self, model: nn.Module, data: Batch) -> float:
        """Mean loss of ``model`` on ``data`` with fixed noise (seeded by the config)."""
        model.eval()
        generator = torch.Generator(self.device).manual_seed(self.config.seed + 12345)
        total, count = 0.0, 0
        size = data[0].shape[0]
        for start in range(0, size, self.config.batch_size):
            batch = tuple(t[start:start + self.config.batch_size] for t in data)
            with self._autocast():
                loss = model(*batch, generator=generator)
            total += float(loss.float().sum())
            count += loss.shape[0]
        return total / max(count, 1)

    def _sample_batch(self, data: Batch, generator: torch.Generator) -> Batch:
        index = torch.randint(data[0].shape[0], (self.config.batch_size,), generator=generator,
                              device=self.device)
        return tuple(t[index] for t in data)

    def fit(self, train: Batch, val: Batch | None = None, resume: bool = False) -> TrainResult:
        """Run the optimisation.

        Args:
            train: Training tensors, each ``(N, ...)``.
            val: Validation tensors, each ``(N_val, ...)``, or ``None``.
            resume: Continue from ``checkpoint_dir/last.pt`` when it exists; when it does not, a warning
                says so and training starts at step 0.

        Returns:
            The selected EMA weights and the training history.
        """
        cfg = self.config
        if train[0].shape[0] == 0:
            raise InputError("no training samples")
        train = tuple(t.to(self.device) for t in train)
        val = tuple(t.to(self.device) for t in val) if val is not None and val[0].shape[0] else None
        ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.steps, eta_min=cfg.lr_min)
        generator = torch.Generator(self.device).manual_seed(cfg.seed * 1000 + self.rank)
        state = {"step": 0, "best_val": math.inf, "best_step": 0, "best_state": None, "history": [], "snapshots": {}}
        if resume:
            self._load_checkpoint(ema, optimizer, scheduler, generator, state)
        wrapped = self.model
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        warmup = int(cfg.filter_warmup * cfg.steps) if cfg.contaminated else cfg.steps
        started, running = time.perf_counter(), math.nan
        self.model.train()
        for step in range(state["step"], cfg.steps):
            batch = self._sample_batch(train, generator)
            if step >= warmup:
                with torch.no_grad(), self._autocast():
                    norms = ema.filter_norms(*batch, generator=generator).float()
                keep = typical_mask(norms, cfg.filter_keep)
                batch = tuple(t[keep] for t in batch)
            with self._autocast():
                loss = wrapped(*batch, generator=generator).float().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            self._ema_update(ema, step)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} at step {step + 1}; "
                                         "lower training.lr or raise the smallest noise level")
            running = value if math.isnan(running) else 0.98 * running + 0.02 * value
            done = step + 1
            if done in self.snapshot_steps:
                state["snapshots"][done] = {k: v.detach().cpu().clone() for k, v in ema.state_dict().items()}
            val_loss = None
            if done % cfg.val_every == 0 or done == cfg.steps:
                val_loss = self._validate(ema, val, done, running, state)
                self.model.train()
            if self.checkpoint_dir and cfg.checkpoint_every and self.rank == 0 and (
                    done % cfg.checkpoint_every == 0 or done == cfg.steps):
                state["step"] = done
                self._save_checkpoint(ema, optimizer, scheduler, generator, state)
            if self.on_step and self.rank == 0:
                self.on_step(StepInfo(done, cfg.steps, running, val_loss, time.perf_counter() - started))
        best = state["best_state"] if state["best_state"] is not None else ema.state_dict()
        return TrainResult({k: v.detach().cpu().clone() for k, v in best.items()}, state["best_step"] or cfg.steps,
                           state["best_val"] if val is not None else math.nan, state["history"],
                           time.perf_counter() - started, dict(state["snapshots"]))

    def _validate(self, ema: nn.Module, val: Batch | None, step: int, running: float, state: dict) -> float | None:
        val_loss = self.validation_loss(ema, val) if val is not None else None
        state["history"].append({"step": step, "train_loss": running,
                                 "val_loss": val_loss if val_loss is not None else math.nan})
        score = val_loss if val_loss is not None else -step  # without validation: keep the latest
        if score < state["best_val"] or val_loss is None:
            state["best_val"] = score
            state["best_step"] = step
            state["best_state"] = {k: v.detach().clone() for k, v in ema.state_dict().items()}
        logger.info("step %d: train loss %.4f, val loss %s", step, running,
                    f"{val_loss:.4f}" if val_loss is not None else "n/a")
        return val_loss

    def _save_checkpoint(self, ema: nn.Module, optimizer, scheduler, generator: torch.Generator, state: dict) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "model": self.model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "generator": generator.get_state().cpu(),
            "step": state["step"], "best_val": state["best_val"], "best_step": state["best_step"],
            "best_state": state["best_state"], "history": state["history"], "snapshots": state["snapshots"],
        }
        with owned_member(self.checkpoint_dir, CHECKPOINT_NAME) as temporary:
            torch.save(payload, temporary)

    def _load_checkpoint(self, ema: nn.Module, optimizer, scheduler, generator: torch.Generator, state: dict) -> None:
        path = self.checkpoint_dir / CHECKPOINT_NAME if self.checkpoint_dir else None
        if path is None or not path.is_file():
            if self.rank == 0:  # a warning, shown on the terminal: the user asked to resume and this run will not
                logger.warning("no checkpoint at %s to resume from; training starts at step 0",
                               path if path is not None else "(no checkpoint folder given)")
            return
        payload = load_torch_file(path, "a segqc training checkpoint", "delete it to start over")
        try:
            self.model.load_state_dict(payload["model"])
            ema.load_state_dict(payload["ema"])
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
            generator.set_state(payload["generator"].to(generator.get_state().device))
            for key in ("step", "best_val", "best_step", "best_state", "history"):
                state[key] = payload[key]
            state["snapshots"] = payload.get("snapshots", {})  # absent from checkpoints of segqc <= 0.1.0 runs
            if not 0 <= int(state["step"]) <= self.config.steps:
                raise ValueError(f"step {state['step']} outside 0..{self.config.steps}")
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as err:
            reason = " ".join(str(err).split())[:160] or type(err).__name__
            raise InputError(f"{path}: cannot resume from this checkpoint; it does not fit this run ({reason}); "
                             "delete it to start over") from None
        logger.info("resuming from step %d", state["step"])
