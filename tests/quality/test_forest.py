"""Trees as arrays against scikit-learn, the reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesRegressor

from segqc.quality.forest import TreeEnsemble


@pytest.mark.parametrize("outputs", [1, 3])
def test_predictions_equal_scikit_learns_and_the_spread_is_the_trees(outputs: int) -> None:
    rng = np.random.default_rng(outputs)
    features = rng.normal(size=(400, 12))
    targets = np.column_stack([np.tanh(features[:, i]) for i in range(outputs)]) + 0.1 * rng.normal(size=(400, 1))
    forest = ExtraTreesRegressor(n_estimators=30, min_samples_leaf=3, max_features=0.5, random_state=0).fit(
        features, targets if outputs > 1 else targets.ravel())
    trees = TreeEnsemble.from_arrays(TreeEnsemble.from_sklearn(forest).to_arrays())
    test = rng.normal(size=(100, 12)).astype(np.float64)
    mean, spread = trees.predict(test)
    np.testing.assert_array_equal(mean, forest.predict(test).reshape(100, outputs))
    per_tree = np.stack([tree.predict(test).reshape(100, outputs) for tree in forest.estimators_])
    np.testing.assert_allclose(spread, per_tree.std(0), atol=1e-12)


def test_arrays_that_are_not_trees_are_refused() -> None:
    rng = np.random.default_rng(0)
    forest = ExtraTreesRegressor(n_estimators=3, random_state=0).fit(rng.normal(size=(50, 3)), rng.normal(size=50))
    arrays = TreeEnsemble.from_sklearn(forest).to_arrays()
    looped = {**arrays, "left": arrays["left"].copy()}
    looped["left"][0] = 0  # the root its own child: a walk would never end
    with pytest.raises(ValueError, match="child"):
        TreeEnsemble.from_arrays(looped)
    with pytest.raises(ValueError, match="lengths"):
        TreeEnsemble.from_arrays({**arrays, "threshold": arrays["threshold"][:-1]})
