"""Surface distances and per-case metrics against hand-computed values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

from segqc.metrics import case_metrics, surface_distances


def squares() -> tuple[np.ndarray, np.ndarray]:
    """Two 3x3 squares, the second one row lower (and of another class)."""
    first, second = np.zeros((8, 8), int), np.zeros((8, 8), int)
    first[2:5, 2:5] = 1
    second[3:6, 2:5] = 2
    return first, second


def test_2d_square_shift_by_hand() -> None:
    # Surfaces are the 8 border pixels of each square. From the first square:
    # its top row (3 px) is one row from the other surface, its centre-bottom
    # pixel (4, 3) lies inside the other square, one step from its surface, the
    # other 4 lie on it: distances 1, 1, 1, 1, 0, 0, 0, 0 -> MSD 4/8, HD95 1.
    # The other direction is the mirror image.
    first, second = squares()
    assert surface_distances(first, second, (1.0, 1.0)) == pytest.approx((0.5, 1.0))
    # Rows 2 mm apart: the top row costs 2 each, (4, 3) reaches a side column at
    # 1 mm: (3 * 2 + 1) / 8 = 0.875; sorted distances 0,0,0,0,1,2,2,2 -> HD95 2.
    assert surface_distances(first, second, (2.0, 1.0)) == pytest.approx((0.875, 2.0))


def test_3d_cube_shift_by_hand() -> None:
    # 3x3x3 cubes one voxel apart along axis 0; 26 surface voxels each. From
    # one cube: the far face (9) is one step along axis 0 away, the near face
    # centre is inside the other cube one step from its surface, the other 16
    # are shared surface. Spacing 1: 10/26; spacing (3, 1, 1): (9 * 3 + 1) / 26.
    first, second = np.zeros((8, 8, 8), int), np.zeros((8, 8, 8), int)
    first[2:5, 2:5, 2:5] = 1
    second[3:6, 2:5, 2:5] = 1
    assert surface_distances(first, second, (1, 1, 1)) == pytest.approx((10 / 26, 1.0), rel=1e-6)
    assert surface_distances(first, second, (3, 1, 1)) == pytest.approx((28 / 26, 3.0), rel=1e-6)


def test_identical_masks_are_zero_and_classes_are_merged() -> None:
    first, _ = squares()
    relabelled = np.where(first > 0, 2, 0)
    assert surface_distances(first, relabelled, (1.0, 1.0)) == (0.0, 0.0)


def test_empty_mask_conventions_without_warnings() -> None:
    first, _ = squares()
    empty = np.zeros_like(first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert surface_distances(empty, empty, (1.0, 1.0)) == (0.0, 0.0)
        assert all(math.isnan(value) for value in surface_distances(first, empty, (1.0, 1.0)))
        assert all(math.isnan(value) for value in surface_distances(empty, first, (1.0, 1.0)))
        surface_distances(first, first, (1.0, 1.0))


def test_shape_and_spacing_are_checked() -> None:
    first, _ = squares()
    with pytest.raises(ValueError, match="shape"):
        surface_distances(first, first[:4], (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(first, first, (1.0, 1.0, 1.0))


def test_case_metrics_keys_use_label_values() -> None:
    first, second = squares()
    prediction = first.copy()
    prediction[5, 2:5] = 2  # class index 2 predicted on one of the three truth rows
    metrics = case_metrics(prediction, second, labels=[0, 10, 20], spacing=(1.0, 1.0))
    assert list(metrics) == ["dice_mean", "dice_10", "dice_20", "msd", "hd95"]
    assert metrics["dice_10"] == 0.0
    assert metrics["dice_20"] == pytest.approx(2 * 3 / (3 + 9))
    assert metrics["dice_mean"] == pytest.approx(0.25)
    # Foreground union: rows 2-5 vs rows 3-5; only the top row (3 px) is off by 1.
    assert metrics["hd95"] == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI's internal call of a deprecated argument
@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("touch_border", [False, True])
def test_cropping_to_the_foreground_box_matches_monai_on_the_full_grid(spatial_dims: int, touch_border: bool) -> None:
    """The bounding-box crop is only a speed-up: MONAI on the uncropped masks gives the same distances."""
    rng = np.random.default_rng(spatial_dims + 2 * touch_border)
    shape = (40, 36) if spatial_dims == 2 else (20, 18, 16)
    spacing = (0.7, 1.3, 2.0)[:spatial_dims]
    for _ in range(4):
        first, second = np.zeros(shape, bool), np.zeros(shape, bool)
        for mask in (first, second):
            low = [int(rng.integers(0 if touch_border else 3, n // 2)) for n in shape]
            high = [int(rng.integers(lo + 2, n if touch_border else n - 2)) for lo, n in zip(low, shape)]
            mask[tuple(slice(a, b) for a, b in zip(low, high))] = True
            mask[tuple(int(rng.integers(0, n)) for n in shape)] = True  # a stray voxel
        reference = (compute_average_surface_distance(_batch(first), _batch(second), symmetric=True,
                                                      spacing=list(spacing)),
                     compute_hausdorff_distance(_batch(first), _batch(second), percentile=95, spacing=list(spacing)))
        assert surface_distances(first, second, spacing) == pytest.approx(
            (float(reference[0][0, 0]), float(reference[1][0, 0])), rel=1e-6)


def _batch(mask: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(mask, dtype=torch.float32)[None, None]
