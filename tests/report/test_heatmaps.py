"""Heat-map files: PNG overlays and NIfTI volumes in the original grid."""

from __future__ import annotations

import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import ResizeWithPadOrCrop
from PIL import Image

from segqc.data.cases import prepare_case
from segqc.data.pairing import CaseFiles
from segqc.data.preprocess import PreprocessConfig, restore_spatial
from segqc.report import heatmaps


@pytest.mark.parametrize("orientation", ["RAS", None])
def test_volume_heat_map_returns_to_the_file_grid(tmp_path, orientation) -> None:
    # A file stored LPS-like (flipped x and y) with anisotropic voxels and an odd shape.
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    original_shape = (40, 30, 12)
    model_grid = np.zeros((16, 16, 8), np.float32)
    model_grid[12:, :, :] = 1.0  # hot at high model-x, i.e. towards R (+x) after reorientation to RAS
    config = PreprocessConfig(spatial_dims=3, spatial_size=(16, 16, 8), orientation=orientation)
    (tmp_path / "h.nii.gz").write_bytes(heatmaps.heat_volume_nifti(model_grid, original_shape, affine, config))
    image = nib.load(tmp_path / "h.nii.gz")
    assert image.shape == original_shape
    np.testing.assert_allclose(image.affine, affine)
    data = image.get_fdata()
    hot_end, cold_end = (data[:10].mean(), data[-10:].mean()) if orientation else (data[-10:].mean(), data[:10].mean())
    assert hot_end > 0.9 and cold_end < 0.1  # RAS x runs against the file's flipped x axis


# File axes (y, x, z): y runs P->A against file axis 0 (flipped), voxels 1.2 x 0.9 x 2.5 mm.
_AFFINE = np.array([[0.0, 0.9, 0.0, -20.0], [-1.2, 0.0, 0.0, 30.0], [0.0, 0.0, 2.5, 5.0], [0.0, 0.0, 0.0, 1.0]])
_FILE_SHAPE = (28, 11, 9)  # RAS (11, 28, 9): x padded 11 -> 16, y cropped 28 -> 19, z padded 9 -> 12 (odd differences)
_MODEL_SIZE = (16, 19, 12)


def _structure_case(tmp_path: Path) -> tuple[np.ndarray, CaseFiles]:
    """An off-centre box ``(28, 11, 9)`` in the file grid, cut by the crop at its low file-y end, and its files."""
    structure = np.zeros(_FILE_SHAPE, np.uint8)
    structure[1:9, 2:5, 5:8] = 1
    image = np.random.default_rng(0).random(_FILE_SHAPE).astype(np.float32)
    nib.save(nib.Nifti1Image(image, _AFFINE), tmp_path / "case.nii.gz")
    nib.save(nib.Nifti1Image(structure, _AFFINE), tmp_path / "case_mask.nii.gz")
    return structure.astype(bool), CaseFiles("case", [tmp_path / "case.nii.gz"], tmp_path / "case_mask.nii.gz")


def _file_heat(path: Path, heat: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """``heat`` ``(*spatial_size)`` written with :func:`heatmaps.heat_volume_nifti` and read back ``(28, 11, 9)``."""
    path.write_bytes(heatmaps.heat_volume_nifti(heat, _FILE_SHAPE, _AFFINE, config))
    written = nib.load(path)
    assert written.shape == _FILE_SHAPE
    np.testing.assert_allclose(written.affine, _AFFINE)
    return written.get_fdata()


def test_crop_or_pad_heat_map_is_uncropped_and_unpadded_exactly(tmp_path) -> None:
    structure, files = _structure_case(tmp_path)
    config = PreprocessConfig(spatial_dims=3, spatial_size=_MODEL_SIZE, resize="crop_or_pad")
    case = prepare_case(files, config, [0, 1])[0]
    kept = _file_heat(tmp_path / "kept.nii.gz", np.ones(_MODEL_SIZE, np.float32), config) > 0
    heat = _file_heat(tmp_path / "heat.nii.gz", case.mask.astype(np.float32), config)
    # Only the cropped file-y axis loses voxels (9 of 28: 5 at the file's high-y end, which is RAS low-y)...
    assert kept.sum() == 19 * 11 * 9 and np.flatnonzero(kept.any(axis=(1, 2))).tolist() == list(range(4, 23))
    # ...and the heat lands exactly on the structure's voxels that survived the crop (some did not).
    assert 0 < (structure & ~kept).sum() < (structure & kept).sum()
    np.testing.assert_array_equal(heat > 0, structure & kept)


@pytest.mark.parametrize(("resize", "spacing"), [("resize", None), ("resize", (0.9, 1.2, 1.25)),
                                                 ("crop_or_pad", (0.9, 1.2, 1.25))])
def test_interpolated_heat_map_lines_up_with_the_structure(tmp_path, resize, spacing) -> None:
    structure, files = _structure_case(tmp_path)
    config = PreprocessConfig(spatial_dims=3, spatial_size=_MODEL_SIZE, resize=resize, spacing=spacing)
    case = prepare_case(files, config, [0, 1])[0]
    kept = _file_heat(tmp_path / "kept.nii.gz", np.ones(_MODEL_SIZE, np.float32), config) > 0.5
    hot = _file_heat(tmp_path / "heat.nii.gz", case.mask.astype(np.float32), config) > 0.5
    expected = structure & kept
    assert 2 * (hot & expected).sum() / (hot.sum() + expected.sum()) > 0.8


@pytest.mark.parametrize(("length", "size"), [(28, 19), (27, 20), (11, 16), (9, 12), (6, 6)])
def test_restore_spatial_inverts_crop_or_pad(length, size) -> None:
    config = PreprocessConfig(spatial_dims=2, spatial_size=(size, 3), resize="crop_or_pad")
    ramp = np.repeat(np.arange(1.0, length + 1, dtype=np.float32)[None, :, None], 3, axis=2)  # (1, length, 3)
    fitted = ResizeWithPadOrCrop(config.spatial_size)(ramp).numpy()  # the transform crop_or_pad uses, padding 0
    restored = restore_spatial(fitted, config, (length, 3))
    assert restored.shape == (1, length, 3)
    survived = np.isin(ramp, fitted)
    assert survived[0, :, 0].sum() == min(length, size)
    np.testing.assert_array_equal(restored, np.where(survived, ramp, 0.0))


def _colour_count(picture: np.ndarray, colour: str) -> int:
    return int((picture == np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])).all(-1).sum())


@pytest.mark.parametrize("shape", [(24, 24), (16, 16, 8)])
def test_overlay_and_gallery_pngs_say_what_they_show(tmp_path, shape) -> None:
    image = np.random.rand(1, *shape).astype(np.float32)
    mask = np.zeros(shape, np.int64)
    mask[4:10, 4:10] = 1
    mask[6:8, 6:8] = 2
    heat = np.random.rand(*shape).astype(np.float32)
    (tmp_path / "o.png").write_bytes(heatmaps.overlay_png(image, mask, heat, 3))
    (tmp_path / "g.png").write_bytes(heatmaps.gallery_png(image, mask, np.roll(mask, 3, 0), heat, 3,
                                                          np.roll(mask, 2, 1)))
    overlay, gallery = Image.open(tmp_path / "o.png"), Image.open(tmp_path / "g.png")
    assert overlay.size[0] > 50 and gallery.size[0] > 3 * overlay.size[0]
    panels = json.loads(gallery.info[heatmaps.PANELS_KEY])
    assert [panel["kind"] for panel in panels] == ["image", "prediction", "truth", "heat"]
    assert all(panel["width"] == overlay.size[0] for panel in panels)
    assert panels[-1]["left"] + panels[-1]["width"] < gallery.size[0]
    for picture in (overlay, gallery):
        low, high = json.loads(picture.info[heatmaps.HEAT_RANGE_KEY])
        assert low == 0 and 0 < high <= float(heat.max())
        shown = picture.info.get(heatmaps.SLICE_KEY)  # 2D: none
        assert (shown and json.loads(shown)) == (heatmaps.hottest_slice(heat) if len(shape) == 3 else None)
    pixels = np.asarray(gallery.convert("RGB"))
    cut = {panel["kind"]: pixels[:, panel["left"]:panel["left"] + panel["width"]] for panel in panels}
    # one colour per mask: the prediction panel has prediction and reconstruction outlines, the truth panel truth
    # and prediction, the image and heat panels none
    for kind, colours in (("prediction", {heatmaps.PREDICTION_COLOUR, heatmaps.RECONSTRUCTION_COLOUR}),
                          ("truth", {heatmaps.TRUTH_COLOUR, heatmaps.PREDICTION_COLOUR}), ("image", set())):
        for colour in (heatmaps.PREDICTION_COLOUR, heatmaps.RECONSTRUCTION_COLOUR, heatmaps.TRUTH_COLOUR):
            assert (_colour_count(cut[kind], colour) > 20) == (colour in colours), (kind, colour)


def test_gallery_png_without_ground_truth_has_three_panels() -> None:
    image, mask = np.random.rand(1, 20, 20), np.zeros((20, 20), np.int64)
    picture = Image.open(io.BytesIO(heatmaps.gallery_png(image, mask, None, np.random.rand(20, 20), 2)))
    assert [panel["kind"] for panel in json.loads(picture.info[heatmaps.PANELS_KEY])] == ["image", "prediction", "heat"]


def test_heat_display_range_is_robust_to_a_few_hot_pixels() -> None:
    rng = np.random.default_rng(0)
    heat = rng.exponential(1.0, (64, 64))
    heat[:3, :3] = 1e4  # nine outliers would leave the rest black if the scale ran to the maximum
    low, high = heatmaps.heat_range(heat)
    assert low == 0 and high == pytest.approx(np.percentile(heat, heatmaps.HEAT_PERCENTILE)) and high < 10
    panel = heatmaps._panel(np.zeros((64, 64)), [], 2, heat)  # a black image: what shows is the heat
    assert np.median(panel.max(-1)) > 20  # scaled to the maximum, the median pixel would be black (under 2)
    assert heatmaps.heat_range(np.zeros((4, 4))) == (0.0, 1.0)
    assert heatmaps.heat_range(np.r_[np.zeros(200), 5.0]) == (0.0, 5.0)
