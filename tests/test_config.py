"""Config values are checked when a section is built: types, ranges, and the name the user gave."""

from __future__ import annotations

import math
import re

import pytest

from segqc.config import (
    CLEAN_SIGMA_MIN,
    CONTAMINATED_SIGMA_MIN,
    ImageModelConfig,
    TabularModelConfig,
    TrainingConfig,
    from_mapping,
    merged_config,
)
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
    # whole numbers beyond 64 bits (or just absurd) are refused naming the key, never passed on to overflow
    (TrainingConfig, {"steps": 10**20}, "training.steps: invalid value 100000000000000000000; expected 1..100,000,000"),
    (TrainingConfig, {"batch_size": 10**20}, "training.batch_size: invalid value 100000000000000000000; expected 1.."),
    (TrainingConfig, {"val_every": 10**20}, "training.val_every: invalid value"),
    (TrainingConfig, {"checkpoint_every": 10**20}, "training.checkpoint_every: invalid value"),
    (TabularModelConfig, {"width": 10**20}, "model.width: invalid value 100000000000000000000; expected 1..16,777,216"),
    (TabularModelConfig, {"depth": 10**20}, "model.depth: invalid value 100000000000000000000; expected 0..1,000"),
    (TabularModelConfig, {"embedding_size": 10**20}, "model.embedding_size: invalid value 100000000000000000000"),
    (TabularModelConfig, {"levels": 10**20}, "model.levels: invalid value 100000000000000000000"),
    (TabularModelConfig, {"score_batch_size": 10**20}, "model.score_batch_size: invalid value"),
    (ImageModelConfig, {"max_components": 10**20}, "model.max_components: invalid value"),
    (ImageModelConfig, {"score_batch_size": 10**20}, "model.score_batch_size: invalid value"),
    (ImageModelConfig, {"degradations_per_case": 10**20}, "model.degradations_per_case: invalid value"),
    (ImageModelConfig, {"quality_examples": 10**20}, "model.quality_examples: invalid value"),
    (ImageModelConfig, {"atlas_size": 10**20}, "model.atlas_size: invalid value"),
    (PreprocessConfig, {"spatial_size": [10**20, 64]}, "data.spatial_size: invalid value [100000000000000000000, 64]"),
    # two keys checked together: both named with their values
    (TabularModelConfig, {"fail_quantile": 1}, "model.fail_quantile: invalid value 1.0; expected a quantile in (0, 1)"),
    (TabularModelConfig, {"fail_quantile": 0.9},
     ("model.review_quantile: expected review_quantile <= fail_quantile, found review_quantile 0.95 > "
      "fail_quantile 0.9")),
    (ImageModelConfig, {"review_quantile": 0.995},
     ("model.review_quantile: expected review_quantile <= fail_quantile, found review_quantile 0.995 > "
      "fail_quantile 0.99")),
    (TabularModelConfig, {"tau_max": 1.0}, "found tau_min 2.0 > tau_max 1.0"),
    (TabularModelConfig, {"sigma_min": 3.0}, "found sigma_min 3.0 > sigma_max 2.0"),
    (TabularModelConfig, {"sigma_min": 0}, "model.sigma_min: invalid value 0; expected a scale > 0"),
    (TabularModelConfig, {"sigma_max": -1.0}, "model.sigma_max: invalid value -1.0; expected a scale > 0"),
    (TabularModelConfig, {"sigma_max": 0.0, "contamination": "auto"}, "model.sigma_max: invalid value 0.0"),
    (TabularModelConfig, {"sigma_min": "fine"}, "model.sigma_min: expected a number or null, found text"),
], ids=lambda value: str(value)[:40] if isinstance(value, (dict, str)) else None)
def test_wrong_types_and_ranges_name_the_key(cls, values, message) -> None:
    with pytest.raises(FieldError) as info:
        from_mapping(cls, values, "data" if cls is PreprocessConfig else
                     "training" if cls is TrainingConfig else "model")
    assert message in str(info.value)


@pytest.mark.parametrize("values, floor", [
    ({}, CLEAN_SIGMA_MIN),
    ({"contamination": 0.0}, CLEAN_SIGMA_MIN),
    ({"contamination": "auto"}, CONTAMINATED_SIGMA_MIN),
    ({"contamination": 0.1}, CONTAMINATED_SIGMA_MIN),
    ({"contamination": "auto", "sigma_min": 0.3}, 0.3),
    ({"sigma_min": 0.5}, 0.5),
    ({"contamination": "auto", "sigma_max": 0.8}, 0.8),
])
def test_the_noise_floor_is_coarser_when_the_table_may_hold_anomalies(values: dict, floor: float) -> None:
    """Unless sigma_min is given, a table that may hold anomalies gets the coarser floor, never above sigma_max."""
    assert CLEAN_SIGMA_MIN < CONTAMINATED_SIGMA_MIN
    assert TabularModelConfig(**values).noise_floor == floor


def test_whole_numbers_are_numbers() -> None:
    config = TrainingConfig(lr=1, ema_decay=0)
    assert isinstance(config.lr, float) and config.lr == 1.0


@pytest.mark.parametrize("overrides, message", [({"seed": -1}, "--seed -1: invalid value -1"),
                                                ({"batch_size": 0}, "--batch-size 0: invalid value 0"),
                                                ({"steps": 10**20}, "--steps 100000000000000000000: invalid value"),
                                                ({"lr": 1e-6},
                                                 "--lr 1e-06: expected lr_min <= lr, found lr_min 1e-05 > lr 1e-06")])
def test_values_from_options_are_named_as_options(overrides, message) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        merged_config(TrainingConfig, {}, "training", overrides)


@pytest.mark.parametrize("file, overrides, message", [
    ({}, {"fail_quantile": 1.0}, "--fail-quantile 1.0: invalid value 1.0; expected a quantile in (0, 1)"),
    ({}, {"fail_quantile": 0.9},
     "--fail-quantile 0.9: expected review_quantile <= fail_quantile, found review_quantile 0.95 > fail_quantile 0.9"),
    ({}, {"review_quantile": 0.995},
     ("--review-quantile 0.995: expected review_quantile <= fail_quantile, found review_quantile 0.995 > "
      "fail_quantile 0.99")),
    ({"fail_quantile": 0.9}, {"review_quantile": 0.92},
     ("--review-quantile 0.92: expected review_quantile <= fail_quantile, found review_quantile 0.92 > "
      "fail_quantile 0.9")),
    ({"review_quantile": 0.95}, {}, None),
], ids=["fail-one", "fail-below-review", "review-above-fail", "review-option-against-file", "valid"])
def test_a_check_of_two_keys_is_named_after_the_option_given(file, overrides, message) -> None:
    """The option the user gave is named, whichever side of ``review_quantile <= fail_quantile`` it is."""
    if message is None:
        assert merged_config(TabularModelConfig, {"model": file}, "model", overrides).review_quantile == 0.95
        return
    with pytest.raises(ConfigError) as info:
        merged_config(TabularModelConfig, {"model": file}, "model", overrides)
    assert str(info.value) == message


def test_values_from_a_file_keep_their_key_and_sections_must_be_mappings() -> None:
    with pytest.raises(FieldError, match="training.seed"):
        merged_config(TrainingConfig, {"training": {"seed": -1}}, "training", {"steps": 5})
    with pytest.raises(ConfigError, match="training: expected a mapping of settings, found 5"):
        merged_config(TrainingConfig, {"training": 5}, "training", {})
