"""`segqc train` through Typer's CliRunner on phantom files the tests write."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import TINY_IMAGE_CONFIG
from typer.testing import CliRunner

from segqc.cli import app
from segqc.synthetic import phantoms

runner = CliRunner()


@pytest.fixture
def dataset(tmp_path):
    phantoms.write_cases(phantoms.make_training_set(24, (32, 32), seed=0), tmp_path / "data", fmt="png")
    (tmp_path / "config.yaml").write_text(TINY_IMAGE_CONFIG)
    return tmp_path


def train_args(root, images="data/images", masks="data/masks", *extra: str) -> list[str]:
    return ["train", "--images", str(root / images), "--masks", str(root / masks), "--out", str(root / "model"),
            "--config", str(root / "config.yaml"), *extra]


def one_error_line(result) -> str:
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_train_writes_a_bundle_with_labels_and_preprocessing(dataset) -> None:
    result = runner.invoke(app, train_args(dataset))
    assert result.exit_code == 0, result.output
    meta = json.loads((dataset / "model" / "segqc.json").read_text())
    assert meta["mode"] == "image" and meta["labels"] == [0, 1, 2]
    assert meta["preprocess"]["spatial_size"] == [32, 32]
    assert meta["architecture"]["image_channels"] == 1
    assert not (dataset / "model.checkpoints").exists()


def test_resume_without_a_checkpoint_says_so_on_the_terminal(dataset) -> None:
    result = runner.invoke(app, train_args(dataset, "data/images", "data/masks", "--resume"))
    assert result.exit_code == 0, result.output
    said = "".join(result.stderr.split())  # the log line may be wrapped, the path included
    assert "WARNING" in result.stderr and "".join(
        f"no checkpoint at {dataset / 'model.checkpoints' / 'last.pt'} to resume from; training starts at step 0"
        .split()) in said
    assert (dataset / "model" / "segqc.json").is_file() and not (dataset / "model.checkpoints").exists()


def test_empty_image_folder(dataset) -> None:
    (dataset / "empty").mkdir()
    assert "empty" in one_error_line(runner.invoke(app, train_args(dataset, images="empty")))
    assert not (dataset / "model").exists()


def test_image_without_mask(dataset) -> None:
    (dataset / "data" / "masks" / "train_0003.png").unlink()
    assert "train_0003" in one_error_line(runner.invoke(app, train_args(dataset)))
    assert not (dataset / "model").exists()


def test_corrupt_file(dataset) -> None:
    (dataset / "data" / "images" / "train_0005.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert "train_0005.png" in one_error_line(runner.invoke(app, train_args(dataset)))


def test_unexpected_label_values(dataset) -> None:
    line = one_error_line(runner.invoke(app, train_args(dataset, "data/images", "data/masks", "--labels", "0,1")))
    assert "masks" in line and "2" in line
    line = one_error_line(runner.invoke(app, train_args(dataset, "data/images", "data/masks", "--labels", "zero,one")))
    assert "--labels" in line


def test_non_integer_mask(dataset) -> None:
    images, masks = dataset / "npy" / "images", dataset / "npy" / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for i in range(12):
        np.save(images / f"c{i}.npy", np.random.rand(32, 32).astype(np.float32))
        np.save(masks / f"c{i}.npy", np.full((32, 32), 0.5 if i == 4 else 1.0))
    assert "c4.npy" in one_error_line(runner.invoke(app, train_args(dataset, "npy/images", "npy/masks")))


def test_volume_for_a_2d_model_needs_a_slice_axis(dataset) -> None:
    images, masks = dataset / "vol" / "images", dataset / "vol" / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for i in range(12):
        nib.save(nib.Nifti1Image(np.random.rand(16, 16, 8).astype(np.float32), np.eye(4)), images / f"v{i}.nii.gz")
        nib.save(nib.Nifti1Image((np.random.rand(16, 16, 8) > 0.5).astype(np.uint8), np.eye(4)), masks / f"v{i}.nii.gz")
    assert "--slice-axis" in one_error_line(runner.invoke(app, train_args(dataset, "vol/images", "vol/masks")))
    result = runner.invoke(app, train_args(dataset, "vol/images", "vol/masks", "--slice-axis", "2"))
    assert result.exit_code == 0, result.output


def test_shape_mismatch(dataset) -> None:
    np.save(dataset / "data" / "masks" / "train_0007.npy", np.zeros((20, 20), np.uint8))
    (dataset / "data" / "masks" / "train_0007.png").unlink()
    assert "train_0007" in one_error_line(runner.invoke(app, train_args(dataset)))


def test_help_teaches() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("--slice-axis", "--labels", "torchrun", "--group-pattern", "small: CPU", "(default: the preset's"):
        assert text in result.output
