"""Reading, pairing and preprocessing image/mask files (segqc.data.images, segqc.data.preprocess)."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from segqc.config import from_mapping, read_mapping_file
from segqc.data.cases import prepare_case, prepare_dataset, stack
from segqc.data.images import read_image, read_mask
from segqc.data.labels import label_indices, learn_labels
from segqc.data.pairing import case_id_of, pair_cases
from segqc.data.preprocess import SECTION, PreprocessConfig
from segqc.errors import ConfigError, InputError, SchemaError
from segqc.synthetic.phantoms import make_training_set, write_cases

SIZE_2D, SIZE_3D = (32, 32), (16, 24, 20)


def _nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)
    return path


def _folders(root: Path) -> tuple[Path, Path]:
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    return images, masks


def _one_line(err: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def _config(**kwargs: object) -> PreprocessConfig:
    return PreprocessConfig(**{"spatial_size": (16, 16), **kwargs})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Phantom sets written as png / nii.gz / npy in 2D and nii.gz / npy in 3D."""
    root = tmp_path_factory.mktemp("phantoms")
    sets = {}
    for fmt in ("png", "nii.gz", "npy"):
        write_cases(make_training_set(3, SIZE_2D), root / f"2d-{fmt}", fmt)
        sets[f"2d-{fmt}"] = root / f"2d-{fmt}"
    for fmt in ("nii.gz", "npy"):
        write_cases(make_training_set(2, SIZE_3D), root / f"3d-{fmt}", fmt)
        sets[f"3d-{fmt}"] = root / f"3d-{fmt}"
    return sets


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("case_0000.nii.gz", ("case", 0)),
        ("case_0012.png", ("case", 12)),
        ("abc.png", ("abc", None)),
        ("abc_123.npy", ("abc_123", None)),
        ("a.b_0001.NII.GZ", ("a.b", 1)),
        ("scan.nii", ("scan", None)),
    ],
)
def test_case_id_of(name: str, expected: tuple[str, int | None]) -> None:
    assert case_id_of(Path(name)) == expected


@pytest.mark.parametrize("key", ["2d-png", "2d-nii.gz", "2d-npy", "3d-nii.gz", "3d-npy"])
def test_pairs_phantom_sets_by_stem(written: dict[str, Path], key: str) -> None:
    cases = pair_cases(written[key] / "images", written[key] / "masks")
    ndim = 2 if key.startswith("2d") else 3
    assert [c.case_id for c in cases] == ["train_0000", "train_0001", "train_0002"][: len(cases)]
    image, mask = read_image(cases[0].images, ndim), read_mask(cases[0].mask)
    assert image.array.dtype == np.float32 and image.array.shape == (1, *(SIZE_2D if ndim == 2 else SIZE_3D))
    assert mask.array.shape == image.array.shape and np.issubdtype(mask.array.dtype, np.integer)
    assert image.spacing == (1.0,) * ndim


def test_pair_without_masks_keeps_names(written: dict[str, Path]) -> None:
    cases = pair_cases(written["2d-png"] / "images", None)
    assert [c.case_id for c in cases] == ["train_0000", "train_0001", "train_0002"]
    assert all(c.mask is None for c in cases)


@pytest.mark.parametrize("with_masks", [True, False])
def test_nnunet_channels(tmp_path: Path, with_masks: bool) -> None:
    images, masks = _folders(tmp_path)
    rng = np.random.default_rng(0)
    for case in ("la_001", "la_002", "la_003"):
        for channel in range(2):
            _nifti(images / f"{case}_{channel:04d}.nii.gz", rng.random((12, 10, 8)).astype(np.float32) + channel)
        _nifti(masks / f"{case}.nii.gz", rng.integers(0, 2, (12, 10, 8)).astype(np.uint8))
    cases = pair_cases(images, masks if with_masks else None)
    assert [c.case_id for c in cases] == ["la_001", "la_002", "la_003"]
    assert [p.name for p in cases[0].images] == ["la_001_0000.nii.gz", "la_001_0001.nii.gz"]
    volume = read_image(cases[0].images)
    assert volume.array.shape == (2, 12, 10, 8)
    assert volume.array[1].mean() > volume.array[0].mean()
    if with_masks:
        prepared = prepare_case(cases[0], PreprocessConfig(spatial_dims=3, spatial_size=(8, 8, 8)), [0, 1])
        assert prepared[0].image.shape == (2, 8, 8, 8)


def test_nifti_4d_channels_last(tmp_path: Path) -> None:
    data = np.stack([np.zeros((6, 5, 4)), np.ones((6, 5, 4))], axis=-1).astype(np.float32)
    volume = read_image([_nifti(tmp_path / "x.nii.gz", data)])
    assert volume.array.shape == (2, 6, 5, 4) and volume.array[1].min() == 1.0


def test_rgb_png_image_has_three_channels(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    rgb = np.zeros((20, 24, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 50
    Image.fromarray(rgb).save(images / "a.png")
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(masks / "a.png")
    volume = read_image(pair_cases(images, masks)[0].images)
    assert volume.array.shape == (3, 20, 24)
    np.testing.assert_array_equal(volume.array[:, 0, 0], [200, 0, 50])


def test_palette_png_mask_gives_indices(tmp_path: Path) -> None:
    indices = np.zeros((10, 12), np.uint8)
    indices[2:5, 3:7], indices[6:8, 1:4] = 1, 2
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    image.save(tmp_path / "m.png")
    mask = read_mask(tmp_path / "m.png")
    assert mask.array.shape == (1, 10, 12)
    np.testing.assert_array_equal(mask.array[0], indices)


def test_rgb_mask_is_rejected_unless_gray(tmp_path: Path) -> None:
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[2:4, 2:4] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(SchemaError) as err:
        read_mask(tmp_path / "colour.png")
    _one_line(err, "colour.png", "label index")
    gray = np.repeat(np.arange(64, dtype=np.uint8).reshape(8, 8)[..., None] % 3, 3, axis=-1)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "gray.png").array[0], gray[..., 0])


def test_tiff_images_and_masks(tmp_path: Path) -> None:
    values = np.linspace(-5, 5, 99, dtype=np.float32).reshape(9, 11)
    Image.fromarray(values, mode="F").save(tmp_path / "img.tif")
    np.testing.assert_allclose(read_image([tmp_path / "img.tif"]).array[0], values)
    labels = (np.arange(99).reshape(9, 11) % 3).astype(np.uint8)
    Image.fromarray(labels).save(tmp_path / "mask.tiff")
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.tiff").array[0], labels)
    frames = [Image.fromarray(np.full((6, 7), k, np.uint8)) for k in range(4)]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    stack_volume = read_image([tmp_path / "stack.tif"])
    assert stack_volume.array.shape == (1, 4, 6, 7) and stack_volume.array[0, 3, 0, 0] == 3


def test_jpeg_image_with_png_mask(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    gray = np.tile(np.linspace(0, 255, 24, dtype=np.uint8), (20, 1))
    Image.fromarray(gray).save(images / "x.jpg", quality=95)
    mask = np.zeros((20, 24), np.uint8)
    mask[5:15, 5:15] = 1
    Image.fromarray(mask).save(masks / "x.png")
    prepared, labels = prepare_dataset(pair_cases(images, masks), _config())
    assert labels == [0, 1] and prepared[0].image.shape == (1, 16, 16)
    assert set(np.unique(prepared[0].mask)) == {0, 1}


def test_jpeg_mask_is_rejected(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / "x.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "x.jpg")
    with pytest.raises(InputError) as err:
        pair_cases(images, masks)
    _one_line(err, "x.jpg", "lossy")
    with pytest.raises(InputError) as err:
        read_mask(masks / "x.jpg")
    _one_line(err, "x.jpg")


def _png(path: Path, shape: tuple[int, int] = (8, 8)) -> None:
    Image.fromarray(np.zeros(shape, np.uint8)).save(path)


def test_folder_errors(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    with pytest.raises(InputError) as err:
        pair_cases(images, masks)
    _one_line(err, "images", ".nii.gz", ".png", ".npy")
    (images / "notes.txt").write_text("hi")
    with pytest.raises(InputError) as err:
        pair_cases(images, masks)
    _one_line(err, "images", "1 other file")
    with pytest.raises(InputError) as err:
        pair_cases(tmp_path / "nowhere", masks)
    _one_line(err, "nowhere", "not found")


def test_image_without_mask_and_reverse(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    for name in ("a", "b", "c", "d", "e"):
        _png(images / f"{name}.png")
    _png(masks / "a.png")
    with pytest.raises(InputError) as err:
        pair_cases(images, masks)
    _one_line(err, "no mask for 4", "b, c, d, ...")
    cases = pair_cases(images, masks, require_masks=False)
    assert [c.mask is None for c in cases] == [False, True, True, True, True]
    for name in ("b", "c", "d", "e", "zz"):
        _png(masks / f"{name}.png")
    with pytest.raises(InputError) as err:
        pair_cases(images, masks)
    _one_line(err, "no image for 1", "zz")


def test_duplicate_case_ids_and_missing_channels(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    _png(images / "a.png")
    np.save(images / "a.npy", np.zeros((8, 8)))
    _png(masks / "a.png")
    with pytest.raises(InputError) as err:
        pair_cases(images, masks)
    _one_line(err, "a.png", "a.npy")
    (images / "a.npy").unlink()
    (images / "a.png").unlink()
    _png(images / "a_0000.png")
    _png(images / "a_0002.png")
    with pytest.raises(InputError) as err:
        pair_cases(images, masks)
    _one_line(err, "a_0001", "0000, 0002")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bad.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 10),
        ("bad.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (64, 64), }" + b" " * 40),
        ("bad.nii.gz", b"not a nifti"),
        ("bad.tif", b"II*\x00" + b"\x00" * 20),
    ],
)
def test_corrupt_files(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    for reader in (lambda p: read_image([p]), read_mask):
        with pytest.raises(InputError) as err:
            reader(tmp_path / name)
        _one_line(err, name, "cannot read as")


def test_truncated_nifti(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "t.nii.gz", np.random.default_rng(0).random((20, 20, 20)).astype(np.float32))
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[: len(data) // 2]))
    with pytest.raises(InputError) as err:
        read_image([path])
    _one_line(err, "t.nii.gz", "cannot read as NIfTI")


def test_non_integer_mask(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", np.array([[0.0, 1.0], [0.5, 2.0]]))
    with pytest.raises(SchemaError) as err:
        read_mask(tmp_path / "m.npy")
    _one_line(err, "m.npy", "0.5")
    np.save(tmp_path / "ok.npy", np.array([[0.0, 1.0], [2.0, 2.0]]))
    assert read_mask(tmp_path / "ok.npy").array.dtype == np.int64


def test_shape_mismatch(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    _png(images / "a.png", (8, 8))
    _png(masks / "a.png", (8, 9))
    with pytest.raises(InputError) as err:
        prepare_dataset(pair_cases(images, masks), _config())
    _one_line(err, "a.png", "(8, 9)", "(8, 8)")


def test_affine_mismatch(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    shifted = np.eye(4)
    shifted[0, 3] = 2.0
    _nifti(images / "a.nii.gz", np.zeros((8, 8, 8), np.float32))
    _nifti(masks / "a.nii.gz", np.zeros((8, 8, 8), np.uint8), shifted)
    with pytest.raises(InputError) as err:
        prepare_case(pair_cases(images, masks)[0], PreprocessConfig(spatial_dims=3, spatial_size=(8, 8, 8)), [0])
    _one_line(err, "a.nii.gz", "affine")


@pytest.mark.parametrize("key", ["3d-nii.gz", "3d-npy"])
def test_3d_to_2d_model_needs_slice_axis(written: dict[str, Path], key: str) -> None:
    cases = pair_cases(written[key] / "images", written[key] / "masks")
    with pytest.raises(InputError) as err:
        prepare_case(cases[0], _config(), None)
    _one_line(err, "train_0000", "--slice-axis")


def test_2d_to_3d_model_errors(written: dict[str, Path]) -> None:
    cases = pair_cases(written["2d-png"] / "images", written["2d-png"] / "masks")
    with pytest.raises(InputError) as err:
        prepare_case(cases[0], PreprocessConfig(spatial_dims=3, spatial_size=(8, 8, 8)), None)
    _one_line(err, "train_0000.png", "3D model")


@pytest.mark.parametrize("key", ["3d-nii.gz", "3d-npy"])
@pytest.mark.parametrize("axis", [0, 2])
def test_slice_axis_gives_one_case_per_slice(written: dict[str, Path], key: str, axis: int) -> None:
    cases = pair_cases(written[key] / "images", written[key] / "masks")[:1]
    prepared, labels = prepare_dataset(cases, _config(slice_axis=axis))
    assert len(prepared) == SIZE_3D[axis]
    assert prepared[3].case_id == f"train_0000#{axis}:3"
    assert prepared[0].image.shape == (1, 16, 16) and prepared[0].mask.shape == (16, 16)
    assert prepared[0].original_shape == SIZE_3D
    foreground, _ = prepare_dataset(cases, _config(slice_axis=axis, foreground_slices_only=True), labels)
    assert 0 < len(foreground) < len(prepared)
    assert all(case.mask.max() > 0 for case in foreground)


def test_singleton_axis_is_squeezed_for_2d_model(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    _nifti(images / "a.nii.gz", np.random.default_rng(0).random((20, 18, 1)).astype(np.float32))
    _nifti(masks / "a.nii.gz", np.ones((20, 18, 1), np.uint8))
    prepared = prepare_case(pair_cases(images, masks)[0], _config(), [0, 1])
    assert len(prepared) == 1 and prepared[0].case_id == "a" and prepared[0].image.shape == (1, 16, 16)


def test_learn_and_map_labels(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    values = np.array([[0, 2], [5, 5]], np.uint8).repeat(8, 0).repeat(8, 1)
    for name in ("a", "b"):
        np.save(images / f"{name}.npy", np.random.default_rng(1).random((16, 16)))
        np.save(masks / f"{name}.npy", values)
    prepared, labels = prepare_dataset(pair_cases(images, masks), _config())
    assert labels == [0, 2, 5]
    np.testing.assert_array_equal(np.unique(prepared[0].mask), [0, 1, 2])
    np.testing.assert_array_equal(label_indices(np.array([5, 0, 2]), [0, 2, 5], Path("m")), [2, 0, 1])
    np.testing.assert_array_equal(label_indices(np.array([5, 0, 2]), [5, 0, 2], Path("m")), [0, 1, 2])


def test_unexpected_label_at_prediction_time(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    np.save(images / "p.npy", np.zeros((16, 16)))
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 7
    np.save(masks / "p.npy", mask)
    with pytest.raises(SchemaError) as err:
        prepare_case(pair_cases(images, masks)[0], _config(), [0, 1, 2])
    _one_line(err, "p.npy", "unexpected label value(s) 7", "[0, 1, 2]")


def test_too_many_classes(tmp_path: Path) -> None:
    np.save(tmp_path / "few.npy", np.zeros((4, 4), np.uint8))
    np.save(tmp_path / "many.npy", np.arange(100, dtype=np.int16).reshape(10, 10))
    with pytest.raises(SchemaError) as err:
        learn_labels([read_mask(tmp_path / "few.npy"), read_mask(tmp_path / "many.npy")])
    _one_line(err, "many.npy", "at most 64")


@pytest.mark.parametrize("resize", ["resize", "crop_or_pad"])
@pytest.mark.parametrize(("key", "size"), [("2d-png", (20, 44)), ("3d-nii.gz", (12, 28, 10))])
def test_fit_to_spatial_size_keeps_labels(written: dict[str, Path], resize: str, key: str,
                                          size: tuple[int, ...]) -> None:
    cases = pair_cases(written[key] / "images", written[key] / "masks")
    config = PreprocessConfig(spatial_dims=len(size), spatial_size=size, resize=resize)
    prepared, labels = prepare_dataset(cases, config)
    images, masks = stack(prepared)
    assert images.shape == (len(cases), 1, *size) and images.dtype == torch.float32
    assert masks.shape == (len(cases), *size) and masks.dtype == torch.int64
    assert set(masks.unique().tolist()) <= set(range(len(labels)))
    assert masks.gt(0).any()


def test_spacing_resamples_before_fitting(written: dict[str, Path]) -> None:
    cases = pair_cases(written["3d-nii.gz"] / "images", written["3d-nii.gz"] / "masks")[:1]
    base = PreprocessConfig(spatial_dims=3, spatial_size=SIZE_3D, resize="crop_or_pad")
    full, _ = prepare_dataset(cases, base, [0, 1, 2])
    coarse, _ = prepare_dataset(cases, from_mapping(PreprocessConfig, {
        "spatial_dims": 3, "spatial_size": list(SIZE_3D), "resize": "crop_or_pad", "spacing": [2, 2, 2]}, "data"),
        [0, 1, 2])
    ratio = np.count_nonzero(coarse[0].mask) / np.count_nonzero(full[0].mask)
    assert 0.08 < ratio < 0.2


def test_orientation_flips_nifti(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    data = np.arange(16 * 16, dtype=np.float32).reshape(16, 16, 1)
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    _nifti(images / "a.nii.gz", data, flipped)
    _nifti(masks / "a.nii.gz", np.zeros((16, 16, 1), np.uint8), flipped)
    case = pair_cases(images, masks)[0]
    kept = prepare_case(case, _config(orientation=None, intensity="none"), [0])[0].image
    ras = prepare_case(case, _config(intensity="none"), [0])[0].image
    np.testing.assert_array_equal(kept[0], data[..., 0])
    np.testing.assert_array_equal(ras[0], data[::-1, :, 0])


def test_intensity_modes(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    rng = np.random.default_rng(0)
    np.save(images / "ct.npy", rng.normal(40.0, 400.0, (16, 16)))
    np.save(masks / "ct.npy", np.zeros((16, 16), np.uint8))
    case = pair_cases(images, masks)[0]
    percentile = prepare_case(case, _config(), [0])[0].image
    assert percentile.min() == 0.0 and percentile.max() == 1.0
    zscore = prepare_case(case, _config(intensity="zscore"), [0])[0].image
    assert abs(zscore.mean()) < 1e-4 and abs(zscore.std() - 1.0) < 1e-3
    window = prepare_case(case, _config(intensity="window", window=(-100, 300)), [0])[0].image
    raw = np.load(images / "ct.npy")
    np.testing.assert_allclose(window[0], np.clip((raw + 100) / 400, 0, 1), atol=1e-6)
    assert (window == 0).any() and (window == 1).any()


def test_per_channel_normalisation(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    rng = np.random.default_rng(0)
    for channel, scale in enumerate((1.0, 1000.0)):
        np.save(images / f"c_{channel:04d}.npy", rng.random((16, 16)) * scale)
    np.save(masks / "c.npy", np.zeros((16, 16), np.uint8))
    image = prepare_case(pair_cases(images, masks)[0], _config(intensity="zscore"), [0])[0].image
    np.testing.assert_allclose(image.reshape(2, -1).std(axis=1), [1.0, 1.0], atol=1e-3)


def test_stack_rejects_mixed_channel_counts(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(images / "rgb.png")
    _png(images / "gray.png", (16, 16))
    for name in ("rgb", "gray"):
        _png(masks / f"{name}.png", (16, 16))
    prepared, _ = prepare_dataset(pair_cases(images, masks), _config())
    with pytest.raises(SchemaError) as err:
        stack(prepared)
    _one_line(err, "rgb", "channel")


def test_progress_callback(written: dict[str, Path]) -> None:
    calls = []
    cases = pair_cases(written["2d-npy"] / "images", written["2d-npy"] / "masks")
    prepare_dataset(cases, _config(), on_case=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_images_without_masks_prepare(written: dict[str, Path]) -> None:
    cases = pair_cases(written["2d-npy"] / "images", None)
    prepared, labels = prepare_dataset(cases, _config(), labels=[0, 1, 2])
    images, masks = stack(prepared)
    assert images.shape == (3, 1, 16, 16) and masks is None and labels == [0, 1, 2]
    with pytest.raises(InputError, match="no masks"):
        prepare_dataset(cases, _config())


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"spatial_dims": 3}, "spatial_size"),
        ({"spatial_size": [64, 0]}, "spatial_size"),
        ({"intensity": "zscor"}, "intensity"),
        ({"intensity": "window"}, "window"),
        ({"window": [300, -100]}, "window"),
        ({"percentiles": [99, 1]}, "percentiles"),
        ({"slice_axis": 3}, "slice_axis"),
        ({"spatial_dims": 3, "spatial_size": [8, 8, 8], "slice_axis": 0}, "slice_axis"),
        ({"orientation": "RAR"}, "orientation"),
        ({"resize": "pad"}, "resize"),
        ({"spacing": [1.0]}, "spacing"),
    ],
)
def test_config_validation(values: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_mapping(PreprocessConfig, values, SECTION)
    _one_line(err, f"{SECTION}.{field}")


@pytest.mark.parametrize("name", ["image2d-small", "image2d-gpu", "image2d-paper", "image3d-small"])
def test_shipped_configs_load(name: str) -> None:
    path = Path(__file__).parents[2] / "segqc" / "presets" / f"{name}.yaml"
    config = from_mapping(PreprocessConfig, read_mapping_file(path, ["data", "model", "training"], "config file")["data"], SECTION)
    assert len(config.spatial_size) == config.spatial_dims


def test_config_from_mapping_normalises() -> None:
    config = from_mapping(PreprocessConfig, {"spatial_size": [32, 48], "window": [-100, 300], "intensity": "window",
                                             "orientation": "las"}, "data")
    assert config.spatial_size == (32, 48) and config.window == (-100.0, 300.0) and config.orientation == "LAS"



def test_slice_axis_counts_after_reorientation(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    swap = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)  # voxel axis 2 is world x
    _nifti(images / "a.nii.gz", np.zeros((4, 6, 8), np.float32), swap)
    _nifti(masks / "a.nii.gz", np.zeros((4, 6, 8), np.uint8), swap)
    case = pair_cases(images, masks)[0]
    assert len(prepare_case(case, _config(slice_axis=0), [0])) == 8
    assert len(prepare_case(case, _config(slice_axis=0, orientation=None), [0])) == 4


def test_npy_channels_or_depth(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((3, 16, 16), np.float32))
    assert read_image([tmp_path / "x.npy"]).array.shape == (3, 16, 16)
    assert read_image([tmp_path / "x.npy"], spatial_ndim=3).array.shape == (1, 3, 16, 16)
    assert read_image([tmp_path / "x.npy"], spatial_ndim=2).array.shape == (3, 16, 16)
