"""A fitted forest of regression trees as plain arrays: predictions without scikit-learn objects or pickle.

The quality estimator's trees are fitted with scikit-learn
(``ExtraTreesRegressor``); a bundle keeps them as the node arrays of every tree
(:meth:`TreeEnsemble.to_arrays`), so loading a model costs reading arrays, not
refitting the forest. :meth:`TreeEnsemble.predict` walks all trees at once over
all cases, compares features in float32 as scikit-learn does, and averages the
trees in the same order, so it gives scikit-learn's predictions exactly; it
also gives the spread of the trees, the estimator's difficulty measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import ExtraTreesRegressor

_LEAF = -1


@dataclass
class TreeEnsemble:
    """Every tree's nodes, concatenated; node ``i`` of tree ``t`` is row ``offsets[t] + i``.

    Attributes:
        left: Left child of each node (tree-local index), ``_LEAF`` at leaves, ``(nodes,)``.
        right: Right child of each node, ``(nodes,)``.
        feature: Feature compared at each node, ``(nodes,)``.
        threshold: Threshold of the comparison ``x <= threshold`` (go left), ``(nodes,)``.
        value: Mean target of each node, ``(nodes, outputs)``.
        offsets: First row of each tree, ``(trees,)``.
    """

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_sklearn(cls, forest: ExtraTreesRegressor) -> TreeEnsemble:
        """The node arrays of a fitted scikit-learn forest of regression trees."""
        trees = [estimator.tree_ for estimator in forest.estimators_]
        counts = np.array([tree.node_count for tree in trees])
        return cls(np.concatenate([tree.children_left for tree in trees]).astype(np.int32),
                   np.concatenate([tree.children_right for tree in trees]).astype(np.int32),
                   np.concatenate([tree.feature for tree in trees]).astype(np.int32),
                   np.concatenate([tree.threshold for tree in trees]).astype(np.float64),
                   np.concatenate([tree.value[:, :, 0] for tree in trees]).astype(np.float64),
                   np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64))

    def leaf_values(self, features: np.ndarray) -> np.ndarray:
        """The value of the leaf each case reaches in each tree, ``(trees, N, outputs)``.

        Args:
            features: ``(N, F)``; compared in float32, as scikit-learn's trees do.
        """
        x = np.asarray(features, np.float64).astype(np.float32).astype(np.float64)
        rows = np.arange(len(x))
        values = np.empty((len(self.offsets), len(x), self.value.shape[1]))
        for tree, offset in enumerate(self.offsets):
            node = np.zeros(len(x), np.int64)
            inner = self.left[offset + node] != _LEAF
            while inner.any():
                at = offset + node[inner]
                go_left = x[rows[inner], self.feature[at]] <= self.threshold[at]
                node[inner] = np.where(go_left, self.left[at], self.right[at])
                inner = self.left[offset + node] != _LEAF
            values[tree] = self.value[offset + node]
        return values

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean prediction of the trees and their standard deviation, each ``(N, outputs)``."""
        values = self.leaf_values(features)
        total = np.zeros(values.shape[1:])
        for tree_values in values:  # tree by tree, in scikit-learn's order and arithmetic
            total += tree_values
        return total / len(values), values.std(axis=0)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The node arrays (no pickle)."""
        return {"left": self.left, "right": self.right, "feature": self.feature, "threshold": self.threshold,
                "value": self.value, "offsets": self.offsets}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TreeEnsemble:
        """Inverse of :meth:`to_arrays`.

        Raises:
            ValueError: The arrays do not describe trees (inconsistent lengths or child indices).
        """
        ensemble = cls(*(np.asarray(arrays[name]) for name in ("left", "right", "feature", "threshold", "value",
                                                                "offsets")))
        nodes = len(ensemble.left)
        if not (len(ensemble.right) == len(ensemble.feature) == len(ensemble.threshold) == len(ensemble.value)
                == nodes) or ensemble.value.ndim != 2 or ensemble.offsets.ndim != 1:
            raise ValueError("tree arrays of inconsistent lengths")
        sizes = np.diff(np.append(ensemble.offsets, nodes))
        if (sizes < 1).any():
            raise ValueError("tree arrays with an empty tree")
        local = np.arange(nodes) - np.repeat(ensemble.offsets, sizes)
        inner = ensemble.left != _LEAF
        size = np.repeat(sizes, sizes)[inner]
        children = (ensemble.left[inner], ensemble.right[inner])
        # children come after their parent inside their own tree, so every walk ends at a leaf
        if any(((child <= local[inner]) | (child >= size)).any() for child in children):
            raise ValueError("tree arrays with child indices outside their tree")
        return ensemble
