"""Tail evidence of the training marginals: how rare each value of a row is in its own column.

The idea of ECOD / COPOD (empirical tail probabilities per input dimension,
summed), written for segqc's tabular encoding. Every input slot of a row is
compared with that slot's marginal over the training rows, and its evidence is
``-log`` of the probability of a value at least as extreme, on the side where
the row's value lies:

* a categorical column with training shares ``p_1..p_K`` has ``K`` one-hot
  slots; the row's category ``c`` gives ``-log p_c`` (its slot is 1) and every
  other category ``k`` gives ``-log(1 - p_k)`` (its slot is 0, which a dominant
  category makes rare). A binary column's rare value therefore counts twice,
  as it does in ECOD on one-hot inputs. Shares are smoothed by half a row per
  category; a category never seen in training has the share of half a row.
* a continuous column gives ``-log min(F(x), 1 - F(x))`` with ``F`` its
  training distribution, read through normal scores (quantile knots of the
  training values, extended linearly beyond them, so a value far outside the
  training range keeps gaining evidence).

A variable's evidence is the sum over its slots; under the training
distribution a continuous column's evidence is ``log 2`` plus an Exp(1)
variable, whatever the column's shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from segqc.data.tabular import normal_score_knots
from segqc.errors import NotFittedError

SMOOTHING = 0.5
"""Rows added to every category's count before the shares are taken."""


class MarginalTails:
    """Per-variable tail evidence of encoded rows under the training marginals.

    Attributes:
        shares_: Smoothed training share of every category, one ``(K,)`` array
            per categorical variable (missing-value indicators included).
        unseen_: Share given to a category never seen in training, ``(D_cat,)``.
        knots_: Quantile knots of every continuous column, ``(D_cont, k)``,
            padded with NaN.
        normal_scores_: Standard-normal score of every knot, same shape.
    """

    def fit(self, codes: np.ndarray, continuous: np.ndarray, cardinalities: Sequence[int]) -> MarginalTails:
        """Learn the marginals of training rows.

        Args:
            codes: Category codes, ``(N, D_cat)`` int (``-1`` = unseen, not counted).
            continuous: Encoded continuous values, ``(N, D_cont)``.
            cardinalities: Categories of every categorical variable, ``(D_cat,)``.

        Returns:
            self
        """
        self.shares_, unseen = [], []
        for column, k in zip(codes.T, cardinalities):
            counts = np.bincount(column[column >= 0], minlength=k).astype(np.float64)
            total = counts.sum() + SMOOTHING * k
            self.shares_.append((counts + SMOOTHING) / total)
            unseen.append(SMOOTHING / total)
        self.unseen_ = np.asarray(unseen, dtype=np.float64)
        knots = [normal_score_knots(column.astype(np.float64)) for column in continuous.T]
        width = max((len(k) for k, _ in knots), default=0)
        self.knots_ = np.full((len(knots), width), np.nan)
        self.normal_scores_ = np.full((len(knots), width), np.nan)
        for i, (k, s) in enumerate(knots):
            self.knots_[i, :len(k)], self.normal_scores_[i, :len(s)] = k, s
        return self

    def evidence(self, codes: np.ndarray, continuous: np.ndarray) -> np.ndarray:
        """Tail evidence of every variable of encoded rows.

        Args:
            codes: Category codes, ``(N, D_cat)`` (``-1`` = unseen).
            continuous: Encoded continuous values, ``(N, D_cont)``.

        Returns:
            Non-negative evidence, ``(N, D_cat + D_cont)``, in the order of the
            score model's variables.
        """
        if not hasattr(self, "shares_"):
            raise NotFittedError("the marginal tail model is not fitted")
        columns = []
        for column, shares, unseen in zip(codes.T, self.shares_, self.unseen_):
            seen = column >= 0
            own = np.where(seen, shares[column.clip(0)], unseen)
            absent = -np.log1p(-shares)
            others = absent.sum() - np.where(seen, absent[column.clip(0)], 0.0)
            columns.append(-np.log(own) + others)
        for column, knots, scores in zip(continuous.T, self.knots_, self.normal_scores_):
            columns.append(-stats.norm.logsf(np.abs(self._normal_score(column, knots, scores))))
        return np.stack(columns, 1) if columns else np.zeros((len(codes), 0))

    @staticmethod
    def _normal_score(values: np.ndarray, knots: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Normal scores ``(N,)`` of values ``(N,)``: interpolated between knots, linear (slope 1) beyond them."""
        knots, scores = knots[~np.isnan(knots)], scores[~np.isnan(scores)]
        values = values.astype(np.float64)
        inside = np.interp(values, knots, scores)
        above = scores[-1] + (values - knots[-1])
        below = scores[0] + (values - knots[0])
        return np.where(values > knots[-1], above, np.where(values < knots[0], below, inside))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Fitted parameters as named arrays (for an ``.npz`` file)."""
        widths = [len(s) for s in self.shares_]
        shares = np.full((len(widths), max(widths, default=0)), np.nan)
        for i, s in enumerate(self.shares_):
            shares[i, :len(s)] = s
        return {"shares": shares, "unseen": self.unseen_, "knots": self.knots_, "normal_scores": self.normal_scores_}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> MarginalTails:
        """Rebuild a fitted model from :meth:`to_arrays` output."""
        tails = cls()
        tails.shares_ = [row[~np.isnan(row)] for row in np.asarray(arrays["shares"], dtype=np.float64)]
        tails.unseen_ = np.asarray(arrays["unseen"], dtype=np.float64)
        tails.knots_ = np.asarray(arrays["knots"], dtype=np.float64)
        tails.normal_scores_ = np.asarray(arrays["normal_scores"], dtype=np.float64)
        if len(tails.shares_) != len(tails.unseen_) or tails.knots_.shape != tails.normal_scores_.shape:
            raise ValueError(f"marginal arrays disagree: {len(tails.shares_)} share rows, {len(tails.unseen_)} unseen "
                             f"shares, knots {tails.knots_.shape}, normal scores {tails.normal_scores_.shape}")
        return tails
