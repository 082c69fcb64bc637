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


def _both_views(evidence: TabularEvidence, norms: np.ndarray, codes: np.ndarray, continuous: np.ndarray,
                weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-variable evidence of each view on the score's scale, computed from the fitted parts."""
    return (evidence.norms_.contributions(norms) / evidence.model_spread_,
            weight * evidence.tails_.evidence(codes, continuous) / evidence.tails_spread_)


@pytest.mark.parametrize("weight", [1.0, 2.5])
def test_score_is_the_log_sum_exp_of_both_views_excess(weight: float) -> None:
    rng = np.random.default_rng(0)
    codes, continuous = marginal_rows(500)
    norms = np.exp(rng.normal(size=(500, 2, 3)))
    evidence = TabularEvidence(marginal_weight=weight).fit(norms, codes, continuous, [2, 4])
    model, tails = _both_views(evidence, norms, codes, continuous, weight)
    model_excess, tails_excess = model.sum(1) - np.median(model.sum(1)), tails.sum(1) - np.median(tails.sum(1))
    scores = evidence.score(norms, codes, continuous)
    np.testing.assert_allclose(scores, np.log(np.exp(model_excess) + np.exp(tails_excess)))
    pull = np.exp(model_excess) / (np.exp(model_excess) + np.exp(tails_excess))
    np.testing.assert_allclose(evidence.contributions(norms, codes, continuous),
                               pull[:, None] * model + (1 - pull[:, None]) * tails)
    rebuilt = TabularEvidence.from_arrays(evidence.to_arrays(), marginal_weight=weight)
    np.testing.assert_allclose(rebuilt.score(norms, codes, continuous), scores)
    assert evidence.model_spread_ == pytest.approx(spread(evidence.norms_.score(norms)))


def test_score_model_alone_and_models_saved_before_the_log_sum_exp_rule_add_their_views() -> None:
    rng = np.random.default_rng(0)
    codes, continuous = marginal_rows(500)
    norms = np.exp(rng.normal(size=(500, 2, 3)))
    alone = TabularEvidence(marginal_weight=0.0).fit(norms, codes, continuous, [2, 4])
    model, _ = _both_views(alone, norms, codes, continuous, 0.0)
    np.testing.assert_allclose(alone.contributions(norms, codes, continuous), model)
    np.testing.assert_allclose(alone.score(norms, codes, continuous), model.sum(1))
    both = TabularEvidence(marginal_weight=1.0).fit(norms, codes, continuous, [2, 4])
    earlier = {name: array for name, array in both.to_arrays().items() if name != "medians"}
    legacy = TabularEvidence.from_arrays(earlier, marginal_weight=1.0)
    np.testing.assert_allclose(legacy.score(norms, codes, continuous),
                               sum(view.sum(1) for view in _both_views(both, norms, codes, continuous, 1.0)))


def test_a_row_far_out_in_one_view_outranks_rows_moderately_unusual_in_both() -> None:
    """The smooth maximum: one view's large excess is not diluted by the other view finding nothing."""
    rng = np.random.default_rng(3)
    codes, continuous = marginal_rows(2000)
    norms = np.exp(rng.normal(size=(2000, 2, 3)))
    evidence = TabularEvidence().fit(norms, codes, continuous, [2, 4])
    model, tails = _both_views(evidence, norms, codes, continuous, 1.0)
    model_excess = model.sum(1) - np.median(model.sum(1))
    tails_excess = tails.sum(1) - np.median(tails.sum(1))
    scores = evidence.score(norms, codes, continuous)
    one_view = np.argmax(np.maximum(model_excess, tails_excess) - (model_excess + tails_excess) / 2)
    far = max(model_excess[one_view], tails_excess[one_view])
    both_views = (model_excess > 0.3 * far) & (tails_excess > 0.3 * far) & (model_excess + tails_excess < 1.2 * far)
    assert both_views.any()
    assert (scores[one_view] > scores[both_views]).all()
    assert ((model_excess + tails_excess)[one_view] < (model_excess + tails_excess)[both_views]).any()


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
