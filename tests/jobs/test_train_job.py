"""train_model: checks the output, chooses the config, trains and writes the bundle."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_IMAGE_CONFIG

from segqc.errors import ConfigError, OutputError
from segqc.jobs.train import TrainOptions, train_model
from segqc.synthetic import phantoms


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-job")
    phantoms.write_cases(phantoms.make_training_set(12, (32, 32), seed=0), root / "cases", fmt="png")
    (root / "config.yaml").write_text(TINY_IMAGE_CONFIG)
    return root


def folders(root):
    return root / "cases" / "images", root / "cases" / "masks"


def test_train_model_writes_a_bundle_and_says_which_config_it_used(data, tmp_path) -> None:
    told, steps, cases = [], [], []
    options = TrainOptions(config=str(data / "config.yaml"), steps=6, batch_size=4, labels=[0, 1, 2], seed=1,
                           device="cpu")
    run = train_model(*folders(data), tmp_path / "model", options, on_case=lambda done, total: cases.append(total),
                      on_step=steps.append, on_preset=told.append)
    assert run.preset == f"config {data / 'config.yaml'}" and told == [run.preset]
    assert run.is_writer and run.detector.labels_ == [0, 1, 2]
    assert [info.step for info in steps] == list(range(1, 7)) and cases and set(cases) == {12}
    metadata = json.loads((tmp_path / "model" / "segqc.json").read_text())
    assert metadata["mode"] == "image" and metadata["labels"] == [0, 1, 2]
    assert metadata["training"]["steps"] == 6 and metadata["training"]["batch_size"] == 4  # options beat the file
    assert metadata["training"]["seed"] == 1 and metadata["preprocess"]["spatial_size"] == [32, 32]  # the file's
    assert not (tmp_path / "model.checkpoints").exists()


def test_train_model_replaces_its_own_earlier_bundle(data, tmp_path) -> None:
    options = TrainOptions(config=str(data / "config.yaml"), steps=2, device="cpu")
    train_model(*folders(data), tmp_path / "model", options)
    first = (tmp_path / "model" / "segqc.json").read_text()
    train_model(*folders(data), tmp_path / "model", TrainOptions(config=str(data / "config.yaml"), steps=3,
                                                                  device="cpu"))
    assert json.loads((tmp_path / "model" / "segqc.json").read_text())["training"]["steps"] == 3
    assert json.loads(first)["training"]["steps"] == 2


@pytest.mark.parametrize("existing", ["foreign-folder", "file", "inside-input"])
def test_train_model_refuses_an_output_it_did_not_write_and_writes_nothing(existing: str, data, tmp_path) -> None:
    images, masks = folders(data)
    if existing == "foreign-folder":
        out = tmp_path / "model"
        out.mkdir()
        (out / "weights.pt").write_text("someone else's")
    elif existing == "file":
        out = tmp_path / "model"
        out.write_text("a file")
    else:
        out = images / "model"
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    image_files = sorted(images.iterdir())
    with pytest.raises(OutputError, match="--out"):
        train_model(images, masks, out, TrainOptions(config=str(data / "config.yaml"), steps=2, device="cpu"))
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert sorted(images.iterdir()) == image_files and not (out.parent / "model.checkpoints").exists()


def test_an_unknown_preset_is_refused_before_anything_is_written(data, tmp_path) -> None:
    with pytest.raises(ConfigError, match="smal"):
        train_model(*folders(data), tmp_path / "model", TrainOptions(config="smal", device="cpu"))
    assert list(tmp_path.iterdir()) == []


class Stop(Exception):
    """Raised by on_preset to end a run once the preset is chosen."""


def stop_at_preset(told: list[str]):
    def on_preset(description: str) -> None:
        told.append(description)
        raise Stop

    return on_preset


@pytest.mark.parametrize(("config", "slice_axis", "expected"), [
    (None, None, "preset 'small' (chosen for 2D data on a CPU)"),
    ("small", None, "preset 'small' (2D)"),
])
def test_the_preset_is_named_before_training_starts(config, slice_axis, expected: str, data, tmp_path) -> None:
    told: list[str] = []
    with pytest.raises(Stop):
        train_model(*folders(data), tmp_path / "model", TrainOptions(config=config, slice_axis=slice_axis,
                                                                      device="cpu"),
                    on_preset=stop_at_preset(told))
    assert told == [expected] and not (tmp_path / "model").exists()


def test_with_a_slice_axis_the_preset_is_2d_without_reading_the_data(tmp_path) -> None:
    told: list[str] = []
    with pytest.raises(Stop):
        train_model(tmp_path / "no-images", tmp_path / "no-masks", tmp_path / "model",
                    TrainOptions(slice_axis=2, device="cpu"), on_preset=stop_at_preset(told))
    assert told == ["preset 'small' (chosen for 2D data on a CPU)"]
