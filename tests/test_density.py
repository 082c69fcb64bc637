"""Density of score-norm embeddings, calibration, verdicts and ranks."""

from __future__ import annotations

import numpy as np
import pytest

from segqc.density import EmbeddingDensity, VariableNormDensity


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


def test_variable_norm_density_is_one_sided_and_balanced() -> None:
    rng = np.random.default_rng(0)
    scales = np.array([1.0, 1e4])  # a continuous-like and a categorical-like variable: 4 orders apart
    inliers = np.exp(rng.normal(size=(500, 2, 2))) * scales
    density = VariableNormDensity().fit(inliers)
    small = inliers.min(0, keepdims=True) / 10  # norms below every inlier's
    assert density.score(small)[0] == 0.0
    raise_first = np.median(inliers, 0, keepdims=True).copy()
    raise_first[..., 0] *= np.e**3
    raise_second = np.median(inliers, 0, keepdims=True).copy()
    raise_second[..., 1] *= np.e**3
    # the same relative excess counts the same whatever the variable's scale
    assert density.score(raise_first)[0] == pytest.approx(density.score(raise_second)[0], rel=0.2)
    assert density.score(raise_first)[0] > np.quantile(density.score(inliers), 0.99)
    contributions = density.contributions(raise_first)
    assert contributions.shape == (1, 2) and contributions[0, 0] > 10 * contributions[0, 1]
    np.testing.assert_allclose(contributions.sum(1), density.score(raise_first))
    rebuilt = VariableNormDensity.from_arrays(density.to_arrays())
    np.testing.assert_allclose(rebuilt.score(inliers), density.score(inliers))
