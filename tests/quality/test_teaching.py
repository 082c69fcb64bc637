"""The teaching set: the degradation plan, the masks it holds, and the training steps of snapshots."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import masks_like

from segqc.metrics import dice_per_class, mean_dice
from segqc.quality import teaching
from segqc.quality.teaching import snapshot_steps
from segqc.synthetic import corruptions as degradations


def test_plan_mixes_good_masks_and_every_failure() -> None:
    plan = teaching.degradation_plan(33, np.random.default_rng(0))
    kinds = [kind for kind, _ in plan]
    assert kinds.count("good") == 11 and set(kinds) == set(degradations.KINDS)
    assert all(0 < strength <= 1 for _, strength in plan)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_the_teaching_set_holds_degradations_and_every_segmentation_with_its_grafts(num_classes) -> None:
    masks = np.minimum(masks_like((24, 24), 4, 6), num_classes - 1)
    others = [np.roll(masks, 3, axis=1), np.zeros_like(masks)]
    candidates, sources = teaching.teaching_set(masks, others, 5, np.random.default_rng(0), num_classes)
    per_case = 5 + len(others) * (1 + degradations.GRAFTS_PER_SEGMENTATION)
    assert len(candidates) == len(sources) == 4 * per_case
    assert np.bincount(sources).tolist() == [per_case] * 4
    whole = [index for index in range(4 * 5, len(candidates), 1 + degradations.GRAFTS_PER_SEGMENTATION)]
    np.testing.assert_array_equal(candidates[whole], np.concatenate(others))
    dice = mean_dice(dice_per_class(candidates, masks[sources], num_classes), candidates, masks[sources])
    assert dice.min() < 0.5 < dice.max()


def test_snapshot_steps_are_inside_the_run() -> None:
    assert snapshot_steps([0.05, 0.1, 0.2, 0.4], 1500) == [75, 150, 300, 600]
    assert snapshot_steps([0.01, 0.02, 0.5, 0.99], 10) == [1, 5]
    assert snapshot_steps([], 100) == []
