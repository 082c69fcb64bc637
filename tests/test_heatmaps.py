"""Heat-map files: PNG overlays and NIfTI volumes in the original grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from segqc import heatmaps


@pytest.mark.parametrize("orientation", ["RAS", None])
def test_volume_heat_map_returns_to_the_file_grid(tmp_path, orientation) -> None:
    # A file stored LPS-like (flipped x and y) with anisotropic voxels and an odd shape.
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    original_shape = (40, 30, 12)
    model_grid = np.zeros((16, 16, 8), np.float32)
    model_grid[12:, :, :] = 1.0  # hot at high model-x, i.e. towards R (+x) after reorientation to RAS
    heatmaps.heat_volume_nifti(tmp_path / "h.nii.gz", model_grid, original_shape, affine, orientation)
    image = nib.load(tmp_path / "h.nii.gz")
    assert image.shape == original_shape
    np.testing.assert_allclose(image.affine, affine)
    data = image.get_fdata()
    hot_end, cold_end = (data[:10].mean(), data[-10:].mean()) if orientation else (data[-10:].mean(), data[:10].mean())
    assert hot_end > 0.9 and cold_end < 0.1  # RAS x runs against the file's flipped x axis


@pytest.mark.parametrize("shape", [(24, 24), (16, 16, 8)])
def test_overlay_and_gallery_pngs(tmp_path, shape) -> None:
    image = np.random.rand(1, *shape).astype(np.float32)
    mask = np.zeros(shape, np.int64)
    mask[4:10, 4:10] = 1
    heat = np.random.rand(*shape).astype(np.float32)
    heatmaps.overlay_png(tmp_path / "o.png", image, mask, heat, 3)
    heatmaps.gallery_png(tmp_path / "g.png", "case", image, mask, mask, heat, 3)
    assert Image.open(tmp_path / "o.png").size[0] > 50
    assert Image.open(tmp_path / "g.png").size[0] > Image.open(tmp_path / "o.png").size[0]
