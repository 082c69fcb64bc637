"""A table row's anomaly score: the score model's evidence plus the marginal tail evidence.

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
weighted by ``marginal_weight``. A variable's contribution is its share of both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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
        self.model_spread_ = spread(self.norms_.score(norms))
        self.tails_spread_ = spread(self.tails_.evidence(codes, continuous).sum(1))
        return self

    def contributions(self, norms: np.ndarray, codes: np.ndarray, continuous: np.ndarray) -> np.ndarray:
        """Each variable's share of the score, ``(N, V)`` (non-negative, sums to the score).

        Args:
            norms: Squared score norms, ``(N, L, V)``.
            codes: Category codes, ``(N, D_cat)``.
            continuous: Encoded continuous values, ``(N, D_cont)``.
        """
        if not hasattr(self, "norms_"):
            raise NotFittedError("the tabular evidence is not fitted")
        model = self.norms_.contributions(norms) / self.model_spread_
        if not self.marginal_weight:
            return model
        return model + self.marginal_weight * self.tails_.evidence(codes, continuous) / self.tails_spread_

    def score(self, norms: np.ndarray, codes: np.ndarray, continuous: np.ndarray) -> np.ndarray:
        """Anomaly scores ``(N,)`` of rows (higher = more anomalous); arguments as :meth:`contributions`."""
        return self.contributions(norms, codes, continuous).sum(1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Fitted parameters as named arrays (for an ``.npz`` file)."""
        return {**{f"norms_{k}": v for k, v in self.norms_.to_arrays().items()},
                **{f"tails_{k}": v for k, v in self.tails_.to_arrays().items()},
                "spreads": np.array([self.model_spread_, self.tails_spread_])}

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
        return evidence
