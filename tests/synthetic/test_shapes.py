"""Mask geometry and blob placement of segqc.synthetic.shapes, in 2D and 3D."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import masks_like
from scipy import ndimage

from segqc.synthetic import shapes

DIMS = pytest.mark.parametrize("ndim", [2, 3], ids=["2d", "3d"])


def ball(shape: tuple[int, ...], center: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape, dtype=float)
    return sum((g - c) ** 2 for g, c in zip(grid, center)) <= radius**2


def spatial(ndim: int) -> tuple[int, ...]:
    return (48, 48) if ndim == 2 else (24, 24, 24)


@pytest.mark.parametrize("radius", [0.5, 3.0, 17.25])
@DIMS
def test_equivalent_radius_of_volume_inverts_the_disc_area_and_ball_volume(radius: float, ndim: int) -> None:
    volume = math.pi * radius**2 if ndim == 2 else 4.0 / 3.0 * math.pi * radius**3
    assert shapes.equivalent_radius_of_volume(volume, ndim) == pytest.approx(radius)
    assert shapes.equivalent_radius_of_volume(0.0, ndim) == 0.0


@pytest.mark.parametrize(("shape", "radius"), [((64, 64), 10.0), ((64, 64), 20.0), ((32, 32, 32), 6.0),
                                               ((32, 32, 32), 12.0)])
def test_equivalent_radius_of_a_rasterised_disc_or_ball_is_its_radius(shape, radius: float) -> None:
    mask = ball(shape, tuple(s / 2 for s in shape), radius)
    assert shapes.equivalent_radius(mask) == pytest.approx(radius, abs=0.3)
    assert shapes.equivalent_radius(np.zeros(shape, bool)) == 0.0


@DIMS
def test_signed_distance_is_positive_inside_negative_outside_with_boundaries_at_half(ndim: int) -> None:
    mask = ball(spatial(ndim), (12,) * ndim, 7.0)
    distance = shapes.signed_distance(mask)
    assert distance.shape == mask.shape
    assert (distance[mask] > 0).all() and (distance[~mask] < 0).all()
    inner_boundary = mask & ~ndimage.binary_erosion(mask)
    outer_boundary = ndimage.binary_dilation(mask) & ~mask
    np.testing.assert_array_equal(distance[inner_boundary], 0.5)
    np.testing.assert_array_equal(distance[outer_boundary], -0.5)
    assert distance[(12,) * ndim] == pytest.approx(7.0, abs=0.5)  # centre: about the radius


@pytest.mark.parametrize("shift", [-0.49, -0.2, 0.0, 0.2, 0.49])
@DIMS
def test_thresholding_the_signed_distance_by_less_than_half_a_voxel_returns_the_mask(shift: float, ndim: int) -> None:
    mask = masks_like(spatial(ndim), 1, seed=3)[0] > 0
    np.testing.assert_array_equal(shapes.signed_distance(mask) + shift > 0, mask)


@DIMS
def test_signed_distance_counts_the_grid_edge_as_boundary_and_is_minus_inf_for_empty_masks(ndim: int) -> None:
    full = np.ones((9,) * ndim, bool)
    distance = shapes.signed_distance(full)
    assert distance[(0,) * ndim] == 0.5 and distance[(4,) * ndim] == 4.5
    assert np.isneginf(shapes.signed_distance(np.zeros((9,) * ndim, bool))).all()


@DIMS
def test_inner_distance_is_the_distance_to_the_nearest_outside_voxel(ndim: int) -> None:
    mask = ball(spatial(ndim), (10,) * ndim, 6.0)
    expected = ndimage.distance_transform_edt(np.pad(mask, 1))[(slice(1, -1),) * ndim]
    np.testing.assert_allclose(shapes.inner_distance(mask), expected)
    chessboard = shapes.inner_distance(mask, exact=False)
    assert (chessboard <= expected + 1e-9).all() and (chessboard[mask] >= 1).all() and (chessboard[~mask] == 0).all()


@DIMS
def test_placed_blobs_keep_clear_of_forbidden_voxels_and_of_each_other(ndim: int) -> None:
    rng = np.random.default_rng(0)
    forbidden = np.zeros(spatial(ndim), bool)
    forbidden[(slice(0, spatial(ndim)[0] // 2),)] = True  # one half of the grid is taken
    room = ndimage.distance_transform_edt(~forbidden)
    margin = 2.0
    placed = []
    for _ in range(3):
        blob = shapes.sample_blob(ndim, 3.0, rng)
        mask = shapes.place_blob(blob, room, rng, margin=margin)
        assert mask.shape == forbidden.shape and mask.dtype == bool
        placed.append(mask)
    assert all(mask.any() for mask in placed)
    distance_to_forbidden = ndimage.distance_transform_edt(~forbidden)
    for mask in placed:
        assert distance_to_forbidden[mask].min() >= margin
    for a in range(3):
        for b in range(a + 1, 3):
            assert not (placed[a] & placed[b]).any()


@DIMS
def test_place_blob_returns_an_empty_mask_when_nothing_fits(ndim: int) -> None:
    rng = np.random.default_rng(1)
    room = np.full(spatial(ndim), 1.5)  # no voxel is farther than 1.5 voxels from a forbidden one
    before = room.copy()
    mask = shapes.place_blob(shapes.sample_blob(ndim, 5.0, rng), room, rng, margin=1.0)
    assert mask.shape == room.shape and not mask.any()
    np.testing.assert_array_equal(room, before)


@DIMS
def test_place_blob_shrinks_a_blob_that_fits_nowhere_at_full_size(ndim: int) -> None:
    rng = np.random.default_rng(2)
    blob = shapes.sample_blob(ndim, 4.0, rng, aspect=0.0)
    room = np.zeros(spatial(ndim))
    room[(12,) * ndim] = blob.extent * 0.8 + 1.0  # one voxel has room for the blob at 80 % of its size
    mask = shapes.place_blob(blob, room, rng, margin=1.0)
    assert mask.any() and mask.sum() < blob.render(room.shape, np.full(ndim, 12.0)).sum()


@DIMS
def test_a_rendered_blob_lies_within_its_extent_of_the_centre(ndim: int) -> None:
    rng = np.random.default_rng(3)
    blob = shapes.sample_blob(ndim, 5.0, rng)
    center = np.full(ndim, 11.3)
    mask = blob.render(spatial(ndim), center)
    assert mask[tuple(np.rint(center).astype(int))] and mask.sum() > 10
    voxels = np.argwhere(mask)
    assert np.linalg.norm(voxels - center, axis=1).max() <= blob.extent
    assert blob.scaled(0.5).render(spatial(ndim), center).sum() < mask.sum()
    assert not blob.render(spatial(ndim), np.full(ndim, -50.0)).any()


@DIMS
def test_random_rotations_are_orthogonal(ndim: int) -> None:
    rotation = shapes.random_rotation(ndim, np.random.default_rng(4))
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(ndim), atol=1e-12)


@DIMS
def test_fill_from_neighbours_gives_removed_voxels_the_nearest_kept_label(ndim: int) -> None:
    mask = np.zeros((12,) * ndim, np.int64)
    mask[(slice(0, 6),)] = 1
    mask[(slice(6, 12),)] = 2
    removed = np.zeros(mask.shape, bool)
    removed[(slice(4, 6),)] = True  # the last two layers of class 1: their nearest kept voxel is class 2's
    removed[(slice(0, 1),)] = True  # the first layer of class 1: nearest kept voxels are class 1
    out = shapes.fill_from_neighbours(mask, removed)
    np.testing.assert_array_equal(out[~removed], mask[~removed])
    assert (out[(slice(0, 1),)] == 1).all()
    assert (out[(slice(5, 6),)] == 2).all() and (out[(slice(4, 5),)] == 1).all()
    assert out.dtype == mask.dtype


@DIMS
def test_fill_from_neighbours_edge_cases(ndim: int) -> None:
    mask = masks_like(spatial(ndim), 1, seed=5)[0]
    np.testing.assert_array_equal(shapes.fill_from_neighbours(mask, np.zeros(mask.shape, bool)), mask)
    everything = shapes.fill_from_neighbours(mask, np.ones(mask.shape, bool))
    assert not everything.any() and everything.shape == mask.shape


@DIMS
def test_warp_by_zero_displacement_is_the_identity(ndim: int) -> None:
    mask = masks_like(spatial(ndim), 1, seed=6)[0].astype(np.uint8)
    out = shapes.warp(mask, np.zeros((ndim, *mask.shape), np.float32))
    np.testing.assert_array_equal(out, mask)
    assert out.dtype == mask.dtype


@DIMS
def test_warp_by_a_constant_displacement_shifts_and_fills_with_background(ndim: int) -> None:
    mask = masks_like(spatial(ndim), 1, seed=7)[0]
    displacement = np.zeros((ndim, *mask.shape), np.float32)
    displacement[0] = 3.0  # sample 3 voxels further along axis 0: the content moves back by 3
    out = shapes.warp(mask, displacement)
    np.testing.assert_array_equal(out[:-3], mask[3:])
    assert not out[-3:].any()


@DIMS
def test_smooth_field_has_the_asked_largest_value(ndim: int) -> None:
    field = shapes.smooth_field(spatial(ndim), 4.0, 2.5, np.random.default_rng(8))
    assert field.shape == (ndim, *spatial(ndim)) and field.dtype == np.float32
    assert np.abs(field).max() == pytest.approx(2.5, rel=1e-5)


@DIMS
def test_object_radius_is_the_median_component_radius(ndim: int) -> None:
    region = np.zeros(spatial(ndim), bool)
    for center, radius in [(5, 3.0), (12, 3.0), (19, 2.0)]:
        region |= ball(spatial(ndim), (center,) * ndim, radius)
    sizes = sorted(int(ball(spatial(ndim), (12,) * ndim, r).sum()) for r in (3.0, 3.0, 2.0))
    assert shapes.object_radius(region) == pytest.approx(shapes.equivalent_radius_of_volume(sizes[1], ndim))
    assert shapes.object_radius(np.zeros(spatial(ndim), bool)) == 1.0
