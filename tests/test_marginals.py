"""Marginal tail evidence, the tabular evidence that combines it with the score model's, and trimming."""

from __future__ import annotations

import numpy as np
import pytest

from segqc.contamination import estimate_contamination, typical_rows
from segqc.errors import NotFittedError
from segqc.evidence import TabularEvidence, spread
from segqc.marginals import MarginalTails


def marginal_rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Codes of a binary column (10 % ones) and a 4-category column, and a skewed continuous column."""
    rng = np.random.default_rng(seed)
    codes = np.stack([(rng.random(n) < 0.1).astype(np.int64), rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])], 1)
    return codes, rng.exponential(size=(n, 1)).astype(np.float32)


def test_rare_values_carry_more_evidence_than_common_ones() -> None:
    codes, continuous = marginal_rows(2000)
    tails = MarginalTails().fit(codes, continuous, [2, 4])
    probe = np.array([[0, 0], [1, 3], [-1, -1]])
    evidence = tails.evidence(probe, np.full((3, 1), np.median(continuous), np.float32))
    assert evidence.shape == (3, 3) and (evidence >= 0).all()
    # a binary column's rare value counts on both of its slots: -log p - log(1 - (1 - p)) = -2 log p
    assert evidence[1, 0] == pytest.approx(-2 * np.log(tails.shares_[0][1]))
    assert evidence[0, 0] < 0.3 < 4 < evidence[1, 0] < evidence[2, 0]  # common < rare < never seen
    assert evidence[0, 1] < evidence[1, 1] < evidence[2, 1]
    assert evidence[0, 2] == pytest.approx(np.log(2), abs=0.05)  # the median sits at the 50 % tail


def test_continuous_evidence_is_log2_plus_exp1_in_distribution_and_grows_beyond_it() -> None:
    codes, continuous = marginal_rows(4000)
    tails = MarginalTails().fit(codes, continuous, [2, 4])
    fresh = marginal_rows(4000, seed=1)
    # min(F, 1 - F) is uniform on (0, 1/2): its -log is log 2 plus an Exp(1) variable
    assert tails.evidence(*fresh)[:, 2].mean() == pytest.approx(1 + np.log(2), abs=0.1)
    far = np.array([[continuous.max() + 1], [continuous.max() + 5]], np.float32)
    beyond = tails.evidence(np.zeros((2, 2), np.int64), far)[:, 2]
    assert beyond[1] > beyond[0] > tails.evidence(codes, continuous)[:, 2].max()


@pytest.mark.parametrize("num_categorical,num_continuous", [(2, 1), (0, 1), (2, 0)])
def test_marginals_round_trip_through_arrays(num_categorical: int, num_continuous: int) -> None:
    codes, continuous = marginal_rows(300)
    codes, continuous = codes[:, :num_categorical], continuous[:, :num_continuous]
    tails = MarginalTails().fit(codes, continuous, [2, 4][:num_categorical])
    rebuilt = MarginalTails.from_arrays(tails.to_arrays())
    np.testing.assert_array_equal(rebuilt.evidence(codes, continuous), tails.evidence(codes, continuous))
    assert tails.evidence(codes, continuous).shape == (300, num_categorical + num_continuous)
    with pytest.raises(NotFittedError):
        MarginalTails().evidence(codes, continuous)


def test_evidence_adds_both_views_on_their_spreads() -> None:
    rng = np.random.default_rng(0)
    codes, continuous = marginal_rows(500)
    norms = np.exp(rng.normal(size=(500, 2, 3)))
    for weight in (0.0, 1.0, 2.5):
        evidence = TabularEvidence(marginal_weight=weight).fit(norms, codes, continuous, [2, 4])
        expected = (evidence.norms_.contributions(norms) / evidence.model_spread_
                    + weight * evidence.tails_.evidence(codes, continuous) / evidence.tails_spread_)
        np.testing.assert_allclose(evidence.contributions(norms, codes, continuous), expected)
        np.testing.assert_allclose(evidence.score(norms, codes, continuous), expected.sum(1))
        rebuilt = TabularEvidence.from_arrays(evidence.to_arrays(), marginal_weight=weight)
        np.testing.assert_allclose(rebuilt.score(norms, codes, continuous), evidence.score(norms, codes, continuous))
    assert evidence.model_spread_ == pytest.approx(spread(evidence.norms_.score(norms)))


@pytest.mark.parametrize("values,expected", [([0, 1, 2, 3, 4], 2.0), ([5, 5, 5, 5], 1.0), ([1, 1, 1, 1, 9], 3.2)])
def test_spread_is_the_interquartile_range_with_fallbacks(values: list[float], expected: float) -> None:
    assert spread(np.asarray(values, dtype=float)) == pytest.approx(expected)


@pytest.mark.parametrize("share", [0.0, 0.05, 0.2, 0.4])
def test_contamination_estimate_finds_planted_outliers(share: float) -> None:
    rng = np.random.default_rng(1)
    inliers = rng.normal(10.0, 1.0, size=5000)
    planted = rng.uniform(20, 40, size=int(share * 5000 / (1 - share)))
    assert estimate_contamination(np.concatenate([inliers, planted])) == pytest.approx(share, abs=0.01)


def test_contamination_estimate_leans_high_on_skewed_scores() -> None:
    """Right-skewed typical scores: their rare rows count too, a little, never a planted share's worth less."""
    rng = np.random.default_rng(2)
    inliers = rng.gamma(4.0, size=5000)
    assert 0.0 < estimate_contamination(inliers) <= 0.03
    planted = rng.uniform(40, 80, size=555)  # 10 %
    assert 0.1 <= estimate_contamination(np.concatenate([inliers, planted])) <= 0.13


def test_contamination_estimate_of_tied_scores_is_zero() -> None:
    assert estimate_contamination(np.r_[np.zeros(80), np.arange(20.0)]) == 0.0


def test_typical_rows_leave_out_the_highest_share() -> None:
    scores = np.array([0.5, 9.0, 1.0, 7.0, 3.0, 9.0, 2.0, 0.0, 4.0, 5.0])
    keep = typical_rows(scores, 0.25)  # round(2.5) = 2 rows go: the two 9.0
    assert keep.tolist() == [True, False, True, True, True, False, True, True, True, True]
    assert typical_rows(scores, 0.0).all()
