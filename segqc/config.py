"""Typed configuration sections, loaded from YAML with unknown keys rejected.

Every value is checked when a section is built, whether it comes from a YAML
file, a command-line option or Python: its type against the field's annotation
(:func:`segqc.fields.check_types`: ``steps: 1.5``, ``lr: "1e-3"`` or ``amp: "yes"`` are
refused, whole numbers are accepted where a number is expected, and numbers
must be finite), then its range, whole numbers bounded above too. Errors are :class:`FieldError` naming
``section.key``; :func:`merged_config` renames them after the command-line option when the value came from
one (``--seed -1``; for two keys checked together, ``review_quantile <= fail_quantile``, the one given).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from segqc.errors import ConfigError, FieldError, did_you_mean
from segqc.fields import check_choice, check_types, describe_found, reject_invalid
from segqc.inputs import check_input_file

T = TypeVar("T")
# How verdicts are given: from the predicted-Dice interval, or from held-out score quantiles.
VERDICT_RULES = ("quality", "score")
# Which interval gives a case's verdict under the quality rule: the mean Dice's, or the worst structure's.
VERDICT_BY = ("mean", "worst")
AUTO = "auto"
"""``TabularModelConfig.contamination`` value asking for the share to be estimated."""
CLEAN_SIGMA_MIN = 0.2
"""Default smallest Gaussian scale of the tabular mode's noise levels on a table taken to be clean."""
CONTAMINATED_SIGMA_MIN = 1.0
"""Default smallest Gaussian scale when the training table may hold anomalies (``contamination`` not 0): the
anomalies of a table form small groups of rows, which fine noise lets the network learn as typical and coarse
noise blurs into the rows around them (docs/benchmarks.md, issue 30)."""
RECONSTRUCTIONS = ("auto", "anneal", "average")
"""How segqc segments an image itself (:data:`segqc.scoremodels.image.RECONSTRUCTIONS`); ``auto`` picks by
held-out Dice."""


MAX_SEED = 2**32 - 1
MAX_LEVELS = 1000
"""Noise levels a model may have: every case is scored at each of them (the GNSM paper uses 20)."""
# Upper bounds of the other whole numbers, far above any useful value, so that a typo (--width 99999999999999999999)
# is refused naming its key, not passed on to overflow a library (a network too large for the machine is refused
# by the memory check): steps (the GNSM paper trains 200,000), batch rows / cases, tabular width and depth,
# GaussianMixture components, degradations per mask, quality examples.
MAX_STEPS, MAX_BATCH, MAX_WIDTH, MAX_DEPTH = 100_000_000, 2**20, 2**24, 1000
MAX_COMPONENTS, MAX_DEGRADATIONS, MAX_EXAMPLES = 1000, 100_000, 100_000_000
DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")
"""The devices segqc runs on (``--device``, ``training.device``)."""
@dataclasses.dataclass
class TrainingConfig:
    """Optimisation settings shared by the tabular and image modes.

    Attributes:
        steps: Number of optimiser steps.
        batch_size: Rows or cases per step (per process under DDP).
        lr: Peak learning rate of AdamW.
        lr_min: Final learning rate of the cosine schedule.
        weight_decay: AdamW weight decay.
        ema_decay: Decay of the exponential moving average of the weights.
        grad_clip: Maximum global gradient norm (0 disables clipping).
        val_fraction: Fraction of the training data held out for validation,
            best-checkpoint selection and calibration.
        val_every: Steps between validations (and best-checkpoint updates).
        checkpoint_every: Steps between resumable checkpoints (0 disables).
        seed: Seed of every random choice; CPU runs are reproducible.
        device: ``auto``, ``cpu`` or ``cuda``.
        amp: Mixed precision (bfloat16) on CUDA.
        contaminated: EMA-teacher filtering for training data with anomalies.
        filter_keep: Fraction of each batch (lowest teacher score norms) kept
            when ``contaminated``.
        filter_warmup: Fraction of the steps trained unfiltered first.
    """

    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    lr_min: float = 1e-5
    weight_decay: float = 1e-4
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    val_every: int = 200
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    contaminated: bool = False
    filter_keep: float = 0.8
    filter_warmup: float = 0.1

    def __post_init__(self) -> None:
        check_types(self, "training")
        checks = {
            "steps": (1 <= self.steps <= MAX_STEPS, f"1..{MAX_STEPS:,} steps"),
            "batch_size": (1 <= self.batch_size <= MAX_BATCH, f"1..{MAX_BATCH:,}"),
            "lr": (0 < self.lr <= 1, "a learning rate in (0, 1]"),
            "lr_min": (0 <= self.lr_min <= 1, "a learning rate in [0, 1]"),
            "weight_decay": (0 <= self.weight_decay <= 1, "a value in [0, 1]"),
            "ema_decay": (0 <= self.ema_decay < 1, "a value in [0, 1)"),
            "grad_clip": (self.grad_clip >= 0, "a norm >= 0 (0: no clipping)"),
            "val_fraction": (0 <= self.val_fraction < 1, "a fraction in [0, 1)"),
            "val_every": (1 <= self.val_every <= MAX_STEPS, f"1..{MAX_STEPS:,} steps"),
            "checkpoint_every": (0 <= self.checkpoint_every <= MAX_STEPS, f"0..{MAX_STEPS:,} (0: no checkpoints)"),
            "seed": (0 <= self.seed <= MAX_SEED, f"a whole number in 0..{MAX_SEED}"),
            "device": (bool(DEVICE_NAME.fullmatch(self.device)), "auto, cpu, cuda or cuda:N"),
            "filter_keep": (0 < self.filter_keep <= 1, "a fraction in (0, 1]"),
            "filter_warmup": (0 <= self.filter_warmup < 1, "a fraction in [0, 1)"),
        }
        reject_invalid(self, "training", checks, [("lr_min", "lr")])


@dataclasses.dataclass
class TabularModelConfig:
    """Score model, noise schedule and anomaly scoring of the tabular mode.

    Attributes:
        method: ``msma`` (score norms at ``levels`` noise scales) or ``kdsm``
            (one scale: kurtosis-scaled sigmas for continuous columns). Both
            score a row by its per-variable score norms, each compared with
            the inliers' (see :class:`segqc.density.VariableNormDensity`).
        categorical_noise: ``gaussian`` (one-hot slots plus Gaussian noise) or
            ``gumbel`` (ExpConcrete relaxation, the GNSM paper).
        gaussianize: Map continuous columns onto normal scores through their
            training quantiles (else: standardise them).
        levels: Number of noise levels ``L`` (msma).
        tau_max: Largest temperature (msma, gumbel).
        tau_min: Smallest temperature (msma, gumbel; below 2 training becomes unstable).
        sigma_max: Largest Gaussian scale (msma): continuous columns and, with
            gaussian categorical noise, one-hot slots.
        sigma_min: Smallest Gaussian scale (msma); ``None``: ``CLEAN_SIGMA_MIN``,
            or ``CONTAMINATED_SIGMA_MIN`` when ``contamination`` is not 0, at most
            ``sigma_max`` either way (:attr:`noise_floor`).
        kdsm_tau: Temperature of categorical columns (kdsm, gumbel).
        kdsm_onehot_sigma: Gaussian scale of one-hot slots (kdsm, gaussian).
        loss: Categorical loss, ``kl`` (faster convergence) or ``mse`` (gumbel).
        delta: Floor of the one-hot before the logarithm (gumbel).
        width: Hidden width of the ResNet.
        depth: Number of residual blocks.
        embedding_size: Width of the noise-level embedding.
        dropout: Dropout inside the blocks.
        min_scale: Floor of the inlier spread of a log score norm.
        marginal_weight: Weight of the marginal tail evidence (how rare each
            value is in its own column) against the score model's evidence,
            both on the scale of their interquartile range over the training
            rows (:class:`segqc.evidence.TabularEvidence`); 0 scores with the
            score model alone.
        contamination: Share of anomalous rows in the training table: ``auto``
            (estimated after the first ``ranking_fraction`` of the steps, see
            :mod:`segqc.contamination`) or a number in ``[0, 0.5)``. That
            share of the highest-scoring training rows is left out of the rest
            of the fit (0: no ranking, every row is used).
        ranking_fraction: Share of ``training.steps`` spent on the first fit
            that ranks the training rows; the final fit on the kept rows
            carries on from its weights for the remaining steps.
        review_quantile: Held-out inlier quantile above which a row is ``review``.
        fail_quantile: Held-out inlier quantile above which a row is ``fail``.
        score_batch_size: Rows per scoring batch (each scored at every level).
    """

    method: str = "msma"
    categorical_noise: str = "gaussian"
    gaussianize: bool = True
    levels: int = 6
    tau_max: float = 20.0
    tau_min: float = 2.0
    sigma_max: float = 2.0
    sigma_min: float | None = None
    kdsm_tau: float = 2.0
    kdsm_onehot_sigma: float = 0.5
    loss: str = "kl"
    delta: float = 1e-5
    width: int = 256
    depth: int = 3
    embedding_size: int = 32
    dropout: float = 0.0
    min_scale: float = 0.05
    marginal_weight: float = 1.0
    contamination: float | str = 0.0
    ranking_fraction: float = 0.25
    review_quantile: float = 0.95
    fail_quantile: float = 0.99
    score_batch_size: int = 1024

    def __post_init__(self) -> None:
        check_types(self, "model")
        choices = {"method": ("msma", "kdsm"), "loss": ("kl", "mse"), "categorical_noise": ("gaussian", "gumbel")}
        for name, allowed in choices.items():
            check_choice(self, "model", name, allowed)
        checks = {
            "levels": (1 <= self.levels <= MAX_LEVELS, f"1..{MAX_LEVELS} noise levels"),
            "tau_min": (self.tau_min > 0, "a temperature > 0"),
            "sigma_max": (self.sigma_max > 0, "a scale > 0"),
            "sigma_min": (self.sigma_min is None or self.sigma_min > 0, "a scale > 0"),
            "kdsm_tau": (self.kdsm_tau > 0, "a temperature > 0"),
            "kdsm_onehot_sigma": (self.kdsm_onehot_sigma > 0, "a scale > 0"),
            "delta": (0 < self.delta < 1, "a value in (0, 1)"),
            "width": (1 <= self.width <= MAX_WIDTH, f"1..{MAX_WIDTH:,}"),
            "depth": (0 <= self.depth <= MAX_DEPTH, f"0..{MAX_DEPTH:,} residual blocks"),
            "embedding_size": (2 <= self.embedding_size <= MAX_WIDTH and self.embedding_size % 2 == 0,
                               f"an even number in 2..{MAX_WIDTH:,}"),
            "dropout": (0 <= self.dropout < 1, "a fraction in [0, 1)"),
            "min_scale": (self.min_scale > 0, "a value > 0"),
            "marginal_weight": (self.marginal_weight >= 0, "a weight >= 0"),
            "contamination": (self.contamination == AUTO or (not isinstance(self.contamination, str)
                                                             and 0 <= self.contamination < 0.5),
                              "auto or a share in [0, 0.5)"),
            "ranking_fraction": (0 < self.ranking_fraction <= 1, "a fraction in (0, 1]"),
            "review_quantile": (0 < self.review_quantile < 1, "a quantile in (0, 1)"),
            "fail_quantile": (0 < self.fail_quantile < 1, "a quantile in (0, 1)"),
            "score_batch_size": (1 <= self.score_batch_size <= MAX_BATCH, f"1..{MAX_BATCH:,}"),
        }
        ordered = [("tau_min", "tau_max"), ("review_quantile", "fail_quantile")]
        if self.sigma_min is not None:
            ordered.append(("sigma_min", "sigma_max"))
        reject_invalid(self, "model", checks, ordered)

    @property
    def noise_floor(self) -> float:
        """The smallest Gaussian scale the msma levels use: ``sigma_min``, or its default for this table."""
        if self.sigma_min is not None:
            return self.sigma_min
        return min(CLEAN_SIGMA_MIN if self.contamination == 0 else CONTAMINATED_SIGMA_MIN, self.sigma_max)


@dataclasses.dataclass
class ImageModelConfig:
    """Score model, noise schedule and anomaly scoring of the image mode.

    Attributes:
        levels: Number of noise levels ``L`` (each costs one network pass when scoring).
        tau_max: Largest temperature.
        tau_min: Smallest temperature.
        beta_max: Location mixing towards uniform at ``tau_max``, falling linearly
            to 0 at ``tau_min``; hides the clean class at high noise so the network
            must use the image (0 gives the paper's location ``log(x + delta)``).
        loss: Categorical loss, ``kl`` or ``mse``.
        delta: Floor of the one-hot before the logarithm.
        network: Keyword arguments of :class:`segqc.nets.ncsnpp.NCSNpp`
            (nf, ch_mult, num_res_blocks, attn_resolutions, dropout, ...).
        max_components: Most GaussianMixture components tried (BIC chooses).
        review_quantile: Held-out inlier quantile above which a case is ``review``
            (``verdicts: score``).
        fail_quantile: Held-out inlier quantile above which a case is ``fail``
            (``verdicts: score``).
        score_batch_size: Cases per scoring batch.
        verdicts: ``quality``: from the predicted-Dice interval against
            ``dice_threshold``; ``score``: from the held-out score quantiles.
        dice_threshold: Dice below which a mask counts as failed (overridable
            when scoring).
        verdict_by: With the quality rule and several structures: ``worst``
            (a case fails when any structure's interval lies below the failure
            Dice, as a multi-organ review expects) or ``mean`` (the interval of
            the mean Dice over structures). Overridable when scoring.
        quality_coverage: Share of true Dice values the predicted-Dice interval
            should hold on held-out degradations. Real failures are harder to
            predict than self-made ones: at 0.8 the intervals held 48-81 % of
            true Dice values on the benchmark sets (docs/benchmarks-segmentation.md).
        degradations_per_case: Synthetic degradations of each held-out mask that
            teach the quality estimator.
        quality_snapshots: Points of training (fractions of ``training.steps``)
            at which the network's weights are kept: each earlier network, and
            the final one, is a segmenter whose masks of the held-out images, and
            grafts of its mistakes into their correct masks, teach the quality
            estimator what a learned segmenter's failures look like. Empty (the
            default): only synthetic degradations teach it. On the benchmark's
            real sets, whose failures are a UNet's, ``[0.05, 0.1, 0.2, 0.4]`` cut
            the failures that pass; on phantoms, whose failures are synthetic,
            it raised false alarms (docs/benchmarks-segmentation.md).
        quality_examples: Most masks the quality estimator learns from; with more
            held-out cases than that allows, a random subset of them is used.
        reconstruction: How segqc segments each image itself (the reference
            its predictions are compared with): ``anneal`` (annealed denoising
            through the upper half of the levels), ``average`` (the mean of 8
            draws at the top level) or ``auto`` (whichever agrees better with
            the held-out correct masks).
        atlas_size: Correct training pairs kept in the bundle as an atlas whose
            agreement with a prediction informs the quality estimator
            (:mod:`segqc.quality.atlas`); 0 leaves the atlas out.
    """

    levels: int = 10
    tau_max: float = 20.0
    tau_min: float = 2.0
    beta_max: float = 0.9
    loss: str = "kl"
    delta: float = 1e-5
    network: dict[str, Any] = dataclasses.field(default_factory=lambda: {
        "nf": 16, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": []})
    max_components: int = 4
    review_quantile: float = 0.95
    fail_quantile: float = 0.99
    score_batch_size: int = 16
    verdicts: str = "quality"
    dice_threshold: float = 0.8
    verdict_by: str = "worst"
    quality_coverage: float = 0.8
    degradations_per_case: int = 24
    quality_snapshots: list[float] = dataclasses.field(default_factory=list)
    quality_examples: int = 6144
    reconstruction: str = "auto"
    atlas_size: int = 256

    def __post_init__(self) -> None:
        check_types(self, "model")
        for name, allowed in {"verdicts": VERDICT_RULES, "verdict_by": VERDICT_BY, "loss": ("kl", "mse"),
                              "reconstruction": RECONSTRUCTIONS}.items():
            check_choice(self, "model", name, allowed)
        checks = {
            "levels": (1 <= self.levels <= MAX_LEVELS, f"1..{MAX_LEVELS} noise levels"),
            "tau_min": (self.tau_min > 0, "a temperature > 0"),
            "beta_max": (0 <= self.beta_max < 1, "a value in [0, 1)"),
            "delta": (0 < self.delta < 1, "a value in (0, 1)"),
            "max_components": (1 <= self.max_components <= MAX_COMPONENTS, f"1..{MAX_COMPONENTS:,}"),
            "review_quantile": (0 < self.review_quantile < 1, "a quantile in (0, 1)"),
            "fail_quantile": (0 < self.fail_quantile < 1, "a quantile in (0, 1)"),
            "score_batch_size": (1 <= self.score_batch_size <= MAX_BATCH, f"1..{MAX_BATCH:,}"),
            "dice_threshold": (0 < self.dice_threshold <= 1, "a Dice in (0, 1]"),
            "quality_coverage": (0 < self.quality_coverage < 1, "a fraction in (0, 1)"),
            "degradations_per_case": (1 <= self.degradations_per_case <= MAX_DEGRADATIONS, f"1..{MAX_DEGRADATIONS:,}"),
            "quality_snapshots": (all(0 < f < 1 for f in self.quality_snapshots), "fractions of training in (0, 1)"),
            "quality_examples": (1 <= self.quality_examples <= MAX_EXAMPLES, f"1..{MAX_EXAMPLES:,}"),
            "atlas_size": (0 <= self.atlas_size <= MAX_EXAMPLES, f"0..{MAX_EXAMPLES:,} (0: no atlas)"),
        }
        reject_invalid(self, "model", checks, [("tau_min", "tau_max"), ("review_quantile", "fail_quantile")])


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, section: str) -> T:
    """Build a config dataclass from a mapping, rejecting unknown keys.

    Args:
        cls: The dataclass type.
        data: Values by field name (``None`` means all defaults).
        section: Section name used in error messages, e.g. ``"training"``.

    Returns:
        An instance of ``cls``.
    """
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{section}: expected a mapping of settings, found {describe_found(data)}")
    data = dict(data or {})
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown option {section}.{key}{did_you_mean(key, names)}; "
                              f"known: {', '.join(names)}")
    try:
        return cls(**data)
    except TypeError as err:
        raise ConfigError(f"{section}: {err}") from None


def merged_config(cls: type[T], file_sections: Mapping[str, Any], section: str, overrides: Mapping[str, Any]) -> T:
    """Build a config dataclass: defaults < ``file_sections[section]`` < the overrides that are not ``None``.

    Args:
        cls: The dataclass type.
        file_sections: Sections read from a config file (see :func:`read_mapping_file`).
        section: The section to use, e.g. ``"training"``.
        overrides: Values given elsewhere (command-line options); ``None`` means not given.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: A value is invalid; one given as an override is named as
            its command-line option (``--batch-size 0``), one from the file as
            ``section.key``.
    """
    from_file = file_sections.get(section)
    if from_file is not None and not isinstance(from_file, Mapping):
        raise ConfigError(f"{section}: expected a mapping of settings, found {describe_found(from_file)}")
    values = dict(from_file or {})
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    try:
        return from_mapping(cls, values, section)
    except FieldError as err:
        option = next((name for name in (err.name, *err.related) if name in given), None)
        if option is None:
            raise
        raise ConfigError(f"--{option.replace('_', '-')} {given[option]}: {err.detail}") from None


def read_mapping_file(path: str | Path, allowed: Sequence[str], what: str) -> dict[str, Any]:
    """Read a JSON (``.json``) or YAML file holding one mapping with known keys.

    Args:
        path: The file.
        allowed: The keys the mapping may have.
        what: What the file is, for messages (e.g. ``"config file"``).

    Returns:
        The mapping (empty for an empty file).

    Raises:
        InputError: The file is missing.
        ConfigError: Invalid JSON / YAML, not a mapping, or an unknown key.
    """
    path = check_input_file(path, what)
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid {kind} ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping in the {what}, found {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{path}: unknown key {key!r} in the {what}{did_you_mean(str(key), allowed)}; "
                              f"expected {', '.join(map(repr, allowed))}")
    return data
