"""The 3D patch route's geometry: the structures' box in whole patches, cropping with padding, tiles, file slices."""

from __future__ import annotations

import numpy as np
import pytest

from segqc.data.regions import Region, crop_region, cut, structure_box, tile_boxes


@pytest.mark.parametrize(("margin", "spacing"), [(0.0, (1.0, 1.0, 1.0)), (6.0, (2.0, 1.0, 3.0))])
def test_the_box_holds_the_structures_and_the_margin_in_whole_patches(margin: float, spacing) -> None:
    indices = np.zeros((40, 50, 30), np.int64)
    indices[12:20, 20:24, 10:13] = 2
    start, end = structure_box(indices, spacing, margin, (8, 8, 8), indices.shape)
    size = np.subtract(end, start)
    assert (size % 8 == 0).all()
    for axis, (low, high) in enumerate([(12, 20), (20, 24), (10, 13)]):
        reach = int(np.ceil(margin / spacing[axis]))
        assert start[axis] <= max(low - reach, 0) and end[axis] >= min(high + reach, indices.shape[axis])


def test_an_empty_mask_keeps_the_whole_volume() -> None:
    start, end = structure_box(np.zeros((20, 20, 20), np.int64), (1, 1, 1), 5, (8, 8, 8), (20, 20, 20))
    assert all(s <= 0 for s in start) and all(e >= 20 for e in end)


def test_crop_pads_with_the_minimum_and_tiles_partition_the_region() -> None:
    image = np.arange(2 * 6 * 6 * 6, dtype=np.float32).reshape(2, 6, 6, 6) + 5
    region = crop_region(image, (-2, 0, 0), (6, 8, 8), leading=1)
    assert region.shape == (2, 8, 8, 8)
    np.testing.assert_array_equal(region[:, 2:, :6, :6], image)
    assert region[0, 0, 0, 0] == image[0].min() and region[1, 0, 0, 0] == image[1].min()
    boxes = tile_boxes(region.shape[1:], (4, 4, 4))
    tiles = cut(region, boxes, leading=1)
    assert tiles.shape == (8, 2, 4, 4, 4)
    covered = np.zeros(region.shape[1:], int)
    for box in boxes:
        covered[box] += 1
    assert (covered == 1).all()


def test_file_slices_map_a_tile_back_to_the_file() -> None:
    # region starts 4 voxels before a 3 mm grid of 20 slices; the file has 1.5 mm slices (40)
    region = Region((0, 0, -4), (8, 8, 16), (8, 8, 20), (3.0, 3.0, 3.0), (1.5, 1.5, 1.5))
    assert region.file_slices(0, 8) == (0, 7)  # the 4 padded voxels are left out
    assert region.file_slices(8, 16) == (8, 23)
    assert region.file_slices(0, 4) == (-1, -1)
