"""ImageQC: anomaly scores and predicted Dice for (image, segmentation mask) pairs.

The estimator contract only (fit / assess / save / load): files become arrays in
:mod:`segqc.data`, sources and splits in :mod:`segqc.data.grouping`, batches of
network passes in :mod:`segqc.scoremodels.batches`, the predicted-Dice estimator
and its teaching set in :mod:`segqc.quality`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segqc import bundle, noise
from segqc.config import ImageModelConfig, TrainingConfig, merged_config, read_mapping_file
from segqc.data.cases import prepare_dataset, stack, training_patches
from segqc.data.grouping import group_regex, source_groups, split_groups
from segqc.data.labels import check_labels_present
from segqc.data.pairing import pair_cases
from segqc.data.preprocess import PreprocessConfig
from segqc.detectors.base import BaseDetector
from segqc.errors import InputError, NotFittedError, SchemaError
from segqc.fitting.device import resolve_device
from segqc.fitting.trainer import StepInfo
from segqc.metrics import dice_per_class, mean_dice
from segqc.nets.memory import check_image_network
from segqc.quality import teaching
from segqc.quality.atlas import Atlas
from segqc.quality.calibration import LabelledCalibration, from_labelled
from segqc.quality.estimator import QualityEstimate, QualityEstimator
from segqc.quality.features import quality_features
from segqc.scoremodels.batches import as_pairs, in_batches
from segqc.scoremodels.image import RECONSTRUCTIONS, ImageScoreModel
from segqc.synthetic.corruptions import GRAFTS_PER_SEGMENTATION

logger = logging.getLogger(__name__)

MIN_CASES = 10
@dataclass
class Assessment:
    """What the model says about a batch of (image, mask) pairs.

    Attributes:
        scores: Anomaly scores (higher = more anomalous), ``(N,)``.
        norms: Squared score norm per level, ``(N, L)``.
        heat: Heat maps, ``(N, *spatial)``.
        reconstruction: segqc's own segmentation of each image (class indices), ``(N, *spatial)``.
        quality: Predicted Dice with interval, or ``None`` for a model without a quality estimator.
    """

    scores: np.ndarray
    norms: np.ndarray
    heat: np.ndarray
    reconstruction: np.ndarray
    quality: QualityEstimate | None


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
        quality_: Predicted-Dice estimator (``None`` with too few held-out sources).
        atlas_: Reference training pairs whose agreement with a prediction feeds
            the quality estimator (``None`` with ``atlas_size: 0``).
        bundle_: The bundle directory the detector was loaded from (set by :meth:`load`).
        model_id_: Short id of that bundle (:func:`segqc.bundle.model_id`; set by :meth:`load`).
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
            path: YAML / JSON config such as a preset file (:func:`segqc.presets.preset_path`); ``None`` for all
                defaults.
            labels: Label value of each class (default: learned from the masks).
            data: Preprocessing options overriding the file's ``data`` section (``None`` values ignored).
            training: Training options overriding the file's ``training`` section (``None`` values ignored).

        Returns:
            The detector.
        """
        sections = read_mapping_file(path, ("data", "model", "training"), "config file") if path else {}
        detector = cls(merged_config(ImageModelConfig, sections, "model", {}),
                       merged_config(TrainingConfig, sections, "training", training or {}), labels,
                       merged_config(PreprocessConfig, sections, "data", data or {}))
        detector.check_network(1, max(len(labels) if labels is not None else 2, 2))
        return detector

    def check_network(self, image_channels: int, num_classes: int, spatial_size: Sequence[int] | None = None) -> int:
        """Check, before any data are read, that the configured network can be built and trained here.

        Args:
            image_channels: Channels of the training images.
            num_classes: Classes of the masks.
            spatial_size: Size of the training arrays (default: ``data.spatial_size``).

        Returns:
            Training memory estimated for the network (bytes).

        Raises:
            ConfigError: The network settings are invalid for the data settings,
                or training would need more memory than the device has.
        """
        preprocess, training = self._preprocess_config, self._training_config
        size = tuple(spatial_size) if spatial_size is not None else preprocess.spatial_size
        return check_image_network(self._model_config.network, len(size), size, image_channels, num_classes,
                                   training.batch_size, resolve_device(training.device), training.amp)

    @property
    def _model_config(self) -> ImageModelConfig:
        return self.model or ImageModelConfig()

    @property
    def _preprocess_config(self) -> PreprocessConfig:
        return self.preprocess or PreprocessConfig()

    def fit_folders(self, images_dir: str | Path, masks_dir: str | Path,
                    on_case: Callable[[int, int], None] | None = None,
                    on_step: Callable[[StepInfo], None] | None = None, checkpoint_dir: str | Path | None = None,
                    resume: bool = False, group_pattern: str | None = None) -> ImageQC:
        """Pair, read and preprocess a labelled set of files, then :meth:`fit`.

        Args:
            images_dir: Folder of images (see :func:`segqc.data.images.pair_cases`).
            masks_dir: Folder of correct masks, paired with the images by case id.
            on_case: Progress callback ``(done, total)`` while files are prepared.
            on_step: Progress callback after each training step.
            checkpoint_dir: Directory for resumable checkpoints.
            resume: Continue from the checkpoint in ``checkpoint_dir``.
            group_pattern: Regular expression naming each case's source (see
                :func:`source_groups`); slices of one volume are always one source.

        Returns:
            self
        """
        group_regex(group_pattern)  # a bad pattern is refused before any file is read
        cases = pair_cases(Path(images_dir), Path(masks_dir))
        prepared, labels = prepare_dataset(cases, self._preprocess_config, self.labels, on_case)
        groups = source_groups(prepared, group_pattern)
        if self._preprocess_config.patches:
            images, masks, groups = training_patches(prepared, groups, self._preprocess_config.spatial_size)
        else:
            images, masks = stack(prepared)
        return self.fit(images, masks, labels, on_step, checkpoint_dir, resume, groups)

    def fit(self, images: Any, masks: Any, labels: Sequence[int] | None = None,
            on_step: Callable[[StepInfo], None] | None = None, checkpoint_dir: str | Path | None = None,
            resume: bool = False, groups: Sequence[Any] | None = None) -> ImageQC:
        """Learn what correct pairs look like, and how the model's view of a mask relates to its Dice.

        Validation cases (which also fit the density, the thresholds and the
        quality estimator) never share a source with training cases.

        Args:
            images: Preprocessed images, ``(N, C, *spatial)``.
            masks: Correct masks as class indices ``0..K-1``, ``(N, *spatial)``.
            labels: Label value of each class (overrides the constructor's).
            on_step: Progress callback, called after each training step.
            checkpoint_dir: Directory for resumable checkpoints.
            resume: Continue from the checkpoint in ``checkpoint_dir``.
            groups: Source of each case, ``(N,)`` (slices of a volume, tiles of an
                image, augmented copies); default: every case its own source.

        Returns:
            self
        """
        cfg, train_cfg = self._model_config, self._training_config
        images, masks = as_pairs(images, masks)
        if len(images) < MIN_CASES:
            raise InputError(f"{len(images)} training cases; need at least {MIN_CASES}")
        labels = labels if labels is not None else self.labels
        num_classes = len(labels) if labels is not None else int(masks.max()) + 1
        if int(masks.max()) >= num_classes or int(masks.min()) < 0:
            raise SchemaError(f"mask class indices must lie in 0..{num_classes - 1}, found {int(masks.min())}.."
                              f"{int(masks.max())}")
        if labels is not None:
            check_labels_present(labels, masks)
        self.labels_ = [int(v) for v in labels] if labels is not None else list(range(num_classes))
        groups = np.asarray([str(g) for g in groups] if groups is not None else np.arange(len(images)).astype(str))
        if len(groups) != len(images):
            raise SchemaError(f"{len(groups)} groups for {len(images)} cases")
        train_rows, val_rows = split_groups(groups, train_cfg.val_fraction, train_cfg.seed)
        self.check_network(images.shape[1], num_classes, masks.shape[1:])
        torch.manual_seed(train_cfg.seed)
        model = self._build(images.shape[1], num_classes, masks.ndim - 1, masks.shape[1])
        snapshots = self._train(model, (images, masks), train_rows, val_rows, train_cfg, on_step, checkpoint_dir,
                                resume, teaching.snapshot_steps(cfg.quality_snapshots, train_cfg.steps))
        self.training_.update(val_sources=len(set(groups[val_rows])), train_sources=len(set(groups[train_rows])))
        norms, _ = self.embed(images, masks)
        self.density_ = self._fit_density(norms[train_rows], train_cfg, cfg.max_components)
        self._calibrate(self.density_.score(norms), train_rows, val_rows, cfg.review_quantile, cfg.fail_quantile)
        self.atlas_ = (Atlas.sample(images[train_rows].numpy(), masks[train_rows].numpy(), num_classes,
                                    cfg.atlas_size, train_cfg.seed) if cfg.atlas_size else None)
        self.quality_ = None
        held_out_sources = len(set(groups[val_rows]))
        if held_out_sources >= teaching.MIN_SOURCES and len(val_rows) >= teaching.MIN_CASES:
            teachers = teaching.teaching_states(snapshots)
            per_case = cfg.degradations_per_case + len(teachers) * (1 + GRAFTS_PER_SEGMENTATION)
            rows = teaching.teaching_rows(val_rows, per_case, cfg.quality_examples, train_cfg.seed)
            self.reconstruction_, rebuilt = self._choose_reconstruction(images[rows], masks[rows])
            self.quality_ = self._fit_quality(images[rows], masks[rows], groups[rows], teachers, rebuilt)
        else:
            self.reconstruction_, _ = self._choose_reconstruction(images[val_rows], masks[val_rows])
            logger.warning("%d held-out case(s) from %d source(s): too few to fit the predicted-Dice estimator (need "
                           "%d from %d); verdicts will use the score thresholds", len(val_rows), held_out_sources,
                           teaching.MIN_CASES, teaching.MIN_SOURCES)
        return self

    def _choose_reconstruction(self, images: torch.Tensor, masks: torch.Tensor
                               ) -> tuple[dict[str, Any], np.ndarray | None]:
        """The way of segmenting images (:data:`RECONSTRUCTIONS`) that ``reconstruction`` names or, for
        ``auto``, the one whose masks of the held-out images agree best with their correct masks.

        Returns:
            The choice, and for ``auto`` the chosen way's class probabilities of ``images``
            ``(N, K, *spatial)`` (``None`` otherwise), so they need not be computed again.
        """
        method = self._model_config.reconstruction
        choice: dict[str, Any] = {"method": method if method != "auto" else "anneal"}
        if method != "auto" or not len(images):
            return choice, None
        num_classes = self.architecture_["num_classes"]
        truth = masks.numpy()
        held_out, probabilities = {}, {}
        for name in RECONSTRUCTIONS:
            probabilities[name] = self._reconstruct(images, name)
            rebuilt = probabilities[name].argmax(1)
            held_out[name] = float(mean_dice(dice_per_class(rebuilt, truth, num_classes), rebuilt, truth).mean())
        choice = {"method": max(held_out, key=held_out.get), "held_out_dice": held_out}
        logger.info("reconstruction: %s (held-out Dice %s)", choice["method"],
                    ", ".join(f"{k} {v:.3f}" for k, v in held_out.items()))
        return choice, probabilities[choice["method"]]

    def _fit_quality(self, images: torch.Tensor, masks: torch.Tensor, groups: np.ndarray,
                     teachers: list[dict[str, torch.Tensor] | None],
                     reconstruction: np.ndarray | None = None) -> QualityEstimator:
        """Fit the predicted-Dice estimator on masks of known quality made from held-out correct masks.

        They are graded synthetic degradations and the masks of the held-out
        images by each of ``teachers`` (:func:`~segqc.quality.teaching.teaching_states`),
        whole and grafted into the correct masks (:func:`~segqc.quality.teaching.teaching_set`).
        ``reconstruction`` holds the final network's class probabilities of
        ``images`` when they are already at hand.
        """
        cfg = self._model_config
        reconstruction = reconstruction if reconstruction is not None else self._reconstruct(images)
        segmentations = []
        for state in teachers:
            if state is None:
                segmentations.append(reconstruction.argmax(1))
                continue
            earlier = copy.deepcopy(self.model_)
            earlier.load_state_dict(state)
            segmentations.append(self._reconstruct(images, model=earlier).argmax(1))

        def describe(sources: np.ndarray, candidates: np.ndarray) -> np.ndarray:
            norms, heat = self.embed(images[sources], candidates)
            return self._quality_features(images[sources].numpy(), candidates, norms, heat, reconstruction[sources])

        return teaching.fit_quality_estimator(describe, masks.numpy(), segmentations, groups,
                                              cfg.degradations_per_case, self.architecture_["num_classes"],
                                              cfg.quality_coverage, self._training_config.seed)

    def _quality_features(self, images: np.ndarray, masks: np.ndarray, norms: np.ndarray, heat: np.ndarray,
                          reconstruction: np.ndarray) -> np.ndarray:
        """Features of the quality estimator (:func:`~segqc.quality.features.quality_features`), ``(N, F)``."""
        return quality_features(norms, self.density_.score(norms), heat, images, masks, reconstruction,
                                getattr(self, "atlas_", None))

    def _build(self, image_channels: int, num_classes: int, spatial_dims: int, input_size: int) -> ImageScoreModel:
        cfg = self._model_config
        taus = noise.geometric_levels(cfg.tau_max, cfg.tau_min, cfg.levels)
        betas = torch.linspace(cfg.beta_max, 0.0, cfg.levels)
        network = {**cfg.network, "input_size": input_size}
        self.architecture_ = {"image_channels": image_channels, "num_classes": num_classes,
                              "spatial_dims": spatial_dims, "input_size": input_size}
        return ImageScoreModel(spatial_dims, image_channels, num_classes, taus, betas, cfg.loss, cfg.delta, network)

    def _checked_pairs(self, images: Any, masks: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs as tensors, checked against the architecture (channels, dimensionality, classes)."""
        images, masks = as_pairs(images, masks)
        arch = self.architecture_
        if images.shape[1] != arch["image_channels"] or masks.ndim - 1 != arch["spatial_dims"]:
            raise SchemaError(f"the model expects {arch['image_channels']}-channel {arch['spatial_dims']}D images, "
                              f"got {images.shape[1]}-channel {masks.ndim - 1}D")
        if masks.numel() and int(masks.max()) >= arch["num_classes"]:
            raise SchemaError(f"mask class index {int(masks.max())} outside 0..{arch['num_classes'] - 1}")
        return images, masks

    def embed(self, images: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
        """Score-norm embeddings ``(N, L)`` and heat maps ``(N, *spatial)`` of pairs."""
        images, masks = self._checked_pairs(images, masks)
        parts = self._in_batches(lambda model, size, image, mask: model.embed(image, mask, size), images, masks)
        return (np.concatenate([norms.double().cpu().numpy() for norms, _ in parts]),
                np.concatenate([heat.float().cpu().numpy() for _, heat in parts]))

    def level_maps(self, images: Any, masks: Any) -> np.ndarray:
        """Squared score norm of every voxel at every level, ``(N, L, *spatial)`` float32 (sliding windows)."""
        images, masks = self._checked_pairs(images, masks)
        parts = self._in_batches(lambda model, size, image, mask: model.level_maps(image, mask, size), images, masks)
        return np.concatenate([maps.float().cpu().numpy() for maps in parts])

    def reconstruction(self, images: Any) -> np.ndarray:
        """Class probabilities ``(N, K, *spatial)`` of segqc's own segmentation of images ``(N, C, *spatial)``."""
        return self._reconstruct(torch.as_tensor(np.asarray(images), dtype=torch.float32))

    def _reconstruct(self, images: torch.Tensor, method: str | None = None,
                     model: ImageScoreModel | None = None) -> np.ndarray:
        """Class probabilities ``(N, K, *spatial)`` of segqc's own segmentation of each image.

        Args:
            images: ``(N, C, *spatial)``.
            method: A key of :data:`RECONSTRUCTIONS` (default: the one chosen at training time; ``anneal`` for
                bundles from before the choice).
            model: The network (default: the trained one).
        """
        seed = self._training_config.seed
        settings = RECONSTRUCTIONS[method or getattr(self, "reconstruction_", {}).get("method", "anneal")]
        parts = self._in_batches(
            lambda network, size, image: network.reconstruct(image, torch.Generator(image.device).manual_seed(seed),
                                                             size, **settings),
            images, model=model)
        return np.concatenate([part.cpu().numpy() for part in parts])

    def _in_batches(self, run: Callable[..., Any], *tensors: torch.Tensor,
                    model: ImageScoreModel | None = None) -> list[Any]:
        """:func:`~segqc.scoremodels.batches.in_batches` on the scoring device; ``model`` defaults to the trained
        network."""
        return in_batches(model or self.model_, run, tensors, self._model_config.score_batch_size,
                          self.scoring_device)

    def score_pairs(self, images: Any, masks: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Anomaly scores ``(N,)``, per-level norms ``(N, L)`` and heat maps ``(N, *spatial)``."""
        self._check_fitted()
        norms, heat = self.embed(images, masks)
        return self.density_.score(norms), norms, heat

    def assess(self, images: Any, masks: Any) -> Assessment:
        """Anomaly scores, heat maps, segqc's reconstruction and predicted Dice of pairs.

        Args:
            images: Preprocessed images, ``(N, C, *spatial)``.
            masks: Predicted masks as class indices, ``(N, *spatial)``.

        Returns:
            The :class:`Assessment` of every pair.
        """
        self._check_fitted()
        images, masks = as_pairs(images, masks)
        norms, heat = self.embed(images, masks)
        return self._assessment(images, masks, norms, heat, self._reconstruct(images))

    def assess_maps(self, images: Any, masks: Any, maps: np.ndarray, probabilities: np.ndarray) -> Assessment:
        """:meth:`assess` of pairs whose :meth:`level_maps` and :meth:`reconstruction` are known (sliding windows).

        Args:
            images: Preprocessed images, ``(N, C, *spatial)``.
            masks: Predicted masks as class indices, ``(N, *spatial)``.
            maps: Their level maps, ``(N, L, *spatial)``.
            probabilities: Their reconstruction's class probabilities, ``(N, K, *spatial)``.
        """
        self._check_fitted()
        images, masks = as_pairs(images, masks)
        norms, heat = self.model_.summarise(torch.as_tensor(maps))
        return self._assessment(images, masks, norms.double().numpy(), heat.float().numpy(), probabilities)

    def _assessment(self, images: torch.Tensor, masks: torch.Tensor, norms: np.ndarray, heat: np.ndarray,
                    probabilities: np.ndarray) -> Assessment:
        """Scores and predicted Dice from the model's view of pairs (embedding, heat, reconstruction)."""
        scores = self.density_.score(norms)
        estimate = None
        if getattr(self, "quality_", None) is not None:
            features = self._quality_features(images.numpy(), masks.numpy(), norms, heat, probabilities)
            # A bundle written before a feature group was added was fitted on the leading columns only.
            estimate = self.quality_.predict(features[:, :self.quality_.features_.shape[1]])
        return Assessment(scores, norms, heat, probabilities.argmax(1), estimate)

    def calibrate(self, images: Any, masks: Any, truths: Any, groups: Sequence[Any] | None = None,
                  coverage: float | None = None) -> LabelledCalibration:
        """Make the predicted-Dice intervals hold for a segmenter: calibrate them on its labelled cases.

        Intervals (and a bias correction) then come from these cases (:mod:`segqc.quality.calibration`); the
        regressor is unchanged. Save the result as a new bundle; ``segqc calibrate`` does this from files.

        Args:
            images: Preprocessed images, ``(N, C, *spatial)``.
            masks: The segmenter's masks as class indices, ``(N, *spatial)``.
            truths: Ground-truth class indices, ``(N, *spatial)``.
            groups: Source of each case (slices of a volume, tiles of an image stay on one side of every internal
                split); default: every case its own source.
            coverage: Nominal coverage; default: the current intervals'.

        Returns:
            What the calibration found (a warning below the recommended number of cases).

        Raises:
            NotFittedError: No quality estimator to calibrate.
            InputError: Fewer than :data:`~segqc.quality.calibration.MIN_LABELLED_CASES` cases.
        """
        images, masks = as_pairs(images, masks)
        truths = np.asarray(truths)
        per_class = dice_per_class(masks.numpy(), truths, self.architecture_["num_classes"])
        true = np.column_stack([mean_dice(per_class, masks.numpy(), truths), per_class])
        estimate = self.assess(images, masks).quality
        return self.calibrate_with(estimate, true, groups if groups is not None else np.arange(len(true)), coverage)

    def calibrate_with(self, estimate: QualityEstimate, true: np.ndarray, groups: Sequence[Any],
                       coverage: float | None = None) -> LabelledCalibration:
        """:meth:`calibrate` from assessed cases: their estimate and true Dice ``(N, K)`` (mean, then each class;
        NaN where unknown)."""
        if getattr(self, "quality_", None) is None:
            raise NotFittedError("this model has no predicted-Dice estimator to calibrate (too few held-out sources "
                                 "at training); retrain it with more cases")
        try:
            found = from_labelled(estimate.raw, true, estimate.spread, np.asarray(groups),
                                  coverage if coverage is not None else self.quality_.coverage)
        except ValueError as err:
            raise InputError(str(err)) from None
        self.quality_ = self.quality_.with_calibration(found.calibration)
        return found

    def decision_function(self, data: tuple[Any, Any]) -> np.ndarray:
        """Anomaly score per pair (higher = more anomalous); ``data = (images, masks)``."""
        return self.score_pairs(*data)[0]

    def save(self, path: str | Path) -> Path:
        """Write the fitted detector as a model bundle directory (atomic)."""
        self._check_fitted()
        metadata = {"architecture": self.architecture_, "labels": self.labels_,
                    "preprocess": dataclasses.asdict(self._preprocess_config),
                    "reconstruction": getattr(self, "reconstruction_", {"method": "anneal"})}
        estimator = getattr(self, "quality_", None)
        if estimator is not None:
            metadata["interval"] = estimator.calibration_.describe()
        extra = bundle.with_prefix("quality", estimator.to_arrays()) if estimator is not None else {}
        atlas = getattr(self, "atlas_", None)
        extra.update(bundle.with_prefix("atlas", atlas.to_arrays()) if atlas is not None else {})
        return self._write_bundle(path, "image", metadata, extra)

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
            detector.reconstruction_ = dict(meta.get("reconstruction", {"method": "anneal"}))
            if detector.reconstruction_["method"] not in RECONSTRUCTIONS:
                raise ValueError(f"unknown reconstruction {detector.reconstruction_['method']!r}")
            detector._restore(content, model)
            estimator = bundle.part("quality", content.arrays)
            detector.quality_ = QualityEstimator.from_arrays(estimator) if estimator else None
            atlas = bundle.part("atlas", content.arrays)
            detector.atlas_ = Atlas.from_arrays(atlas) if atlas else None
        detector.bundle_ = Path(path)
        detector.model_id_ = bundle.model_id(meta)
        return detector
