"""Sliding-window scoring of a region (the 3D patch route) against scoring whole cases."""

from __future__ import annotations

import numpy as np
import pytest

from segqc.config import ImageModelConfig, TrainingConfig
from segqc.data.cases import PreparedCase
from segqc.data.pairing import CaseFiles
from segqc.data.preprocess import PreprocessConfig
from segqc.detectors.image import ImageQC
from segqc.detectors.volumes import assess_volume
from segqc.synthetic import phantoms

PATCH = (16, 16, 16)


@pytest.fixture(scope="module")
def patch_model() -> ImageQC:
    cases = phantoms.make_training_set(12, PATCH, seed=0)
    images = np.stack([case.image for case in cases])
    masks = np.stack([case.mask for case in cases]).astype(np.int64)
    model = ImageModelConfig(levels=3, max_components=1, network={"nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1},
                             degradations_per_case=4, atlas_size=4)
    training = TrainingConfig(steps=10, batch_size=4, val_every=5, checkpoint_every=0, device="cpu", val_fraction=0.3)
    return ImageQC(model, training, preprocess=PreprocessConfig(spatial_dims=3, spatial_size=PATCH,
                                                                patches=True)).fit(images, masks)


def _region(qc: ImageQC, shape: tuple[int, ...], seed: int) -> PreparedCase:
    cases = phantoms.make_training_set(1, shape, seed=seed)
    return PreparedCase("vol", cases[0].image.astype(np.float32), cases[0].mask.astype(np.int64),
                        CaseFiles("vol", [], None), shape, np.eye(4))


def test_one_window_equals_scoring_the_whole_case(patch_model: ImageQC) -> None:
    case = _region(patch_model, PATCH, seed=5)
    judged = assess_volume(patch_model, case)
    whole = patch_model.assess(case.image[None], case.mask[None])
    np.testing.assert_allclose(judged.assessment.scores, whole.scores, rtol=1e-5)
    np.testing.assert_allclose(judged.assessment.quality.dice, whole.quality.dice, rtol=1e-5)
    np.testing.assert_allclose(judged.heat, whole.heat[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(judged.reconstruction, whole.reconstruction[0])


@pytest.mark.parametrize("shape", [(32, 16, 16), (16, 32, 32)])
def test_windows_without_overlap_equal_scoring_each_tile(patch_model: ImageQC, shape: tuple[int, ...]) -> None:
    case = _region(patch_model, shape, seed=6)
    judged = assess_volume(patch_model, case)
    tiles = np.stack([tile.image for tile in judged.tiles]), np.stack([tile.mask for tile in judged.tiles])
    separately = patch_model.assess(*tiles)
    assert len(judged.tiles) == np.prod(shape) // np.prod(PATCH)
    assert len({tile.case_id for tile in judged.tiles}) == len(judged.tiles)
    np.testing.assert_allclose(judged.assessment.norms, separately.norms, rtol=1e-5)
    np.testing.assert_allclose(judged.assessment.quality.dice, separately.quality.dice, rtol=1e-5)
