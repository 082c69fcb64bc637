"""Tests of the synthetic phantom generator."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from segqc.synthetic import phantoms
from segqc.synthetic.corruptions import FAILURE_MODES, MODES, corrupt
from segqc.synthetic.phantoms import PhantomCase, make_pair

SIZES = [(64, 64), (32, 32, 32)]
SIZE_IDS = ["2d", "3d"]


def dice(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Mean Dice over the foreground classes present in either label map."""
    scores = []
    for label in (1, 2):
        t, p = truth == label, prediction == label
        if t.any() or p.any():
            scores.append(2.0 * np.count_nonzero(t & p) / (np.count_nonzero(t) + np.count_nonzero(p)))
    return float(np.mean(scores)) if scores else 1.0


@pytest.fixture(scope="module", params=SIZES, ids=SIZE_IDS)
def masks(request: pytest.FixtureRequest) -> list[np.ndarray]:
    """Ground-truth masks that all have an organ and a lesion."""
    n = 16 if len(request.param) == 2 else 4
    return [c.mask for c in phantoms.make_training_set(n, request.param, seed=7, lesion_probability=1.0)]


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_make_pair_shapes_dtypes_and_values(size: tuple[int, ...]) -> None:
    for seed in range(5):
        image, mask = make_pair(size, np.random.default_rng(seed))
        assert image.shape == (1, *size) and image.dtype == np.float32
        assert mask.shape == size and mask.dtype == np.uint8
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert set(np.unique(mask)) <= {0, 1, 2}
        assert (mask == 1).any()
        assert image[0][mask == 1].mean() > image[0][mask == 0].mean() + 0.1


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_generation_is_deterministic(size: tuple[int, ...]) -> None:
    first = phantoms.make_prediction_set(3, size, seed=3)
    second = phantoms.make_prediction_set(3, size, seed=3)
    other = phantoms.make_prediction_set(3, size, seed=4)
    for a, b, c in zip(first, second, other, strict=True):
        assert a.case_id == b.case_id
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.prediction, b.prediction)
        assert (a.failure_mode, a.severity) == (b.failure_mode, b.severity)
        assert not np.array_equal(a.image, c.image)
    image, mask = make_pair(size, 11)
    again_image, again_mask = make_pair(size, np.random.default_rng(11))
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(mask, again_mask)


def test_training_cases_do_not_depend_on_n_and_differ_from_prediction_cases() -> None:
    short = phantoms.make_training_set(3, seed=5)
    long = phantoms.make_training_set(6, seed=5)
    predictions = phantoms.make_prediction_set(3, seed=5)
    for a, b, c in zip(short, long[:3], predictions, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        assert not np.array_equal(a.image, c.image)
    assert [c.case_id for c in short] == ["train_0000", "train_0001", "train_0002"]
    assert all(c.prediction is None and c.failure_mode is None and not c.is_failure for c in long)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_lesion_lies_inside_the_organ(size: tuple[int, ...]) -> None:
    connectivity = np.ones((3,) * len(size), bool)
    for case in phantoms.make_training_set(10, size, seed=1, lesion_probability=1.0):
        lesion = case.mask == 2
        assert lesion.any()
        assert not (ndimage.binary_dilation(lesion, connectivity) & (case.mask == 0)).any()


def test_lesion_probability_controls_lesion_presence() -> None:
    without = phantoms.make_training_set(20, seed=2, lesion_probability=0.0)
    with_lesion = phantoms.make_training_set(20, seed=2, lesion_probability=1.0)
    assert not any((c.mask == 2).any() for c in without)
    assert sum((c.mask == 2).any() for c in with_lesion) >= 18


def test_shapes_vary_in_size_and_position() -> None:
    masks = [c.mask > 0 for c in phantoms.make_training_set(20, seed=4)]
    areas = np.array([m.sum() for m in masks])
    centroids = np.array([ndimage.center_of_mass(m) for m in masks])
    assert areas.max() > 1.5 * areas.min()
    assert centroids.std(axis=0).min() > 2.0


@pytest.mark.parametrize("mode", MODES)
def test_corrupt_returns_a_label_map_like_the_mask(masks: list[np.ndarray], mode: str) -> None:
    for mask in masks[:2]:
        prediction = corrupt(mask, mode, 0.6, np.random.default_rng(0))
        assert prediction.shape == mask.shape and prediction.dtype == np.uint8
        assert set(np.unique(prediction)) <= {0, 1, 2}
        np.testing.assert_array_equal(corrupt(mask, mode, 0.6, 0), corrupt(mask, mode, 0.6, 0))


@pytest.mark.parametrize("mode", [m for m in FAILURE_MODES if m != "empty"])
def test_zero_severity_keeps_the_mask(masks: list[np.ndarray], mode: str) -> None:
    for mask in masks:
        np.testing.assert_array_equal(corrupt(mask, mode, 0.0, 0), mask)


def test_over_and_under_change_the_foreground_volume(masks: list[np.ndarray]) -> None:
    for mask in masks:
        volume = np.count_nonzero(mask)
        over, under = corrupt(mask, "over", 0.4, 0), corrupt(mask, "under", 0.4, 0)
        assert np.count_nonzero(over) > volume and np.all(over[mask > 0] > 0)
        assert np.count_nonzero(under) < volume and np.all(mask[under > 0] > 0)
        assert np.count_nonzero(over == 2) > np.count_nonzero(mask == 2)


def test_empty_is_all_background(masks: list[np.ndarray]) -> None:
    for severity in (0.0, 1.0):
        assert not corrupt(masks[0], "empty", severity, 0).any()


def test_shift_moves_the_centroid(masks: list[np.ndarray]) -> None:
    for mask in masks:
        shifted = corrupt(mask, "shift", 0.5, 0)
        moved = np.subtract(ndimage.center_of_mass(shifted > 0), ndimage.center_of_mass(mask > 0))
        assert np.linalg.norm(moved) >= 1.0


def test_class_swap_exchanges_organ_and_lesion(masks: list[np.ndarray]) -> None:
    for mask in masks:
        full = corrupt(mask, "class_swap", 1.0, 0)
        np.testing.assert_array_equal(full == 2, mask == 1)
        np.testing.assert_array_equal(full == 1, mask == 2)
        part = corrupt(mask, "class_swap", 0.3, 0)
        np.testing.assert_array_equal(part > 0, mask > 0)
        assert 0 < np.count_nonzero(part != mask) < np.count_nonzero(mask)


def test_missing_removes_a_class(masks: list[np.ndarray]) -> None:
    for seed in range(4):
        for mask in masks:
            prediction = corrupt(mask, "missing", 1.0, seed)
            assert sum((prediction == label).any() for label in (1, 2)) == 1
            partial = corrupt(mask, "missing", 0.3, seed)
            assert np.count_nonzero(partial != mask) > 0 and (partial == 1).any() and (partial == 2).any()


def test_false_positive_adds_foreground_outside_the_truth(masks: list[np.ndarray]) -> None:
    for mask in masks:
        prediction = corrupt(mask, "false_positive", 0.5, 0)
        assert np.count_nonzero((prediction > 0) & (mask == 0) | (prediction == 2) & (mask == 1)) > 0
        np.testing.assert_array_equal(prediction[mask == 2], 2)


def test_jitter_moves_boundaries_but_keeps_the_structure(masks: list[np.ndarray]) -> None:
    for mask in masks:
        prediction = corrupt(mask, "jitter", 0.5, 0)
        assert np.count_nonzero(prediction != mask) > 0
        assert 0.3 < dice(mask, prediction) < 0.98


@pytest.mark.parametrize("mode", ["over", "under", "shift", "jitter", "class_swap", "missing"])
def test_dice_decreases_with_severity(masks: list[np.ndarray], mode: str) -> None:
    means = [
        np.mean([dice(mask, corrupt(mask, mode, severity, i)) for i, mask in enumerate(masks)])
        for severity in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    assert np.all(np.diff(means) < 0), means


def test_good_predictions_are_close_and_gross_failures_are_not(masks: list[np.ndarray]) -> None:
    good = [dice(mask, corrupt(mask, "good", severity, i)) for i, mask in enumerate(masks) for severity in (0.0, 1.0)]
    assert np.mean(good) > 0.9 and np.min(good) > 0.75
    for mode in ("empty", "missing", "shift", "over", "under", "class_swap"):
        assert max(dice(mask, corrupt(mask, mode, 1.0, i)) for i, mask in enumerate(masks)) < 0.8, mode


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_prediction_set_labels_and_dice(size: tuple[int, ...]) -> None:
    n = 48 if len(size) == 2 else 12
    cases = phantoms.make_prediction_set(n, size, seed=0, failure_fraction=0.75)
    failed = [c for c in cases if c.is_failure]
    good = [c for c in cases if not c.is_failure]
    assert len(failed) == round(0.75 * n)
    assert {c.failure_mode for c in failed} == set(FAILURE_MODES)
    assert all(c.failure_mode == "good" and 0.0 <= c.severity <= 1.0 for c in good)
    assert all(0.3 <= c.severity <= 1.0 for c in failed)
    assert np.mean([dice(c.mask, c.prediction) for c in good]) > 0.9
    assert np.mean([dice(c.mask, c.prediction) < 0.8 for c in failed]) >= 0.75


def test_prediction_set_modes_and_fraction() -> None:
    cases = phantoms.make_prediction_set(10, seed=1, failure_fraction=1.0, modes=("shift", "empty"))
    assert [c.failure_mode for c in cases].count("shift") == 5
    assert all(c.is_failure for c in cases)
    assert not any(c.is_failure for c in phantoms.make_prediction_set(5, seed=1, failure_fraction=0.0))
    assert phantoms.make_prediction_set(0) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_pair((64,)), "2 or 3 entries"),
        (lambda: make_pair((64, 64, 64, 64)), "2 or 3 entries"),
        (lambda: make_pair((8, 64)), "integers >= 16"),
        (lambda: make_pair((64.0, 64)), "integers >= 16"),
        (lambda: make_pair(lesion_probability=1.5), "lesion_probability"),
        (lambda: corrupt(np.zeros((32, 32), np.uint8), "overr", 0.5), "did you mean 'over'"),
        (lambda: corrupt(np.zeros((32, 32), np.uint8), "over", 1.5), "severity"),
        (lambda: corrupt(np.zeros((32, 32), np.uint8), "over", float("nan")), "severity"),
        (lambda: corrupt(np.full((32, 32), 3, np.uint8), "over", 0.5), "values"),
        (lambda: corrupt(np.zeros((32, 32), np.float32), "over", 0.5), "integer"),
        (lambda: corrupt(np.zeros(32, np.uint8), "over", 0.5), "dimensions"),
        (lambda: phantoms.make_training_set(-1), "non-negative"),
        (lambda: phantoms.make_training_set(2, seed=-1), "seed"),
        (lambda: phantoms.make_prediction_set(2, modes=("good",)), "unknown failure mode"),
        (lambda: phantoms.make_prediction_set(2, modes=()), "must not be empty"),
        (lambda: phantoms.make_prediction_set(2, failure_fraction=2.0), "failure_fraction"),
        (lambda: phantoms.make_prediction_set(2, severity_range=(0.9, 0.1)), "low <= high"),
    ],
)
def test_invalid_arguments_raise_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_corrupt_handles_an_empty_mask() -> None:
    empty = np.zeros((32, 32), np.uint8)
    for mode in MODES:
        prediction = corrupt(empty, mode, 0.7, 0)
        assert prediction.shape == empty.shape
        assert prediction.any() == (mode == "false_positive")


def _read(path: Path) -> np.ndarray:
    """Read an array written by :func:`phantoms.write_cases`."""
    if path.name.endswith(".npy"):
        return np.load(path)
    if path.name.endswith(".png"):
        from PIL import Image

        return np.asarray(Image.open(path))
    import nibabel as nib

    return np.asarray(nib.load(path).dataobj)


def _check_written(cases: list[PhantomCase], out: Path, fmt: str) -> None:
    """Assert that ``out`` holds ``cases`` in ``fmt`` with a matching index."""
    with (out / "cases.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["case_id"] for r in rows] == [c.case_id for c in cases]
    for row, case in zip(rows, cases, strict=True):
        assert row["failure_mode"] == (case.failure_mode or "")
        assert (float(row["severity"]) if row["severity"] else None) == case.severity
        image = _read(out / "images" / f"{case.case_id}.{fmt}")
        if fmt == "png":
            np.testing.assert_array_equal(image, np.rint(case.image[0] * 255).astype(np.uint8))
        elif fmt == "npy":
            np.testing.assert_array_equal(image, case.image)
        else:
            np.testing.assert_array_equal(image, case.image[0])
        np.testing.assert_array_equal(_read(out / "masks" / f"{case.case_id}.{fmt}"), case.mask)
        if case.prediction is not None:
            np.testing.assert_array_equal(_read(out / "predictions" / f"{case.case_id}.{fmt}"), case.prediction)


@pytest.mark.parametrize(
    ("fmt", "size", "module"),
    [
        ("npy", (32, 32), None),
        ("npy", (16, 16, 16), None),
        ("png", (32, 32), "PIL"),
        ("nii.gz", (32, 32), "nibabel"),
        ("nii.gz", (16, 16, 16), "nibabel"),
    ],
)
def test_write_cases_round_trip(tmp_path: Path, fmt: str, size: tuple[int, ...], module: str | None) -> None:
    if module:
        pytest.importorskip(module)
    cases = phantoms.make_prediction_set(3, size, seed=2, failure_fraction=0.5)
    index = phantoms.write_cases(cases, tmp_path / "out", fmt=fmt)
    assert index == tmp_path / "out" / "cases.csv"
    _check_written(cases, tmp_path / "out", fmt)


def test_write_cases_without_predictions(tmp_path: Path) -> None:
    cases = phantoms.make_training_set(2, (32, 32))
    phantoms.write_cases(cases, tmp_path, fmt="npy")
    assert not (tmp_path / "predictions").exists()
    _check_written(cases, tmp_path, "npy")


def test_write_cases_rejects_bad_input(tmp_path: Path) -> None:
    cases = phantoms.make_training_set(2, (16, 16, 16))
    with pytest.raises(ValueError, match="did you mean 'npy'"):
        phantoms.write_cases(cases, tmp_path, fmt="npz")
    with pytest.raises(ValueError, match="2D cases only"):
        phantoms.write_cases(cases, tmp_path, fmt="png")
    with pytest.raises(ValueError, match="unique"):
        phantoms.write_cases([cases[0], cases[0]], tmp_path)
    bad = PhantomCase("../escape", cases[0].image, cases[0].mask)
    with pytest.raises(ValueError, match="safe file name"):
        phantoms.write_cases([bad], tmp_path)
