"""The rankings segqc produces, and how well each one finds the failed masks.

A ranking orders the cases "higher = more likely failed"; every ranking a run
has is measured against the same ground truth, so they can be compared side by
side (``failure_detection`` and ``correlations`` of ``summary.json``, keyed by
ranking name):

=========================  ============================  ===========================================
name                       risk (higher = worse)         present when
=========================  ============================  ===========================================
``predicted_dice``         ``1 - predicted_dice``        the model has a quality estimator (headline)
``score``                  the anomaly score             always (headline without an estimator)
``reconstruction_dice``    ``1 - reconstruction_dice``   the table has the column
``predicted_dice_<label>`` ``1 - predicted_dice_<label>``  more than one foreground label
=========================  ============================  ===========================================

A failure is a mask whose mean Dice is below the failure Dice (for every
ranking, per-structure ones included); correlations are with mean Dice, HD95
and MSD, and a per-structure ranking also with its own structure's Dice
(``dice_<label>``). :func:`read_rankings` reads these figures from a
``summary.json`` of any segqc version (older ones hold the anomaly score's only).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segqc.metrics import CORRELATED_METRICS, correlations, failure_detection, float_array

SCORE = "score"
PREDICTED_DICE = "predicted_dice"
RECONSTRUCTION_DICE = "reconstruction_dice"
_STRUCTURE_COLUMN = re.compile(r"^predicted_dice_(-?\d+)$")


@dataclass(frozen=True)
class Ranking:
    """One way of ordering the cases from most to least likely failed.

    Attributes:
        name: Key in ``summary.json`` (the ``scores.csv`` column it comes from).
        label: How the report and the terminal name it.
        inverted: Whether the risk is ``1 - column`` (a Dice-like column) rather than the column itself.
        structure: Label value of a per-structure ranking, else ``None``.
    """

    name: str
    label: str
    inverted: bool
    structure: str | None = None

    @property
    def risk_text(self) -> str:
        """The risk as a formula of ``scores.csv`` columns, e.g. ``1 - predicted_dice``."""
        return f"1 - {self.name}" if self.inverted else self.name

    def risk(self, table: pd.DataFrame) -> np.ndarray:
        """Risk per row of ``table`` (higher = more likely failed), ``(N,)`` float64 (NaN where missing)."""
        values = float_array(table[self.name])
        return 1.0 - values if self.inverted else values


def ranking_named(name: str) -> Ranking | None:
    """The ranking a ``scores.csv`` column gives, or ``None`` for a column that is no ranking."""
    fixed = {PREDICTED_DICE: Ranking(PREDICTED_DICE, "predicted Dice", inverted=True),
             SCORE: Ranking(SCORE, "anomaly score", inverted=False),
             RECONSTRUCTION_DICE: Ranking(RECONSTRUCTION_DICE, "reconstruction agreement", inverted=True)}
    if name in fixed:
        return fixed[name]
    match = _STRUCTURE_COLUMN.match(name)
    return None if match is None else Ranking(name, f"predicted Dice of label {match.group(1)}", inverted=True,
                                              structure=match.group(1))


def rankings(columns: Iterable[str]) -> list[Ranking]:
    """The rankings a ``scores.csv`` with these columns holds, the headline first.

    Args:
        columns: Column names of the scores table.

    Returns:
        Predicted Dice (when present), anomaly score, reconstruction agreement
        (when present), then predicted Dice per structure (with two or more
        foreground labels).
    """
    present = list(columns)
    structures = [name for name in present if _STRUCTURE_COLUMN.match(name)]
    names = [name for name in (PREDICTED_DICE, SCORE, RECONSTRUCTION_DICE) if name in present or name == SCORE]
    return [ranking_named(name) for name in names + (structures if len(structures) > 1 else [])]


def ranking_figures(table: pd.DataFrame, top_k: int, dice_threshold: float) -> dict[str, Any]:
    """The ranking blocks of ``summary.json``: every ranking against the same ground truth.

    Args:
        table: ``scores.csv`` rows with ``status``, ``score``, ``dice_mean``
            and optionally ``msd``, ``hd95``, ``dice_<label>`` and the ranking
            columns; rows whose status is not ``ok`` are left out.
        top_k: Size of the top K (the ``top_k`` highest risks of each ranking) for the top-K correlations.
        dice_threshold: Mean Dice below which a mask counts as failed.

    Returns:
        ``headline_ranking`` (name), ``rankings`` (``{name: {"label", "risk"}}``,
        headline first), ``failure_detection`` (``{name: failure_detection(...)}``)
        and ``correlations`` (``{name: {metric: correlations(...)}}``).
    """
    scored = table[table["status"] == "ok"]
    found = rankings(scored.columns)
    detection, correlated = {}, {}
    for ranking in found:
        risk = ranking.risk(scored)
        detection[ranking.name] = failure_detection(risk, scored["dice_mean"], dice_threshold)
        metrics = [metric for metric in CORRELATED_METRICS if metric in scored.columns]
        if ranking.structure is not None and f"dice_{ranking.structure}" in scored.columns:
            metrics.append(f"dice_{ranking.structure}")
        correlated[ranking.name] = {metric: correlations(risk, scored[metric], top_k) for metric in metrics}
    return {"headline_ranking": found[0].name,
            "rankings": {ranking.name: {"label": ranking.label, "risk": ranking.risk_text} for ranking in found},
            "failure_detection": detection, "correlations": correlated}


@dataclass
class RankingFigures:
    """The ranking figures of a ``summary.json``, in the current shape whatever version wrote it.

    Attributes:
        headline: Name of the headline ranking.
        labels: ``{name: display label}``, headline first.
        failure_detection: ``{name: {"dice_threshold", "failures", "auroc", "average_precision", "aurc"}}``.
        correlations: ``{name: {metric: {"pearson", "spearman", ..., "n", "n_top_k"}}}``.
    """

    headline: str
    labels: dict[str, str] = field(default_factory=dict)
    failure_detection: dict[str, dict[str, Any]] = field(default_factory=dict)
    correlations: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.failure_detection or self.correlations)


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def read_rankings(summary: Mapping[str, Any]) -> RankingFigures:
    """The ranking figures of a ``summary.json`` dict of any segqc version.

    Before rankings were keyed by name (segqc 0.1 reports), ``failure_detection``
    and ``correlations`` held the anomaly score's figures only: they are read as
    the ``score`` ranking's.

    Args:
        summary: The parsed ``summary.json``.

    Returns:
        The figures; falsy when the summary has none (no ground truth).
    """
    detection, correlated = _mapping(summary.get("failure_detection")), _mapping(summary.get("correlations"))
    if "auroc" in detection or any(metric in correlated for metric in CORRELATED_METRICS):
        detection = {SCORE: detection} if detection else {}
        correlated = {SCORE: correlated} if correlated else {}
    described = _mapping(summary.get("rankings"))
    names = list(described) + [name for name in [*detection, *correlated] if name not in described]
    labels = {}
    for name in dict.fromkeys(names):
        known = ranking_named(name)
        labels[name] = str(_mapping(described.get(name)).get("label") or (known.label if known else name))
    headline = str(summary.get("headline_ranking") or (names[0] if names else SCORE))
    return RankingFigures(headline, labels, {name: _mapping(figures) for name, figures in detection.items()},
                          {name: {metric: _mapping(stats) for metric, stats in _mapping(figures).items()}
                           for name, figures in correlated.items()})
