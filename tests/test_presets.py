"""Packaged training presets: names, automatic choice, and `segqc train` without --config."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from segqc.cli import app
from segqc.config import read_mapping_file
from segqc.errors import ConfigError
from segqc.presets import PRESETS, preset_path, resolve_config
from segqc.synthetic import phantoms


@pytest.mark.parametrize("name, dims", [(name, dims) for name, files in PRESETS.items() for dims in files])
def test_every_preset_ships_and_reads(name, dims) -> None:
    sections = read_mapping_file(preset_path(name, dims), ("data", "model", "training"), "config file")
    assert sections["data"]["spatial_dims"] == dims and sections["training"]["steps"] > 0


@pytest.mark.parametrize("dims, on_gpu, expected", [(2, False, "small"), (3, False, "small"), (2, True, "gpu"),
                                                    (3, True, "small")])
def test_automatic_choice_follows_data_and_device(dims, on_gpu, expected) -> None:
    path, description = resolve_config(None, lambda: dims, on_gpu)
    assert path == preset_path(expected, dims) and f"'{expected}'" in description and f"{dims}D" in description


def test_names_files_and_typos(tmp_path) -> None:
    own = tmp_path / "mine.yaml"
    own.write_text("training: {steps: 5}\n")
    assert resolve_config(str(own), lambda: 2, False)[0] == own
    assert resolve_config("paper", lambda: 2, True)[0] == preset_path("paper", 2)
    with pytest.raises(ConfigError, match="did you mean 'small'"):
        resolve_config("smal", lambda: 2, False)
    with pytest.raises(ConfigError, match="no 3D preset"):
        resolve_config("paper", lambda: 3, False)


def test_train_without_config_picks_and_names_a_preset(tmp_path) -> None:
    phantoms.write_cases(phantoms.make_training_set(12, (48, 48), seed=0), tmp_path / "data", fmt="png")
    result = CliRunner().invoke(app, ["train", "--images", str(tmp_path / "data/images"), "--masks",
                                      str(tmp_path / "data/masks"), "--out", str(tmp_path / "model"), "--steps", "2",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "preset 'small' (chosen for 2D data on a CPU)" in result.stderr
    assert (tmp_path / "model" / "segqc.json").is_file()
