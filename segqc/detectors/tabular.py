"""TabularQC: unsupervised anomaly scores for rows of categorical / mixed tables."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from segqc import bundle, noise
from segqc.config import AUTO, TabularModelConfig, TrainingConfig
from segqc.contamination import estimate_contamination, typical_rows
from segqc.data.grouping import split_rows
from segqc.data.tables import check_unique_columns, read_table
from segqc.data.tabular import MAX_STANDARD_UNITS, EncodedTable, TabularSchema, encode, infer_schema
from segqc.detectors.base import BaseDetector
from segqc.errors import BundleError, ConfigError, InputError, SchemaError
from segqc.evidence import TabularEvidence
from segqc.fitting.device import resolve_device
from segqc.fitting.trainer import StepInfo, Trainer
from segqc.nets.memory import check_training_memory
from segqc.nets.tabular import TabularScoreNet
from segqc.scoremodels.tabular import TabularScoreModel
from segqc.verdicts import ranks

logger = logging.getLogger(__name__)

MIN_ROWS = 20
TableLike = pd.DataFrame | str | Path
HEAD = "variable_norms+marginal_tails"
"""Name of the score head in the bundle; bundles with another (or none) predate it and are refused."""
ReadProgress = Callable[[int, int, str], None]
"""``on_read(done, total, stage)`` while a table is read (megabytes), typed and encoded (columns)."""


def _stage(on_read: ReadProgress | None, stage: str) -> Callable[[int, int], None] | None:
    """A ``(done, total)`` progress callback for one stage of reading a table."""
    return None if on_read is None else lambda done, total: on_read(done, total, stage)


def _as_frame(data: TableLike, id_column: str | None = None,
              on_read: ReadProgress | None = None) -> tuple[pd.DataFrame, str]:
    """The table and its name for messages (the file path, or ``"input table"``).

    Args:
        data: A DataFrame, or the path of a CSV / Parquet file.
        id_column: The id column, read as text (ids keep their spelling).
        on_read: Progress while a file is read.

    Returns:
        The table and where it came from.

    Raises:
        InputError: The DataFrame is empty, or the file cannot be read.
        SchemaError: Two or more columns have the same name.
    """
    if isinstance(data, pd.DataFrame):
        if data.empty:
            raise InputError("the table is empty; expected rows and columns")
        check_unique_columns(list(data.columns), "input table")
        return data, "input table"
    name = Path(data).name
    return read_table(data, [id_column] if id_column else [], _stage(on_read, f"MB of {name} read")), str(data)


def ranking_length(steps: int, fraction: float) -> int:
    """Steps of the ranking fit: ``fraction`` of ``steps``, at least 1, and short of ``steps`` when it can be."""
    return max(1, min(round(fraction * steps), steps - 1))


def _counting_from(on_step: Callable[[StepInfo], None] | None, offset: int,
                   total: int) -> Callable[[StepInfo], None] | None:
    """``on_step`` told each step of one part of a run as step ``offset + step`` of ``total``."""
    if on_step is None:
        return None
    return lambda info: on_step(dataclasses.replace(info, step=offset + info.step, total=total))


class TabularQC(BaseDetector):
    """GNSM anomaly detector for tables (categorical, continuous or mixed columns).

    Args:
        model: Score model, noise schedule and scoring settings.
        training: Optimisation settings.
        categorical: Columns forced to categorical.
        continuous: Columns forced to continuous.
        ignore: Columns left out.
        id_column: Column of row identifiers.
        max_integer_categories: Integer columns with at most this many distinct
            values are treated as categorical.

    The anomaly score of a row adds two kinds of evidence per variable
    (:class:`segqc.evidence.TabularEvidence`): the trained network's score
    (gradient of the learned log-density) at every noise level, squared, each
    compared on a log scale with the median and spread of the training rows'
    values, only excesses above the median summed and averaged over levels
    (:class:`segqc.density.VariableNormDensity`); and how rare the value is in
    its column's training marginal (:class:`segqc.marginals.MarginalTails`).

    Attributes:
        schema_: Column types, categories and standardisation.
        model_: The trained score model (EMA weights of the best checkpoint).
        head_: The fitted per-variable evidence (score norms and marginals).
        calibration_: Review / fail thresholds from held-out inliers.
        decision_scores_: Anomaly scores of the training rows.
        contamination_: Share of training rows left out of the final fit as
            anomalous (estimated or as configured; 0 without trimming).
        training_: Summary of the training run.

    Example:
        >>> qc = TabularQC(training=TrainingConfig(steps=500)).fit(frame)  # doctest: +SKIP
        >>> scores = qc.decision_function(new_frame)  # doctest: +SKIP
    """

    def __init__(self, model: TabularModelConfig | None = None, training: TrainingConfig | None = None,
                 categorical: Sequence[str] = (), continuous: Sequence[str] = (), ignore: Sequence[str] = (),
                 id_column: str | None = None, max_integer_categories: int = 20) -> None:
        self.model = model
        self.training = training
        self.categorical = categorical
        self.continuous = continuous
        self.ignore = ignore
        self.id_column = id_column
        self.max_integer_categories = max_integer_categories

    @property
    def _model_config(self) -> TabularModelConfig:
        return self.model or TabularModelConfig()

    def fit(self, data: TableLike, y: None = None, on_step: Callable[[StepInfo], None] | None = None,
            checkpoint_dir: str | Path | None = None, resume: bool = False,
            on_read: ReadProgress | None = None) -> TabularQC:
        """Learn the distribution of the rows of ``data``.

        Args:
            data: A DataFrame or the path of a CSV / Parquet file.
            y: Ignored (unsupervised).
            on_step: Progress callback, called after each training step.
            checkpoint_dir: Directory for resumable checkpoints.
            resume: Continue from the checkpoint in ``checkpoint_dir``.
            on_read: Progress callback while the table is read, typed and encoded.

        Returns:
            self
        """
        cfg, train_cfg = self._model_config, self._training_config
        frame, where = _as_frame(data, self.id_column, on_read)
        if len(frame) < MIN_ROWS:
            raise InputError(f"{where}: {len(frame)} rows; need at least {MIN_ROWS} rows to fit")
        self.schema_ = infer_schema(frame, self.categorical, self.continuous, self.ignore, self.id_column,
                                    self.max_integer_categories, where=where, gaussianize=cfg.gaussianize,
                                    on_progress=_stage(on_read, "columns typed"))
        table = encode(frame, self.schema_, where, _stage(on_read, "columns encoded"))
        train_rows, val_rows = split_rows(len(frame), train_cfg.val_fraction, train_cfg.seed)
        if len(train_rows) < MIN_ROWS:
            raise ConfigError(f"training.val_fraction {train_cfg.val_fraction:g} holds out {len(val_rows)} of the "
                              f"{len(frame)} rows of {where}, leaving {len(train_rows)} to train on; need at least "
                              f"{MIN_ROWS}: lower it (--val-fraction)")
        taus, sigmas = self._schedule(table.continuous[train_rows])
        self._check_memory(sigmas)
        tensors = (torch.from_numpy(table.codes), torch.from_numpy(table.continuous))
        num_train = len(train_rows)
        torch.manual_seed(train_cfg.seed)
        model = self._score_model(self.schema_.cardinalities, taus, sigmas)
        self.contamination_, ranking_steps = 0.0, 0
        if cfg.contamination != 0:
            ranking_steps = ranking_length(train_cfg.steps, cfg.ranking_fraction)
        final = dataclasses.replace(train_cfg, steps=max(1, train_cfg.steps - ranking_steps))
        total = ranking_steps + final.steps
        if ranking_steps:
            train_rows = self._trim(model, table, tensors, train_rows, val_rows, ranking_steps,
                                    _counting_from(on_step, 0, total))
        self._train(model, tensors, train_rows, val_rows, final, _counting_from(on_step, ranking_steps, total),
                    checkpoint_dir, resume)
        self._count_steps_from(ranking_steps)
        self.training_.update(contamination=self.contamination_, contamination_estimated=cfg.contamination == AUTO,
                              training_rows=num_train, trimmed_rows=num_train - len(train_rows))
        norms = self._norms(table, self.model_)
        self.head_ = TabularEvidence(cfg.min_scale, cfg.marginal_weight).fit(
            norms[train_rows], table.codes[train_rows], table.continuous[train_rows], self.schema_.cardinalities)
        scores = self.head_.score(norms, table.codes, table.continuous)
        self._calibrate(scores, train_rows, val_rows, cfg.review_quantile, cfg.fail_quantile)
        return self

    @property
    def trimming(self) -> str:
        """What the fit left out of the training rows as anomalous, in words (``""``: every row was used)."""
        self._check_fitted()
        summary = self.training_
        if "training_rows" not in summary or not (summary["contamination_estimated"] or summary["contamination"]):
            return ""
        share = f"{summary['contamination']:.1%}"
        how = f"estimated {share} of the training rows anomalous" if summary["contamination_estimated"] else (
            f"{share} of the training rows anomalous as given")
        kept = summary["training_rows"] - summary["trimmed_rows"]
        return f"{how}; {summary['trimmed_rows']:,} of {summary['training_rows']:,} left out of the fit ({kept:,} used)"

    def _trim(self, model: TabularScoreModel, table: EncodedTable, tensors: tuple[torch.Tensor, ...],
              train_rows: np.ndarray, val_rows: np.ndarray, steps: int,
              on_step: Callable[[StepInfo], None] | None) -> np.ndarray:
        """Rank the training rows with the first ``steps`` of the fit and leave out the anomalous share.

        Trains ``model`` in place (it ends with the ranking fit's best EMA
        weights, where the final fit on the kept rows carries on) and sets
        ``contamination_``.

        Returns:
            The kept training rows (sorted indices).
        """
        cfg = self._model_config
        ranking = dataclasses.replace(self._training_config, steps=steps, checkpoint_every=0)
        result = Trainer(model, ranking, on_step=on_step).fit(
            tuple(t[train_rows] for t in tensors), tuple(t[val_rows] for t in tensors) if len(val_rows) else None)
        model.load_state_dict(result.state_dict)
        rows = dataclasses.replace(table, codes=table.codes[train_rows], continuous=table.continuous[train_rows])
        norms, codes, continuous = self._norms(rows, model), rows.codes, rows.continuous
        # The score model's evidence alone: trimming keeps anomalies away from the network, and the marginal
        # tails, whose typical rows spread widely, blur the anomalies' excess (docs/benchmarks.md, issue 30).
        scores = TabularEvidence(cfg.min_scale, marginal_weight=0.0).fit(
            norms, codes, continuous, self.schema_.cardinalities).score(norms, codes, continuous)
        self.contamination_ = estimate_contamination(scores) if cfg.contamination == AUTO else float(cfg.contamination)
        kept = train_rows[typical_rows(scores, self.contamination_)]
        logger.info("contamination %.3f: %d of %d training rows left out after a %d-step ranking fit",
                    self.contamination_, len(train_rows) - len(kept), len(train_rows), steps)
        return kept

    def _count_steps_from(self, ranking_steps: int) -> None:
        """Number the final fit's steps in ``training_`` after the ranking fit's, as one run of ``training.steps``."""
        if ranking_steps:
            summary = self.training_
            summary.update(steps=summary["steps"] + ranking_steps, best_step=summary["best_step"] + ranking_steps,
                           ranking_steps=ranking_steps,
                           history=[{**entry, "step": entry["step"] + ranking_steps} for entry in summary["history"]])

    def _score_model(self, cardinalities: list[int], taus: torch.Tensor, sigmas: torch.Tensor) -> TabularScoreModel:
        """An untrained score model with this detector's settings (see :meth:`_schedule` for the noise)."""
        cfg = self._model_config
        return TabularScoreModel(cardinalities, taus, sigmas, cfg.loss, cfg.delta, cfg.width, cfg.depth,
                                 cfg.embedding_size, cfg.dropout, cfg.categorical_noise)

    def _check_memory(self, sigmas: torch.Tensor) -> None:
        """Refuse a network too large to train here, before training starts (see :mod:`segqc.nets.memory`).

        Activations per row: the input, the output and about eight hidden
        vectors of ``width`` per residual block.
        """
        cfg, train_cfg = self._model_config, self._training_config
        features = sum(self.schema_.cardinalities) + sigmas.shape[1]
        with torch.device("meta"):
            probe = TabularScoreNet(features, cfg.width, cfg.depth, cfg.embedding_size, cfg.dropout)
        check_training_memory("model.width", probe, 4 * features + cfg.width * (8 * cfg.depth + 2),
                              train_cfg.batch_size, resolve_device(train_cfg.device), train_cfg.amp,
                              "lower model.width (--width), model.depth (--depth) or training.batch_size "
                              "(--batch-size)")

    def _schedule(self, train_continuous: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Categorical noise ``(L,)`` and Gaussian scales ``(L, D_cont)`` of the chosen method.

        The categorical noise is a temperature (``gumbel``) or the Gaussian
        scale of the one-hot slots (``gaussian``).
        """
        cfg = self._model_config
        num_continuous = train_continuous.shape[1]
        gaussian = cfg.categorical_noise == "gaussian"
        if cfg.method == "kdsm":
            sigmas = noise.kurtosis_sigmas(train_continuous) if num_continuous else np.zeros(0, np.float32)
            categorical = cfg.kdsm_onehot_sigma if gaussian else cfg.kdsm_tau
            return torch.tensor([categorical]), torch.from_numpy(sigmas)[None, :]
        sigmas = noise.geometric_levels(cfg.sigma_max, cfg.noise_floor, cfg.levels)
        taus = sigmas if gaussian else noise.geometric_levels(cfg.tau_max, cfg.tau_min, cfg.levels)
        return taus, sigmas[:, None].repeat(1, num_continuous)

    @torch.no_grad()
    def _norms(self, table: EncodedTable, model: TabularScoreModel) -> np.ndarray:
        """Squared score norms ``(N, L, V)`` of every variable of encoded rows at every level under ``model``."""
        device = self.scoring_device
        model = model.to(device).eval()
        size = self._model_config.score_batch_size
        chunks = []
        for start in range(0, len(table.codes), size):
            codes = torch.from_numpy(table.codes[start:start + size]).to(device)
            continuous = torch.from_numpy(table.continuous[start:start + size]).to(device)
            chunks.append(model.variable_norms(codes, continuous).double().cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, model.num_levels, model.num_variables))

    def _variable_names(self) -> list[str]:
        """Names of the model's variables, in the order of the norms' last axis."""
        indicators = [f"{c.name} (missing)" for c in self.schema_.continuous if c.missing_indicator]
        return [c.name for c in self.schema_.categorical] + indicators + [c.name for c in self.schema_.continuous]

    def decision_function(self, data: TableLike) -> np.ndarray:
        """Anomaly score of every row (higher = more anomalous).

        Args:
            data: A DataFrame or the path of a CSV / Parquet file, with the
                columns the model was fitted on.

        Returns:
            Scores of shape ``(N,)``.
        """
        return self.score_table(data)["score"].to_numpy()

    def score_table(self, data: TableLike, on_read: ReadProgress | None = None) -> pd.DataFrame:
        """Scores, ranks, verdicts, the main culprit and per-level score norms of every row, in input order.

        Args:
            data: A DataFrame or the path of a CSV / Parquet file, with the
                columns the model was fitted on.
            on_read: Progress callback while the table is read and encoded.

        Returns:
            Columns ``id``, ``score``, ``rank`` (1 = most anomalous), ``verdict``,
            ``unseen_categories``, ``top_column`` (the column that adds most to
            the score), ``top_share`` (its share of the evidence behind the score) and
            ``norm_1..norm_L`` (squared score norms summed over variables).
        """
        self._check_fitted()
        frame, where = _as_frame(data, self.schema_.id_column, on_read)
        table = encode(frame, self.schema_, where, _stage(on_read, "columns encoded"))
        norms = self._norms(table, self.model_)
        scores, contributions = self.head_.score_and_contributions(norms, table.codes, table.continuous)
        self._check_finite(scores, contributions, where)
        flagged, culprits = self._beyond_reach(table, where)
        unseen = np.zeros(len(frame), dtype=np.int64)
        for position, column in enumerate(self.schema_.categorical):
            if column.name in table.unseen:
                unseen += table.codes[:, position] < 0
        result = pd.DataFrame({self.schema_.id_column or "row": table.ids, "score": scores,
                               "rank": ranks(scores), "verdict": self.verdicts(scores),
                               "unseen_categories": unseen})
        top = contributions.argmax(1)
        result["top_column"] = np.asarray(self._variable_names(), dtype=object)[top]
        evidence = contributions.sum(1)
        result["top_share"] = contributions[np.arange(len(top)), top] / np.where(evidence > 0, evidence, 1.0)
        if flagged.any():
            result.loc[flagged, "score"] = np.inf
            result.loc[flagged, "verdict"] = "fail"
            result.loc[flagged, "top_column"] = culprits
            result.loc[flagged, "top_share"] = 1.0
            result["rank"] = ranks(result["score"].to_numpy())
        for level, level_norms in enumerate(norms.sum(2).T):
            result[f"norm_{level + 1}"] = level_norms
        return result

    def _check_finite(self, scores: np.ndarray, contributions: np.ndarray, where: str) -> None:
        """Refuse to hand out a score that is not a number, naming the row and the columns behind it.

        Raises:
            SchemaError: A row's score is NaN or infinite.
        """
        broken = np.flatnonzero(~np.isfinite(scores))
        if broken.size:
            row = broken[0]
            names = np.asarray(self._variable_names(), dtype=object)[~np.isfinite(contributions[row])]
            raise SchemaError(f"{where}: data row {row + 1} (and {broken.size - 1} more) cannot be scored: its "
                              f"value(s) in column(s) {', '.join(map(repr, names))} lie too far outside the "
                              "training data for a finite score; check them")

    def _beyond_reach(self, table: EncodedTable, where: str) -> tuple[np.ndarray, list[str]]:
        """Rows holding a value the model cannot score ``(N,)`` bool, and the first such column of each.

        They get the score ``inf``, the verdict ``fail`` and that column as
        ``top_column``: the network's own score of them would be an
        extrapolation (see :data:`segqc.data.tabular.MAX_STANDARD_UNITS`).
        """
        flagged = table.beyond.any(1)
        names = [column.name for column in self.schema_.continuous]
        culprits = [names[int(np.argmax(row))] for row in table.beyond[flagged]]
        if culprits:
            first = int(np.flatnonzero(flagged)[0])
            logger.warning("%s: %d row(s) hold values the model cannot score (infinite, or more than %g standard "
                           "deviations from the training values), e.g. data row %d in column %r; they get the "
                           "score inf and the verdict fail", where, len(culprits), MAX_STANDARD_UNITS, first + 1,
                           culprits[0])
        return flagged, culprits

    def save(self, path: str | Path) -> Path:
        """Write the fitted detector as a model bundle directory (atomic)."""
        self._check_fitted()
        metadata = {"schema": self.schema_.to_dict(), "max_integer_categories": self.max_integer_categories,
                    "head": HEAD}
        arrays = bundle.with_prefix("head", self.head_.to_arrays())
        return self._write_bundle(path, "tabular", metadata, arrays)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> TabularQC:
        """Read a detector saved with :meth:`save`.

        Args:
            path: The bundle directory.
            device: Device for scoring (``auto``, ``cpu``, ``cuda``); default: as trained.
        """
        content = bundle.read_bundle(path, "tabular")
        meta = content.metadata
        if meta.get("head") != HEAD:
            raise BundleError(f"{path}: tabular model written by an earlier segqc whose anomaly score "
                              "(without the columns' marginal tails) is no longer supported; "
                              "refit it with 'segqc tabular fit'")
        with cls._bundle_errors(path):
            model_cfg = TabularModelConfig(**meta["model"])
            schema = TabularSchema.from_dict(meta["schema"])
            detector = cls(model_cfg, cls._saved_training(meta, device), id_column=schema.id_column,
                           max_integer_categories=meta.get("max_integer_categories", 20))
            detector.schema_ = schema
            detector._restore(content, detector._score_model(schema.cardinalities, content.tensors["taus"],
                                                             content.tensors["sigmas"]))
            detector.contamination_ = float(detector.training_.get("contamination", 0.0))
            detector.head_ = TabularEvidence.from_arrays(bundle.part("head", content.arrays), model_cfg.min_scale,
                                                         model_cfg.marginal_weight)
        return detector
