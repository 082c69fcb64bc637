"""Boundary features against a case-by-case reference, and where they see evidence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segqc.quality.features import boundary_features
from segqc.synthetic import phantoms


def boundary_reference(image: np.ndarray, mask: np.ndarray, heat: np.ndarray, label: int, band: int) -> list[float]:
    """:func:`boundary_features` of one case and class, written out case by case."""
    intensity = image.mean(0)
    step = ndimage.generate_binary_structure(mask.ndim, 1)
    inside = mask == label
    if not inside.any():
        return [0.0] * 4
    outer = ndimage.binary_dilation(inside, step, band) & ~inside
    inner = inside & ~ndimage.binary_erosion(inside, step, band, border_value=1)
    edge = inside & ~ndimage.binary_erosion(inside, step, 1, border_value=1)
    gradient = np.sqrt(sum(part ** 2 for part in np.gradient(intensity)))
    spread = intensity.std() + 1e-6
    return [(intensity[inside].mean() - intensity[outer].mean()) / spread,
            (intensity[inner].mean() - intensity[outer].mean()) / spread,
            gradient[edge].mean() / (gradient.mean() + 1e-6), np.log1p(heat[inner | outer].mean())]


@pytest.mark.parametrize("spatial", [(32, 32), (16, 16, 16)], ids=["2d", "3d"])
@pytest.mark.parametrize("num_classes", [2, 3])
def test_boundary_features_match_a_case_by_case_reference(spatial, num_classes) -> None:
    cases = phantoms.make_training_set(4, spatial, seed=2)
    images = np.stack([case.image for case in cases]).astype(np.float32)
    masks = np.minimum(np.stack([case.mask for case in cases]), num_classes - 1)
    masks[0] = 0  # no foreground at all
    heat = np.random.default_rng(0).random(masks.shape).astype(np.float32)
    features = boundary_features(images, masks, heat, num_classes, band=2)
    assert features.shape == (4, 4 * (num_classes - 1))
    expected = [sum((boundary_reference(images[i], masks[i], heat[i], label, 2) for label in range(1, num_classes)),
                    []) for i in range(4)]
    np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(features[0], 0)


def test_a_mask_on_the_image_edges_shows_more_boundary_evidence_than_a_shifted_one() -> None:
    cases = phantoms.make_training_set(8, (48, 48), seed=3)
    images = np.stack([case.image for case in cases]).astype(np.float32)
    masks = (np.stack([case.mask for case in cases]) > 0).astype(np.int64)
    shifted = np.roll(masks, 5, axis=2)
    heat = np.zeros(masks.shape, np.float32)
    on_edges, off_edges = boundary_features(images, masks, heat, 2), boundary_features(images, shifted, heat, 2)
    assert (np.abs(on_edges[:, 1]) > np.abs(off_edges[:, 1])).mean() >= 0.75  # inner band against outer band
    assert (on_edges[:, 2] > off_edges[:, 2]).mean() >= 0.75  # gradient on the boundary
