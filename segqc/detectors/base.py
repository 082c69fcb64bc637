"""What every segqc detector shares: thresholds, verdicts and ``predict``.

Contract (scikit-learn / PyOD): ``__init__`` stores its arguments only; ``fit``
returns ``self``; fitted attributes end in ``_``; ``decision_function`` gives
anomaly scores where higher means more anomalous; ``predict`` gives 1 for an
anomaly (score above ``threshold_``) and 0 otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segqc import bundle
from segqc.config import TrainingConfig
from segqc.density import EmbeddingDensity
from segqc.errors import BundleError, NotFittedError
from segqc.fitting.device import resolve_device
from segqc.fitting.trainer import StepInfo, Trainer, typical_mask
from segqc.verdicts import Calibration

logger = logging.getLogger(__name__)


class BaseDetector:
    """Shared behaviour; subclasses implement ``fit`` and ``decision_function``."""

    calibration_: Calibration
    training: TrainingConfig | None

    @property
    def _training_config(self) -> TrainingConfig:
        return self.training or TrainingConfig()

    @property
    def scoring_device(self) -> torch.device:
        """Where the detector computes: its training config's device (``auto``: CUDA when there is one)."""
        return resolve_device(self._training_config.device)

    def _check_fitted(self) -> None:
        if not hasattr(self, "calibration_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted; call fit() or load() first")

    def decision_function(self, data: Any) -> np.ndarray:  # pragma: no cover - abstract
        """Anomaly score per sample (higher = more anomalous)."""
        raise NotImplementedError

    @property
    def threshold_(self) -> float:
        """Score above which a sample is an anomaly (the ``review`` threshold)."""
        self._check_fitted()
        return self.calibration_.review

    def predict(self, data: Any) -> np.ndarray:
        """1 for anomalies (score above ``threshold_``), 0 for inliers."""
        return (self.decision_function(data) > self.threshold_).astype(np.int64)

    def _train(self, model: nn.Module, tensors: tuple[torch.Tensor, ...], train_rows: np.ndarray,
               val_rows: np.ndarray, config: TrainingConfig, on_step: Callable[[StepInfo], None] | None,
               checkpoint_dir: str | Path | None, resume: bool,
               snapshot_steps: Sequence[int] = ()) -> dict[int, dict[str, torch.Tensor]]:
        """Train ``model`` on the selected rows; sets ``model_`` (best EMA weights) and ``training_``.

        Returns:
            The EMA weights at each of ``snapshot_steps`` (see :class:`~segqc.fitting.trainer.Trainer`).
        """
        result = Trainer(model, config, checkpoint_dir, on_step, snapshot_steps).fit(
            tuple(t[train_rows] for t in tensors),
            tuple(t[val_rows] for t in tensors) if len(val_rows) else None, resume=resume)
        model.load_state_dict(result.state_dict)
        self.model_ = model.eval()
        self.training_ = {"steps": config.steps, "best_step": result.best_step,
                          "best_val_loss": result.best_val_loss, "seconds": result.seconds,
                          "history": result.history, "train_rows": len(train_rows), "val_rows": len(val_rows)}
        return result.snapshots

    @staticmethod
    def _fit_density(train_norms: np.ndarray, config: TrainingConfig, max_components: int) -> EmbeddingDensity:
        """Density of training embeddings; with contaminated data only of the rows the teacher keeps."""
        if config.contaminated:
            keep = typical_mask(torch.from_numpy(train_norms.sum(1)), config.filter_keep)
            train_norms = train_norms[keep.numpy()]
        return EmbeddingDensity(max_components, seed=config.seed).fit(train_norms)

    def _calibrate(self, scores: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray,
                   review_quantile: float, fail_quantile: float) -> None:
        """Set ``decision_scores_`` and thresholds from held-out (validation) scores."""
        self.decision_scores_ = scores
        if not len(val_rows):
            logger.warning("no validation samples (val_fraction=0): thresholds are calibrated on training samples")
        held_out = val_rows if len(val_rows) else train_rows
        self.calibration_ = Calibration.from_scores(scores[held_out], review_quantile, fail_quantile)

    def _write_bundle(self, path: str | Path, mode: str, metadata: dict[str, Any],
                      extra_arrays: dict[str, np.ndarray] | None = None) -> Path:
        """Write configs, calibration, training summary, weights and density plus ``metadata`` and ``extra_arrays``."""
        self._check_fitted()
        common = {
            "model": dataclasses.asdict(self._model_config),
            "training": dataclasses.asdict(self._training_config),
            "calibration": dataclasses.asdict(self.calibration_),
            "training_summary": {k: v for k, v in self.training_.items() if k != "history"},
            "history": self.training_["history"],
        }
        arrays = bundle.with_prefix("density", self.density_.to_arrays()) if hasattr(self, "density_") else {}
        arrays["decision_scores"] = self.decision_scores_
        arrays.update(extra_arrays or {})
        return bundle.write_bundle(path, mode, {**common, **metadata}, self.model_.state_dict(), arrays)

    @staticmethod
    @contextmanager
    def _bundle_errors(path: str | Path) -> Iterator[None]:
        """Report inconsistent bundle contents as a BundleError naming the bundle."""
        try:
            yield
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise BundleError(f"{path}: inconsistent bundle contents ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from None

    @staticmethod
    def _saved_training(metadata: dict[str, Any], device: str | None) -> TrainingConfig:
        """The training config stored in a bundle, with ``device`` (when given) replacing the saved one."""
        return TrainingConfig(**{**metadata["training"], **({"device": device} if device else {})})

    def _restore(self, content: bundle.Bundle, model: nn.Module) -> None:
        """Set the fitted attributes shared by every detector from a read bundle."""
        meta = content.metadata
        model.load_state_dict(content.tensors)
        self.model_ = model.eval()
        self.calibration_ = Calibration(**meta["calibration"])
        if not math.isfinite(self.calibration_.review):
            raise ValueError("calibration thresholds are not finite")
        self.training_ = {**meta["training_summary"], "history": meta.get("history", [])}
        self.decision_scores_ = content.arrays["decision_scores"]
        density = bundle.part("density", content.arrays)
        if density:
            self.density_ = EmbeddingDensity.from_arrays(density)

    def verdicts(self, scores: np.ndarray) -> np.ndarray:
        """``pass`` / ``review`` / ``fail`` for precomputed scores."""
        self._check_fitted()
        return self.calibration_.verdicts(scores)
