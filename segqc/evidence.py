"""A table row's anomaly score: a smooth maximum of the score model's evidence and the marginal tail evidence.

Two views of a row, each strong where the other is weak:

* the score model's per-variable evidence (:class:`segqc.density.VariableNormDensity`):
  how much less expected a value is *given the rest of the row* than the same
  column's values in the training rows -- it finds broken dependencies, and it
  is what a network that has seen a few anomalies in training can learn to
  accept;
* the marginal tail evidence (:class:`segqc.marginals.MarginalTails`): how rare
  each value is in its own column -- the signal ECOD / COPOD use, right where
  anomalies are values the training rows rarely take, and hardly moved by a
  few anomalies among the training rows.

Each view's row total is divided by its interquartile range over the fitting
rows, so that neither dominates by its units, and the marginal view is
weighted by ``marginal_weight``. The score is the log-sum-exp of the two
totals, each less its median over the fitting rows: a smooth maximum of the
two views' excess, so a row that either view finds far beyond its typical
rows scores high even when the other view sees nothing unusual (anomalies
that keep every column's marginal, and rare values the network has learnt to
accept). A plain sum let the view that sees nothing dilute the other: on a
synthetic table of broken dependencies it halved the score model's lead
(docs/benchmarks.md, issue 30). A variable's contribution is its share of
each view, weighted by how much that view drives the score (the score's
gradient with respect to the view's total).

A model saved before the log-sum-exp rule (its head stores no medians) keeps
scoring with the plain sum of both views, the rule its thresholds were
calibrated with.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special

from segqc.density import VariableNormDensity
from segqc.errors import NotFittedError
from segqc.marginals import MarginalTails


def spread(values: np.ndarray) -> float:
    """Interquartile range of ``values`` ``(N,)``; their standard deviation when it is 0, and 1 when both are."""
    q1, q3 = np.percentile(values, [25, 75])
    if q3 > q1:
        return float(q3 - q1)
    deviation = float(np.std(values))
    return deviation if deviation > 0 else 1.0


class TabularEvidence:
    """Per-variable evidence of table rows from the score model and the training marginals.

    Args:
        min_scale: Floor of the spread of a log score norm (see
            :class:`~segqc.density.VariableNormDensity`).
        marginal_weight: Weight of the marginal tail evidence against the
            score model's (0: the score model alone).

    Attributes:
        norms_: Inlier medians and spreads of the per-variable score norms.
        tails_: Training marginals of every variable.
        model_spread_: Interquartile range of the score model's row totals on the fitting rows.
        tails_spread_: The same for the marginal evidence.
        medians_: Median of each view's row total on the score's scale over the fitting rows, ``(2,)``
            (``None`` for a model saved before the log-sum-exp rule).
    """

    def __init__(self, min_scale: float = 0.05, marginal_weight: float = 1.0) -> None:
        self.min_scale = min_scale
        self.marginal_weight = marginal_weight

    def fit(self, norms: np.ndarray, codes: np.ndarray, continuous: np.ndarray,
            cardinalities: Sequence[int]) -> TabularEvidence:
        """Learn both views from the fitting rows.

        Args:
            norms: Squared score norms, ``(N, L, V)``.
            codes: Category codes, ``(N, D_cat)``.
            continuous: Encoded continuous values, ``(N, D_cont)``.
            cardinalities: Categories of every categorical variable, ``(D_cat,)``.

        Returns:
            self
        """
        self.norms_ = VariableNormDensity(self.min_scale).fit(norms)
        self.tails_ = MarginalTails().fit(codes, continuous, cardinalities)
        model, tails = self.norms_.score(norms), self.tails_.evidence(codes, continuous).sum(1)
        self.model_spread_, self.tails_spread_ = spread(model), spread(tails)
        self.medians_ = np.array([np.median(model) / self.model_spread_,
                                  self.marginal_weight * np.median(tails) / self.tails_spread_])
        return self

    def _views(self, norms: np.ndarray, codes: np.ndarray, continuous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-variable evidence of each view on the score's scale: the score model's and the weighted tails',
        ``(N, V)`` each."""
        if not hasattr(self, "norms_"):
            raise NotFittedError("the tabular evidence is not fitted")
        model = self.norms_.contributions(norms) / self.model_spread_
        if not self.marginal_weight:
            return model, np.zeros_like(model)
        return model, self.marginal_weight * self.tails_.evidence(codes, continuous) / self.tails_spread_

    def score_and_contributions(self, norms: np.ndarray, codes: np.ndarray,
                                continuous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly scores of rows and each variable's share of the evidence behind them, from one pass over both views.

        The score is the score model's evidence alone when ``marginal_weight``
        is 0, else the log-sum-exp of both views' excess (their sum for a model
        saved before that rule). A variable's share is its evidence in each
        view, weighted by that view's pull on the score (the softmax of the
        views' excess; 1 for a view used alone or summed).

        Args:
            norms: Squared score norms, ``(N, L, V)``.
            codes: Category codes, ``(N, D_cat)``.
            continuous: Encoded continuous values, ``(N, D_cont)``.

        Returns:
            Scores ``(N,)`` (higher = more anomalous) and non-negative shares ``(N, V)``.
        """
        model, tails = self._views(norms, codes, continuous)
        if not self.marginal_weight or self.medians_ is None:
            both = model + tails
            return both.sum(1), both
        model_excess, tails_excess = model.sum(1) - self.medians_[0], tails.sum(1) - self.medians_[1]
        pull = special.expit(model_excess - tails_excess)
        return (np.logaddexp(model_excess, tails_excess),
                pull[:, None] * model + (1.0 - pull)[:, None] * tails)

    def contributions(self, norms: np.ndarray, codes: np.ndarray, continuous: np.ndarray) -> np.ndarray:
        """Each variable's share of the evidence, ``(N, V)`` (:meth:`score_and_contributions`)."""
        return self.score_and_contributions(norms, codes, continuous)[1]

    def score(self, norms: np.ndarray, codes: np.ndarray, continuous: np.ndarray) -> np.ndarray:
        """Anomaly scores ``(N,)`` of rows (:meth:`score_and_contributions`)."""
        return self.score_and_contributions(norms, codes, continuous)[0]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Fitted parameters as named arrays (for an ``.npz`` file)."""
        return {**{f"norms_{k}": v for k, v in self.norms_.to_arrays().items()},
                **{f"tails_{k}": v for k, v in self.tails_.to_arrays().items()},
                "spreads": np.array([self.model_spread_, self.tails_spread_]), "medians": self.medians_}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], min_scale: float = 0.05,
                    marginal_weight: float = 1.0) -> TabularEvidence:
        """Rebuild fitted evidence from :meth:`to_arrays` output and the settings it was fitted with."""
        evidence = cls(min_scale, marginal_weight)
        evidence.norms_ = VariableNormDensity.from_arrays(
            {k.removeprefix("norms_"): v for k, v in arrays.items() if k.startswith("norms_")})
        evidence.tails_ = MarginalTails.from_arrays(
            {k.removeprefix("tails_"): v for k, v in arrays.items() if k.startswith("tails_")})
        evidence.model_spread_, evidence.tails_spread_ = (float(v) for v in arrays["spreads"])
        evidence.medians_ = np.asarray(arrays["medians"], dtype=np.float64) if "medians" in arrays else None
        return evidence
