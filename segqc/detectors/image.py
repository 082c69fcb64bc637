"""ImageQC: anomaly scores for (image, segmentation mask) pairs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from segqc import bundle, noise
from segqc.config import ImageModelConfig, TrainingConfig, merged_config, read_mapping_file
from segqc.data.images import pair_cases
from segqc.data.preprocess import PreprocessConfig, prepare_dataset, stack
from segqc.detectors.base import BaseDetector, split_rows
from segqc.errors import InputError, SchemaError
from segqc.scoremodels.image import ImageScoreModel
from segqc.train import StepInfo, resolve_device

if TYPE_CHECKING:
    from segqc.scoring import ScoreRun

MIN_CASES = 10


def _as_tensors(images: Any, masks: Any) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    masks = torch.as_tensor(np.asarray(masks)).long()
    if images.ndim not in (4, 5) or masks.shape != images.shape[:1] + images.shape[2:]:
        raise SchemaError(f"expected images (N, C, *spatial) and masks (N, *spatial) with the same N and spatial "
                          f"shape, got {tuple(images.shape)} and {tuple(masks.shape)}")
    return images, masks


class ImageQC(BaseDetector):
    """GNSM quality control of segmentation masks, conditioned on their images.

    Args:
        model: Score model, noise schedule and scoring settings.
        training: Optimisation settings.
        labels: Label values of the mask classes (class ``k`` is ``labels[k]``);
            stored in the bundle. Default: learned from the training masks
            (:meth:`fit_folders`) or ``0..K-1`` (:meth:`fit`).
        preprocess: How files become model inputs; stored in the bundle so that
            scoring prepares files exactly as training did.

    Attributes:
        model_: The trained score model (EMA weights of the best checkpoint).
        density_: Density of the multiscale score-norm embedding.
        calibration_: Review / fail thresholds from held-out pairs.
        decision_scores_: Anomaly scores of the training pairs.
        labels_: Label value of each class.
        bundle_: The bundle directory the detector was loaded from (set by :meth:`load`).
        training_: Summary of the training run.
    """

    def __init__(self, model: ImageModelConfig | None = None, training: TrainingConfig | None = None,
                 labels: Sequence[int] | None = None, preprocess: PreprocessConfig | None = None) -> None:
        self.model = model
        self.training = training
        self.labels = labels
        self.preprocess = preprocess

    @classmethod
    def from_config(cls, path: str | Path | None, labels: Sequence[int] | None = None,
                    data: dict[str, Any] | None = None, training: dict[str, Any] | None = None) -> ImageQC:
        """An unfitted detector from a config file (``data``, ``model``, ``training`` sections).

        Args:
            path: YAML / JSON config such as ``configs/image2d-small.yaml``; ``None`` for all defaults.
            labels: Label value of each class (default: learned from the masks).
            data: Preprocessing options overriding the file's ``data`` section (``None`` values ignored).
            training: Training options overriding the file's ``training`` section (``None`` values ignored).

        Returns:
            The detector.
        """
        sections = read_mapping_file(path, ("data", "model", "training"), "config file") if path else {}
        return cls(merged_config(ImageModelConfig, sections, "model", {}),
                   merged_config(TrainingConfig, sections, "training", training or {}), labels,
                   merged_config(PreprocessConfig, sections, "data", data or {}))

    @property
    def _model_config(self) -> ImageModelConfig:
        return self.model or ImageModelConfig()

    @property
    def _preprocess_config(self) -> PreprocessConfig:
        return self.preprocess or PreprocessConfig()

    def fit_folders(self, images_dir: str | Path, masks_dir: str | Path,
                    on_case: Callable[[int, int], None] | None = None,
                    on_step: Callable[[StepInfo], None] | None = None, checkpoint_dir: str | Path | None = None,
                    resume: bool = False) -> ImageQC:
        """Pair, read and preprocess a labelled set of files, then :meth:`fit`.

        Args:
            images_dir: Folder of images (see :func:`segqc.data.images.pair_cases`).
            masks_dir: Folder of correct masks, paired with the images by case id.
            on_case: Progress callback ``(done, total)`` while files are prepared.
            on_step: Progress callback after each training step.
            checkpoint_dir: Directory for resumable checkpoints.
            resume: Continue from the checkpoint in ``checkpoint_dir``.

        Returns:
            self
        """
        cases = pair_cases(Path(images_dir), Path(masks_dir))
        prepared, labels = prepare_dataset(cases, self._preprocess_config, self.labels, on_case)
        images, masks = stack(prepared)
        return self.fit(images, masks, labels, on_step, checkpoint_dir, resume)

    def fit(self, images: Any, masks: Any, labels: Sequence[int] | None = None,
            on_step: Callable[[StepInfo], None] | None = None, checkpoint_dir: str | Path | None = None,
            resume: bool = False) -> ImageQC:
        """Learn what correct pairs look like.

        Args:
            images: Preprocessed images, ``(N, C, *spatial)``.
            masks: Correct masks as class indices ``0..K-1``, ``(N, *spatial)``.
            labels: Label value of each class (overrides the constructor's).
            on_step: Progress callback, called after each training step.
            checkpoint_dir: Directory for resumable checkpoints.
            resume: Continue from the checkpoint in ``checkpoint_dir``.

        Returns:
            self
        """
        cfg, train_cfg = self._model_config, self._training_config
        images, masks = _as_tensors(images, masks)
        if len(images) < MIN_CASES:
            raise InputError(f"{len(images)} training cases; need at least {MIN_CASES}")
        labels = labels if labels is not None else self.labels
        num_classes = len(labels) if labels is not None else int(masks.max()) + 1
        if int(masks.max()) >= num_classes or int(masks.min()) < 0:
            raise SchemaError(f"mask class indices must lie in 0..{num_classes - 1}, found {int(masks.min())}.."
                              f"{int(masks.max())}")
        self.labels_ = [int(v) for v in labels] if labels is not None else list(range(num_classes))
        train_rows, val_rows = split_rows(len(images), train_cfg.val_fraction, train_cfg.seed)
        torch.manual_seed(train_cfg.seed)
        model = self._build(images.shape[1], num_classes, masks.ndim - 1, masks.shape[1])
        self._train(model, (images, masks), train_rows, val_rows, train_cfg, on_step, checkpoint_dir, resume)
        norms, _ = self.embed(images, masks)
        self.density_ = self._fit_density(norms[train_rows], train_cfg, cfg.max_components)
        self._calibrate(self.density_.score(norms), train_rows, val_rows, cfg.review_quantile, cfg.fail_quantile)
        return self

    def _build(self, image_channels: int, num_classes: int, spatial_dims: int, input_size: int) -> ImageScoreModel:
        cfg = self._model_config
        taus = noise.geometric_levels(cfg.tau_max, cfg.tau_min, cfg.levels)
        betas = torch.linspace(cfg.beta_max, 0.0, cfg.levels)
        network = {**cfg.network, "input_size": input_size}
        self.architecture_ = {"image_channels": image_channels, "num_classes": num_classes,
                              "spatial_dims": spatial_dims, "input_size": input_size}
        return ImageScoreModel(spatial_dims, image_channels, num_classes, taus, betas, cfg.loss, cfg.delta, network)

    @torch.no_grad()
    def embed(self, images: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
        """Score-norm embeddings ``(N, L)`` and heat maps ``(N, *spatial)`` of pairs."""
        images, masks = _as_tensors(images, masks)
        arch = self.architecture_
        if images.shape[1] != arch["image_channels"] or masks.ndim - 1 != arch["spatial_dims"]:
            raise SchemaError(f"the model expects {arch['image_channels']}-channel {arch['spatial_dims']}D images, "
                              f"got {images.shape[1]}-channel {masks.ndim - 1}D")
        if masks.numel() and int(masks.max()) >= arch["num_classes"]:
            raise SchemaError(f"mask class index {int(masks.max())} outside 0..{arch['num_classes'] - 1}")
        device = resolve_device(self._training_config.device)
        model = self.model_.to(device).eval()
        size = self._model_config.score_batch_size
        norms, heat = [], []
        # Full fp32 convolutions: with cuDNN's TF32 GPU scores drifted from CPU scores by ~4 % of their spread.
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            for start in range(0, len(images), size):
                batch_norms, batch_heat = model.embed(images[start:start + size].to(device),
                                                      masks[start:start + size].to(device))
                norms.append(batch_norms.double().cpu().numpy())
                heat.append(batch_heat.float().cpu().numpy())
        return np.concatenate(norms), np.concatenate(heat)

    def score_pairs(self, images: Any, masks: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Anomaly scores ``(N,)``, per-level norms ``(N, L)`` and heat maps ``(N, *spatial)``."""
        self._check_fitted()
        norms, heat = self.embed(images, masks)
        return self.density_.score(norms), norms, heat

    def decision_function(self, data: tuple[Any, Any]) -> np.ndarray:
        """Anomaly score per pair (higher = more anomalous); ``data = (images, masks)``."""
        return self.score_pairs(*data)[0]

    def save(self, path: str | Path) -> Path:
        """Write the fitted detector as a model bundle directory (atomic)."""
        self._check_fitted()
        metadata = {"architecture": self.architecture_, "labels": self.labels_,
                    "preprocess": dataclasses.asdict(self._preprocess_config)}
        return self._write_bundle(path, "image", metadata)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> ImageQC:
        """Read a detector saved with :meth:`save`.

        Args:
            path: The bundle directory.
            device: Device for scoring (``auto``, ``cpu``, ``cuda``); default: as trained.
        """
        content = bundle.read_bundle(path, "image")
        meta = content.metadata
        with cls._bundle_errors(path):
            detector = cls(ImageModelConfig(**meta["model"]), cls._saved_training(meta, device), meta["labels"],
                           PreprocessConfig(**meta["preprocess"]))
            arch = meta["architecture"]
            model = detector._build(arch["image_channels"], arch["num_classes"], arch["spatial_dims"],
                                    arch["input_size"])
            detector.labels_ = list(meta["labels"])
            detector._restore(content, model)
        detector.bundle_ = Path(path)
        return detector

    def score_folder(self, predictions: str | Path, images: str | Path, out: str | Path,
                     **options: Any) -> ScoreRun:
        """Score a folder of predicted masks and write a report (see :func:`segqc.scoring.score_folder`).

        Args:
            predictions: Folder of predicted masks.
            images: Folder of the matching images.
            out: Report directory.
            **options: Fields of :class:`segqc.scoring.ScoreOptions` (ground_truth, top_k, fail_on, ...).

        Returns:
            A :class:`segqc.scoring.ScoreRun` (table, summary, report path, exit code).
        """
        from segqc.scoring import ScoreOptions, score_folder

        return score_folder(self, predictions, images, out, ScoreOptions(**options))
