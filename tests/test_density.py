"""Density of score-norm embeddings, calibration, verdicts and ranks."""

from __future__ import annotations

import numpy as np
import pytest

from segqc.density import Calibration, EmbeddingDensity, ranks


def bimodal_norms(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.where(rng.random(n)[:, None] < 0.5, 1.0, 4.0)
    return np.exp(centres + 0.1 * rng.normal(size=(n, 3)))


def test_bic_picks_several_components_and_scores_outliers_higher() -> None:
    density = EmbeddingDensity(max_components=5).fit(bimodal_norms(600))
    assert density.n_components_ >= 2
    inliers = density.score(bimodal_norms(100, seed=1))
    outliers = density.score(np.exp(np.full((5, 3), 2.5)))
    assert outliers.min() > np.quantile(inliers, 0.99)


def test_arrays_round_trip_gives_identical_scores() -> None:
    norms = bimodal_norms(300)
    density = EmbeddingDensity(max_components=3).fit(norms)
    rebuilt = EmbeddingDensity.from_arrays(density.to_arrays())
    np.testing.assert_allclose(rebuilt.score(norms), density.score(norms))


def test_small_samples_use_one_component() -> None:
    assert EmbeddingDensity(max_components=8).fit(bimodal_norms(20)).n_components_ == 1


def test_calibration_quantiles_and_verdicts() -> None:
    calibration = Calibration.from_scores(np.arange(101.0), 0.9, 0.99)
    assert calibration.review == pytest.approx(90.0) and calibration.fail == pytest.approx(99.0)
    verdicts = calibration.verdicts(np.array([10.0, 95.0, 100.0, np.nan]))
    assert verdicts.tolist() == ["pass", "review", "fail", "fail"]
    with pytest.raises(ValueError):
        Calibration.from_scores([1.0, 2.0], 0.99, 0.9)


def test_ranks_put_the_highest_score_first() -> None:
    assert ranks([0.1, 5.0, 3.0, 5.0]).tolist() == [4, 1, 3, 2]
