"""The 3D patch route: the region of a volume that holds its structures, and the tiles it is cut into.

A clinical CT is far larger than a network input, and squashing it to one
(32^3 from 512 x 512 x 300 makes voxels of about 16 mm) loses the structures a
segmentation is about. The patch route keeps millimetre detail instead:

1. the volume is respaced to the model's ``spacing`` (:mod:`segqc.data.preprocess`);
2. it is cropped to the bounding box of the mask's structures plus a margin
   (MONAI ``CropForeground``), the box grown to a whole number of patches
   (``k_divisible``) and padded where it passes the volume's edge;
3. the region is cut into patches on a grid (MONAI ``dense_patch_slices``):
   tiles that partition it when scoring (the windows of
   :func:`segqc.detectors.volumes.assess_volume`), half-overlapping patches
   when training.

When scoring, the mask is the prediction, so the region follows what the
segmenter found; an empty prediction keeps the whole volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Region:
    """Where a cropped, padded region lies in the respaced volume.

    Attributes:
        start: First voxel of the region in the respaced grid, per axis (may be
            negative where the region was padded past the volume's edge).
        shape: Spatial shape of the region (a whole number of patches).
        grid_shape: Spatial shape of the whole respaced volume.
        spacing: Voxel size of the respaced grid (mm).
        file_spacing: Voxel size of the reoriented file (mm).
    """

    start: tuple[int, ...]
    shape: tuple[int, ...]
    grid_shape: tuple[int, ...]
    spacing: tuple[float, ...]
    file_spacing: tuple[float, ...]

    def file_slices(self, start: int, stop: int, axis: int = -1) -> tuple[int, int]:
        """Slices ``[first, last]`` of the reoriented file covered by region voxels ``start:stop`` along ``axis``.

        Padding outside the volume is left out; ``(-1, -1)`` when nothing of the file is covered.
        """
        axis %= len(self.shape)
        low = max(self.start[axis] + start, 0)
        high = min(self.start[axis] + stop, self.grid_shape[axis])
        if high <= low:
            return -1, -1
        ratio = self.spacing[axis] / self.file_spacing[axis]
        file_length = round(self.grid_shape[axis] * ratio)
        return int(np.floor(low * ratio)), min(int(np.ceil(high * ratio)) - 1, file_length - 1)


def structure_box(indices: np.ndarray | None, spacing: Sequence[float], margin_mm: float,
                  patch_size: Sequence[int], spatial_shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The box around the structures plus a margin, grown to a whole number of patches (MONAI ``CropForeground``).

    Args:
        indices: ``(*spatial)`` class indices, or ``None`` / no foreground for the whole volume.
        spacing: Voxel size of the grid (mm).
        margin_mm: Margin around the structures (mm).
        patch_size: Patch size; the box's size is a multiple of it.
        spatial_shape: Shape of the grid.

    Returns:
        First voxel and end of the box (may pass the grid's edges).
    """
    from monai.transforms import CropForeground

    margin = [int(np.ceil(margin_mm / s)) for s in spacing]
    crop = CropForeground(select_fn=lambda x: x > 0, margin=margin, k_divisible=list(patch_size), allow_smaller=True)
    source = indices[None] if indices is not None and (indices > 0).any() else np.ones((1, *spatial_shape), np.uint8)
    start, end = crop.compute_bounding_box(source)
    return tuple(int(s) for s in start), tuple(int(e) for e in end)


def crop_region(array: np.ndarray, start: Sequence[int], end: Sequence[int], leading: int = 0) -> np.ndarray:
    """``array[..., start:end]`` on the spatial axes, padded with the minimum of each leading index where the box
    passes the edges.

    Args:
        array: ``(*leading axes, *spatial)``.
        start: First voxel of the box per spatial axis (may be negative).
        end: End of the box per spatial axis (may pass the shape).
        leading: Number of axes before the spatial ones.

    Returns:
        ``(*leading axes, *box shape)``, the dtype of ``array``.
    """
    from monai.transforms import SpatialCrop

    flat = array.reshape(-1, *array.shape[leading:])
    floor = flat.reshape(len(flat), -1).min(1).reshape(-1, *([1] * (flat.ndim - 1)))
    clipped = [slice(max(s, 0), min(e, n)) for s, e, n in zip(start, end, array.shape[leading:])]
    inside = np.asarray(SpatialCrop(roi_slices=clipped)(torch.from_numpy(np.ascontiguousarray(flat - floor))))
    pads = [(0, 0)] + [(c.start - s, e - c.stop) for s, e, c in zip(start, end, clipped)]
    out = np.pad(inside, pads, mode="constant") + floor
    return out.astype(array.dtype).reshape(*array.shape[:leading], *out.shape[1:])


def tile_boxes(shape: Sequence[int], patch_size: Sequence[int],
               stride: Sequence[int] | None = None) -> list[tuple[slice, ...]]:
    """Patch positions on a grid over ``shape`` (MONAI's ``dense_patch_slices``, the sliding-window grid).

    Args:
        shape: Spatial shape of the region (a multiple of ``patch_size``).
        patch_size: Patch size.
        stride: Step between patches (default: ``patch_size``, tiles that partition the region).

    Returns:
        One tuple of slices per patch, in MONAI's order.
    """
    from monai.data.utils import dense_patch_slices

    boxes = dense_patch_slices(tuple(shape), tuple(patch_size), tuple(stride or patch_size))
    return [tuple(slice(int(s.start), int(s.stop)) for s in box) for box in boxes]


def cut(array: np.ndarray, boxes: Sequence[tuple[slice, ...]], leading: int = 0) -> np.ndarray:
    """The patches of ``array`` at ``boxes``, stacked: ``(P, *leading axes, *patch)``.

    Args:
        array: ``(*leading axes, *spatial)``.
        boxes: From :func:`tile_boxes`.
        leading: Number of axes before the spatial ones (1 for ``(C, *spatial)`` images).
    """
    head = (slice(None),) * leading
    return np.stack([array[head + box] for box in boxes])
