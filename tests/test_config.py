"""Config values are checked when a section is built: types, ranges, and the name the user gave."""

from __future__ import annotations

import math

import pytest

from segqc.config import ImageModelConfig, TabularModelConfig, TrainingConfig, from_mapping, merged_config
from segqc.data.preprocess import PreprocessConfig
from segqc.errors import ConfigError, FieldError


@pytest.mark.parametrize("cls, values, message", [
    (TrainingConfig, {"steps": "many"}, "training.steps: expected a whole number, found text 'many'"),
    (TrainingConfig, {"steps": 1.5}, "training.steps: expected a whole number, found 1.5"),
    (TrainingConfig, {"steps": True}, "training.steps: expected a whole number, found true"),
    (TrainingConfig, {"lr": "1e-3"}, "write e.g. 1.0e-3"),
    (TrainingConfig, {"lr": math.inf}, "training.lr: expected a number, found inf"),
    (TrainingConfig, {"amp": "yes"}, "training.amp: expected true or false, found text 'yes'"),
    (TrainingConfig, {"device": 5}, "training.device: expected text, found 5"),
    (TrainingConfig, {"lr": 1e30}, "training.lr: invalid value 1e+30; expected a learning rate in (0, 1]"),
    (TrainingConfig, {"seed": -1}, "training.seed: invalid value -1"),
    (TrainingConfig, {"seed": 2**40}, "training.seed"),
    (TrainingConfig, {"device": "gpu"}, "training.device: invalid value 'gpu'; expected auto, cpu, cuda or cuda:N"),
    (TrainingConfig, {"lr_min": 1.0}, "training.lr_min"),
    (TrainingConfig, {"checkpoint_every": -5}, "training.checkpoint_every"),
    (TabularModelConfig, {"width": 20.5}, "model.width: expected a whole number, found 20.5"),
    (TabularModelConfig, {"dropout": 1.0}, "model.dropout"),
    (TabularModelConfig, {"score_batch_size": 0}, "model.score_batch_size"),
    (TabularModelConfig, {"method": "msmaa"}, "did you mean 'msma'"),
    (ImageModelConfig, {"network": [16]}, "model.network: expected a mapping, found the list [16]"),
    (ImageModelConfig, {"quality_snapshots": "abc"}, "model.quality_snapshots: expected a list of numbers"),
    (ImageModelConfig, {"quality_snapshots": [0.5, 2]}, "model.quality_snapshots"),
    (PreprocessConfig, {"spatial_size": [64.0, 64.0]}, "data.spatial_size: expected a list of whole numbers"),
    (PreprocessConfig, {"slice_axis": "2"}, "data.slice_axis: expected a whole number or null, found text '2'"),
], ids=lambda value: str(value)[:40] if isinstance(value, (dict, str)) else None)
def test_wrong_types_and_ranges_name_the_key(cls, values, message) -> None:
    with pytest.raises(FieldError) as info:
        from_mapping(cls, values, "data" if cls is PreprocessConfig else
                     "training" if cls is TrainingConfig else "model")
    assert message in str(info.value)


def test_whole_numbers_are_numbers() -> None:
    config = TrainingConfig(lr=1, ema_decay=0)
    assert isinstance(config.lr, float) and config.lr == 1.0


@pytest.mark.parametrize("overrides, message", [({"seed": -1}, "--seed -1: invalid value -1"),
                                                ({"batch_size": 0}, "--batch-size 0: invalid value 0")])
def test_values_from_options_are_named_as_options(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        merged_config(TrainingConfig, {}, "training", overrides)


def test_values_from_a_file_keep_their_key_and_sections_must_be_mappings() -> None:
    with pytest.raises(FieldError, match="training.seed"):
        merged_config(TrainingConfig, {"training": {"seed": -1}}, "training", {"steps": 5})
    with pytest.raises(ConfigError, match="training: expected a mapping of settings, found 5"):
        merged_config(TrainingConfig, {"training": 5}, "training", {})
