"""The teaching set: masks of known Dice that teach the quality estimator.

At training time the held-out correct masks are degraded in graded ways
(:mod:`segqc.synthetic.corruptions`) and, where configured, segmented by the
score network itself at earlier points of its training (a weaker segmenter
whose mistakes look like a learned segmenter's); each such mask's true Dice
against its correct mask is known. :func:`fit_quality_estimator` describes them
as a prediction would be described at scoring time and fits the
:class:`~segqc.quality.estimator.QualityEstimator`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from segqc.metrics import dice_per_class, mean_dice
from segqc.quality.estimator import QualityEstimator
from segqc.synthetic.corruptions import GRAFTS_PER_SEGMENTATION, KINDS, degrade, graft

MIN_SOURCES = 2
"""Fewest held-out sources whose masks can teach the estimator: two give out-of-fold residuals for its interval."""
MIN_CASES = 4
"""Fewest held-out cases that can teach the estimator."""


def snapshot_steps(fractions: Sequence[float], steps: int) -> list[int]:
    """Training steps at ``fractions`` of ``steps``: at least 1, before the last step, each once."""
    return sorted(step for step in {max(1, round(fraction * steps)) for fraction in fractions} if step < steps)


def teaching_states(snapshots: dict[int, dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor] | None]:
    """Weights of the networks whose masks of the held-out images teach the quality estimator: each snapshot's,
    in training order, then, when there is any, the final network (``None``); no snapshots, no networks."""
    states: list[dict[str, torch.Tensor] | None] = [state for _, state in sorted(snapshots.items())]
    return states + [None] if states else []


def teaching_rows(val_rows: np.ndarray, per_case: int, most_examples: int, seed: int) -> np.ndarray:
    """The held-out rows that teach the quality estimator: all of them, or a random subset whose
    ``per_case`` teaching masks each stay within ``most_examples`` (at least :data:`MIN_CASES` rows)."""
    most = max(MIN_CASES, most_examples // per_case)
    if len(val_rows) <= most:
        return val_rows
    return np.sort(np.random.default_rng([seed, 17]).choice(val_rows, most, replace=False))


def degradation_plan(count: int, rng: np.random.Generator) -> list[tuple[str, float]]:
    """``count`` (kind, strength) pairs: a third ``good``, a third ``segmenter``, a third the other kinds.

    The other kinds come in a fresh random order each round, so every kind is
    used even when ``count`` is small. Strengths are ``u ** 2`` for uniform
    ``u``, so mild failures, whose Dice lies near the usual failure lines
    (0.7-0.9), are the most common.
    """
    others = [kind for kind in KINDS if kind not in ("good", "segmenter")]
    queue: list[str] = []
    plan = []
    for index in range(count):
        if index % 3 == 0:
            kind = "good"
        elif index % 3 == 1:
            kind = "segmenter"
        else:
            queue = queue or [str(k) for k in rng.permutation(others)]
            kind = queue.pop()
        plan.append((kind, float(rng.uniform(0.15, 1.0) ** 2)))
    return plan


def teaching_set(masks: np.ndarray, segmentations: list[np.ndarray], count: int, rng: np.random.Generator,
                 num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of known quality that teach the quality estimator.

    For every correct mask: ``count`` synthetic degradations
    (:func:`degradation_plan`), then for every other segmentation its own
    mask of that image and :data:`GRAFTS_PER_SEGMENTATION` grafts of it
    (strength uniform in ``[0.1, 1]``).

    Args:
        masks: Correct class indices ``(N, *spatial)``.
        segmentations: Other segmentations of the same images, each ``(N, *spatial)``.
        count: Synthetic degradations per mask.
        rng: Random generator.
        num_classes: ``K``.

    Returns:
        ``(candidates, sources)``: class indices ``(M, *spatial)`` and the row
        of ``masks`` each one degrades, ``(M,)``.
    """
    candidates, sources = [], []
    for index, mask in enumerate(masks):
        for kind, strength in degradation_plan(count, rng):
            candidates.append(degrade(mask, kind, strength, rng, num_classes))
            sources.append(index)
    for segmentation in segmentations:
        for index, mask in enumerate(masks):
            other = segmentation[index].astype(mask.dtype)
            candidates += [other] + [graft(mask, other, rng.uniform(0.1, 1.0), rng)
                                     for _ in range(GRAFTS_PER_SEGMENTATION)]
            sources += [index] * (1 + GRAFTS_PER_SEGMENTATION)
    return np.stack(candidates), np.asarray(sources)


def fit_quality_estimator(describe: Callable[[np.ndarray, np.ndarray], np.ndarray], masks: np.ndarray,
                          segmentations: list[np.ndarray], groups: np.ndarray, count: int, num_classes: int,
                          coverage: float, seed: int) -> QualityEstimator:
    """Fit the predicted-Dice estimator on the teaching set of held-out correct masks.

    Args:
        describe: ``describe(sources, candidates)`` gives the quality features ``(M, F)`` of candidate masks
            ``(M, *spatial)``, each paired with the image of held-out row ``sources[m]``.
        masks: Correct class indices of the held-out cases, ``(N, *spatial)``.
        segmentations: Other segmentations of the same images (see :func:`teaching_set`), each ``(N, *spatial)``.
        groups: Source of each held-out case, ``(N,)``.
        count: Synthetic degradations per mask.
        num_classes: ``K``.
        coverage: Interval coverage of the estimator.
        seed: Seed of the degradations, the trees and the folds.

    Returns:
        The fitted estimator.
    """
    candidates, sources = teaching_set(masks, segmentations, count, np.random.default_rng([seed, 11]), num_classes)
    features = describe(sources, candidates)
    per_class = dice_per_class(candidates, masks[sources], num_classes)
    targets = np.column_stack([mean_dice(per_class, candidates, masks[sources]), per_class])
    return QualityEstimator(coverage, seed).fit(features, targets, groups[sources])
