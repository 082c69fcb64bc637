"""ImageQC: anomaly scores and predicted Dice for (image, segmentation mask) pairs."""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segqc import bundle, degradations, noise, quality
from segqc.atlas import Atlas
from segqc.config import ImageModelConfig, TrainingConfig, merged_config, read_mapping_file
from segqc.data.images import pair_cases
from segqc.data.preprocess import PreparedCase, PreprocessConfig, prepare_dataset, stack
from segqc.detectors.base import BaseDetector, split_groups
from segqc.errors import ConfigError, InputError, SchemaError
from segqc.nets.memory import check_image_network
from segqc.scoremodels.image import RECONSTRUCTIONS, ImageScoreModel, pass_plan
from segqc.train import StepInfo, resolve_device

logger = logging.getLogger(__name__)

MIN_CASES = 10
# Fewest held-out sources (and cases) whose degradations can teach the quality estimator: two sources give
# out-of-fold residuals for its interval.
MIN_QUALITY_SOURCES = 2
MIN_QUALITY_CASES = 4


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
    quality: quality.QualityEstimate | None


def group_regex(pattern: str | None) -> re.Pattern[str] | None:
    """The compiled ``--group-pattern`` (``None`` without one).

    Raises:
        ConfigError: ``pattern`` is not a valid regular expression.
    """
    try:
        return re.compile(pattern) if pattern else None
    except re.error as err:
        raise ConfigError(f"--group-pattern {pattern!r}: not a regular expression ({err})") from None


def source_groups(cases: Sequence[PreparedCase], pattern: str | None = None) -> list[str]:
    """The source of each prepared case, for splits that keep a source on one side.

    Slices of one volume share their file's case id. With ``pattern`` (a regular
    expression searched in the case id; its first group, or the whole match,
    names the source) cases already cut into files, e.g. ``patient7_slice012``
    with ``pattern="(patient\\d+)"``, are grouped too.

    Raises:
        ConfigError: ``pattern`` is not a valid regular expression.
    """
    compiled = group_regex(pattern)
    groups = []
    for case in cases:
        name = case.source.case_id
        match = compiled.search(name) if compiled else None
        groups.append((match.group(1) if match.groups() else match.group(0)) if match else name)
    return groups


def _check_labels_present(labels: Sequence[int], masks: torch.Tensor) -> None:
    """Refuse given label values that no training mask holds (at the model's size): nothing to learn of them.

    Args:
        labels: The label value of each class.
        masks: Class indices of the training masks, ``(N, *spatial)``.

    Raises:
        ConfigError: A label value occurs in no mask.
    """
    present = torch.bincount(masks.flatten(), minlength=len(labels))[:len(labels)] > 0
    if not bool(present.all()):
        absent = [str(value) for value, found in zip(labels, present.tolist()) if not found]
        held = [str(value) for value, found in zip(labels, present.tolist()) if found]
        raise ConfigError(f"labels {','.join(map(str, labels))} ('segqc train --labels'): {', '.join(absent)} "
                          f"occur(s) in no training mask (the masks hold {', '.join(held)}); give only the values "
                          "the masks use")


def snapshot_steps(fractions: Sequence[float], steps: int) -> list[int]:
    """Training steps at ``fractions`` of ``steps``: at least 1, before the last step, each once."""
    return sorted(step for step in {max(1, round(fraction * steps)) for fraction in fractions} if step < steps)


def teaching_states(snapshots: dict[int, dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor] | None]:
    """Weights of the networks whose masks of the held-out images teach the quality estimator: each snapshot's,
    in training order, then, when there is any, the final network (``None``); no snapshots, no networks."""
    states: list[dict[str, torch.Tensor] | None] = [state for _, state in sorted(snapshots.items())]
    return states + [None] if states else []


def _as_tensors(images: Any, masks: Any) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    masks = torch.as_tensor(np.asarray(masks)).long()
    if images.ndim not in (4, 5) or masks.shape != images.shape[:1] + images.shape[2:]:
        raise SchemaError(f"expected images (N, C, *spatial) and masks (N, *spatial) with the same N and spatial "
                          f"shape, got {tuple(images.shape)} and {tuple(masks.shape)}")
    return images, masks


def _padded(batch: torch.Tensor, size: int) -> torch.Tensor:
    """``batch`` with copies of its first row appended up to ``size`` rows."""
    missing = size - len(batch)
    return torch.cat([batch, batch[:1].expand(missing, *batch.shape[1:])]) if missing > 0 else batch


def _laid_out(tensor: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """Images ``(B, C, *spatial)`` in ``layout``; masks (one axis fewer) as they are."""
    return tensor.contiguous(memory_format=layout) if tensor.ndim == (4 if layout == torch.channels_last else 5) \
        else tensor


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
        images, masks = _as_tensors(images, masks)
        if len(images) < MIN_CASES:
            raise InputError(f"{len(images)} training cases; need at least {MIN_CASES}")
        labels = labels if labels is not None else self.labels
        num_classes = len(labels) if labels is not None else int(masks.max()) + 1
        if int(masks.max()) >= num_classes or int(masks.min()) < 0:
            raise SchemaError(f"mask class indices must lie in 0..{num_classes - 1}, found {int(masks.min())}.."
                              f"{int(masks.max())}")
        if labels is not None:
            _check_labels_present(labels, masks)
        self.labels_ = [int(v) for v in labels] if labels is not None else list(range(num_classes))
        groups = np.asarray([str(g) for g in groups] if groups is not None else np.arange(len(images)).astype(str))
        if len(groups) != len(images):
            raise SchemaError(f"{len(groups)} groups for {len(images)} cases")
        train_rows, val_rows = split_groups(groups, train_cfg.val_fraction, train_cfg.seed)
        self.check_network(images.shape[1], num_classes, masks.shape[1:])
        torch.manual_seed(train_cfg.seed)
        model = self._build(images.shape[1], num_classes, masks.ndim - 1, masks.shape[1])
        snapshots = self._train(model, (images, masks), train_rows, val_rows, train_cfg, on_step, checkpoint_dir,
                                resume, snapshot_steps(cfg.quality_snapshots, train_cfg.steps))
        self.training_.update(val_sources=len(set(groups[val_rows])), train_sources=len(set(groups[train_rows])))
        norms, _ = self.embed(images, masks)
        self.density_ = self._fit_density(norms[train_rows], train_cfg, cfg.max_components)
        self._calibrate(self.density_.score(norms), train_rows, val_rows, cfg.review_quantile, cfg.fail_quantile)
        self.atlas_ = (Atlas.sample(images[train_rows].numpy(), masks[train_rows].numpy(), num_classes,
                                    cfg.atlas_size, train_cfg.seed) if cfg.atlas_size else None)
        self.quality_ = None
        held_out_sources = len(set(groups[val_rows]))
        if held_out_sources >= MIN_QUALITY_SOURCES and len(val_rows) >= MIN_QUALITY_CASES:
            teachers = teaching_states(snapshots)
            rows = self._quality_rows(val_rows, len(teachers))
            self.reconstruction_, rebuilt = self._choose_reconstruction(images[rows], masks[rows])
            self.quality_ = self._fit_quality(images[rows], masks[rows], groups[rows], teachers, rebuilt)
        else:
            self.reconstruction_, _ = self._choose_reconstruction(images[val_rows], masks[val_rows])
            logger.warning("%d held-out case(s) from %d source(s): too few to fit the predicted-Dice estimator (need "
                           "%d from %d); verdicts will use the score thresholds", len(val_rows), held_out_sources,
                           MIN_QUALITY_CASES, MIN_QUALITY_SOURCES)
        return self

    def _quality_rows(self, val_rows: np.ndarray, segmenters: int) -> np.ndarray:
        """The held-out rows that teach the quality estimator: all of them, or a random subset whose masks and
        their degradations (and the masks and grafts of ``segmenters`` networks) stay within ``quality_examples``."""
        cfg = self._model_config
        per_case = cfg.degradations_per_case + segmenters * (1 + degradations.GRAFTS_PER_SEGMENTATION)
        most = max(MIN_QUALITY_CASES, cfg.quality_examples // per_case)
        if len(val_rows) <= most:
            return val_rows
        return np.sort(np.random.default_rng([self._training_config.seed, 17]).choice(val_rows, most, replace=False))

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
            held_out[name] = float(quality.mean_dice(quality.dice_per_class(rebuilt, truth, num_classes),
                                                     rebuilt, truth).mean())
        choice = {"method": max(held_out, key=held_out.get), "held_out_dice": held_out}
        logger.info("reconstruction: %s (held-out Dice %s)", choice["method"],
                    ", ".join(f"{k} {v:.3f}" for k, v in held_out.items()))
        return choice, probabilities[choice["method"]]

    def _fit_quality(self, images: torch.Tensor, masks: torch.Tensor, groups: np.ndarray,
                     teachers: list[dict[str, torch.Tensor] | None],
                     reconstruction: np.ndarray | None = None) -> quality.QualityEstimator:
        """Fit the predicted-Dice estimator on masks of known quality made from held-out correct masks.

        They are graded synthetic degradations and the masks of the held-out
        images by each of ``teachers`` (:func:`teaching_states`), whole and
        grafted into the correct masks (:func:`degradations.teaching_set`).
        ``reconstruction`` holds the final network's class probabilities of
        ``images`` when they are already at hand.
        """
        cfg, seed = self._model_config, self._training_config.seed
        rng = np.random.default_rng([seed, 11])
        num_classes = self.architecture_["num_classes"]
        reconstruction = reconstruction if reconstruction is not None else self._reconstruct(images)
        truth = masks.numpy()
        segmentations = []
        for state in teachers:
            if state is None:
                segmentations.append(reconstruction.argmax(1))
                continue
            earlier = copy.deepcopy(self.model_)
            earlier.load_state_dict(state)
            segmentations.append(self._reconstruct(images, model=earlier).argmax(1))
        degraded, sources = degradations.teaching_set(truth, segmentations, cfg.degradations_per_case, rng,
                                                      num_classes)
        norms, heat = self.embed(images[sources], degraded)
        features = self._quality_features(images[sources].numpy(), degraded, norms, heat, reconstruction[sources])
        per_class = quality.dice_per_class(degraded, truth[sources], num_classes)
        targets = np.column_stack([quality.mean_dice(per_class, degraded, truth[sources]), per_class])
        return quality.QualityEstimator(cfg.quality_coverage, seed).fit(features, targets, groups[sources])

    def _quality_features(self, images: np.ndarray, masks: np.ndarray, norms: np.ndarray, heat: np.ndarray,
                          reconstruction: np.ndarray) -> np.ndarray:
        """Features of the quality estimator, ``(N, F)``.

        The model's view (:func:`quality.case_features`), the atlas's, then the
        image evidence along each predicted boundary
        (:func:`quality.boundary_features`); new groups go last, so an
        estimator from an older bundle reads the leading columns.
        """
        columns = [quality.case_features(norms, self.density_.score(norms), heat, masks, reconstruction)]
        atlas = getattr(self, "atlas_", None)
        if atlas is not None:
            columns.append(atlas.features(images, masks))
        columns.append(quality.boundary_features(images, masks, heat, reconstruction.shape[1]))
        return np.column_stack(columns)

    def _build(self, image_channels: int, num_classes: int, spatial_dims: int, input_size: int) -> ImageScoreModel:
        cfg = self._model_config
        taus = noise.geometric_levels(cfg.tau_max, cfg.tau_min, cfg.levels)
        betas = torch.linspace(cfg.beta_max, 0.0, cfg.levels)
        network = {**cfg.network, "input_size": input_size}
        self.architecture_ = {"image_channels": image_channels, "num_classes": num_classes,
                              "spatial_dims": spatial_dims, "input_size": input_size}
        return ImageScoreModel(spatial_dims, image_channels, num_classes, taus, betas, cfg.loss, cfg.delta, network)

    def embed(self, images: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
        """Score-norm embeddings ``(N, L)`` and heat maps ``(N, *spatial)`` of pairs."""
        images, masks = _as_tensors(images, masks)
        arch = self.architecture_
        if images.shape[1] != arch["image_channels"] or masks.ndim - 1 != arch["spatial_dims"]:
            raise SchemaError(f"the model expects {arch['image_channels']}-channel {arch['spatial_dims']}D images, "
                              f"got {images.shape[1]}-channel {masks.ndim - 1}D")
        if masks.numel() and int(masks.max()) >= arch["num_classes"]:
            raise SchemaError(f"mask class index {int(masks.max())} outside 0..{arch['num_classes'] - 1}")
        parts = self._in_batches(lambda model, size, image, mask: model.embed(image, mask, size), images, masks)
        return (np.concatenate([norms.double().cpu().numpy() for norms, _ in parts]),
                np.concatenate([heat.float().cpu().numpy() for _, heat in parts]))

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

    @torch.inference_mode()
    def _in_batches(self, run: Callable[..., Any], *tensors: torch.Tensor,
                    model: ImageScoreModel | None = None) -> list[Any]:
        """``run(model, batch_size, *batch)`` for each scoring batch of ``tensors`` (scoring device, eval mode).

        ``model`` defaults to the trained network.

        Every network pass has the same shape: batches hold ``score_batch_size``
        cases, and the last one is padded with copies of its first case (whose
        results are dropped) up to a whole number of passes
        (:func:`~segqc.scoremodels.image.pass_plan`). Convolution and attention
        kernels are chosen by shape, so a case's results would otherwise depend,
        in the last digits, on how many cases share its batch (a chunk, a
        ``torchrun`` shard). Convolutions run in full fp32: with cuDNN's TF32, GPU
        scores drifted from CPU scores by about 4 % of their spread. Weights and
        images are laid out channels-last, which the CPU convolution kernels run
        1.4-1.6 times faster.

        Returns:
            ``run``'s output (a tensor or a tuple of tensors with the batch first) per batch.
        """
        device = resolve_device(self._training_config.device)
        layout = torch.channels_last if self.architecture_["spatial_dims"] == 2 else torch.channels_last_3d
        model = (model or self.model_).to(device).eval().to(memory_format=layout)
        size = self._model_config.score_batch_size
        unit = pass_plan(math.prod(tensors[0].shape[2:]), size, 1)[0]
        outputs = []
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            for start in range(0, len(tensors[0]), size):
                count = min(size, len(tensors[0]) - start)
                batch = [_padded(tensor[start:start + size], -(-count // unit) * unit).to(device) for tensor in tensors]
                output = run(model, size, *(_laid_out(tensor, layout) for tensor in batch))
                outputs.append(tuple(part[:count] for part in output) if isinstance(output, tuple)
                               else output[:count])
        return outputs

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
        images, masks = _as_tensors(images, masks)
        norms, heat = self.embed(images, masks)
        scores = self.density_.score(norms)
        probabilities = self._reconstruct(images)
        estimate = None
        if getattr(self, "quality_", None) is not None:
            features = self._quality_features(images.numpy(), masks.numpy(), norms, heat, probabilities)
            # A bundle written before a feature group was added was fitted on the leading columns only.
            estimate = self.quality_.predict(features[:, :self.quality_.features_.shape[1]])
        return Assessment(scores, norms, heat, probabilities.argmax(1), estimate)

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
        extra = {f"quality_{k}": v for k, v in estimator.to_arrays().items()} if estimator is not None else {}
        atlas = getattr(self, "atlas_", None)
        extra.update({f"atlas_{k}": v for k, v in atlas.to_arrays().items()} if atlas is not None else {})
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
            estimator = {k.removeprefix("quality_"): v for k, v in content.arrays.items() if k.startswith("quality_")}
            detector.quality_ = quality.QualityEstimator.from_arrays(estimator) if estimator else None
            atlas = {k.removeprefix("atlas_"): v for k, v in content.arrays.items() if k.startswith("atlas_")}
            detector.atlas_ = Atlas.from_arrays(atlas) if atlas else None
        detector.bundle_ = Path(path)
        return detector
