"""Shared CLI options: name lists, label lists and the settings every computing command applies."""

from __future__ import annotations

import re

import pytest

from segqc.cli.options import computing, parse_labels, split_names
from segqc.data import images
from segqc.errors import ConfigError


@pytest.mark.parametrize(("values", "expected"), [
    (None, []),
    ([], []),
    (["a"], ["a"]),
    (["a,b", "c"], ["a", "b", "c"]),
    ([" a , b ", "c,,", ","], ["a", "b", "c"]),
    (["age,sex", "age"], ["age", "sex", "age"]),  # repeats are the caller's to judge
])
def test_split_names_flattens_repeated_comma_separated_options(values, expected) -> None:
    assert split_names(values) == expected


@pytest.mark.parametrize(("text", "expected"), [("0,1,2", [0, 1, 2]), (" 0, 255 ", [0, 255]), ("3,-1", [3, -1]),
                                                ("0,1,", [0, 1])])
def test_parse_labels_reads_integer_label_values_in_the_given_order(text: str, expected: list[int]) -> None:
    assert parse_labels(text) == expected


def test_parse_labels_takes_every_64_bit_value() -> None:
    assert parse_labels(f"{-2**63},{2**63 - 1}") == [-2**63, 2**63 - 1]


@pytest.mark.parametrize(("text", "says"), [
    ("0,one,2", "expected comma-separated integer label values"),
    ("0,1.5", "expected comma-separated integer label values"),
    ("0;1", "expected comma-separated integer label values"),
    ("1", "expected at least two label values"),
    ("", "expected at least two label values"),
    ("0,1,1", "1 given more than once"),
    ("0,1,99999999999999999999", "99999999999999999999 outside -9223372036854775808..9223372036854775807"),
    ("-9223372036854775809,0", "-9223372036854775809 outside"),
])
def test_parse_labels_errors_name_the_option_and_the_value(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_labels(text)
    assert str(caught.value).startswith(f"--labels {text!r}:") and says in str(caught.value)


@pytest.fixture
def default_limit():
    yield
    images.set_max_voxels(None)


def test_computing_sets_the_file_size_limit(default_limit) -> None:
    computing(1, 1234)
    assert images.max_voxels(2) == 1234 and images.max_voxels(3) == 1234
    computing(1)
    assert images.max_voxels(2) == images.DEFAULT_MAX_VOXELS[2]


@pytest.mark.parametrize(("threads", "max_voxels", "option", "expected"), [
    (1, 0, "--max-voxels 0", "expected at least 1"), (1, -5, "--max-voxels -5", "expected at least 1"),
    (0, None, "--threads 0", "expected a number of threads in 1..")])
def test_computing_refuses_values_below_one(threads, max_voxels, option: str, expected: str, default_limit) -> None:
    with pytest.raises(ConfigError, match=f"^{option}: {expected}"):
        computing(threads, max_voxels)
    assert images.max_voxels(2) == images.DEFAULT_MAX_VOXELS[2]


@pytest.mark.parametrize("text", ["abc", "nan", "0", "-1", "1e6", "2.5"])
def test_an_invalid_max_voxels_variable_is_refused_before_any_work(text: str, monkeypatch, default_limit) -> None:
    monkeypatch.setenv(images.MAX_VOXELS_ENV, text)
    with pytest.raises(ConfigError, match=rf"^SEGQC_MAX_VOXELS='{re.escape(text)}': expected a positive whole number"):
        computing(1)
    with pytest.raises(ConfigError, match="SEGQC_MAX_VOXELS"):  # never clamped to 1, never an error row per file
        images.max_voxels(2)
    computing(1, 1234)  # --max-voxels wins over the variable
    assert images.max_voxels(2) == 1234
    computing(1, reads_images=False)  # the tabular commands read no image


def test_a_valid_max_voxels_variable_sets_the_limit(monkeypatch, default_limit) -> None:
    monkeypatch.setenv(images.MAX_VOXELS_ENV, " 5000 ")
    computing(1)
    assert images.max_voxels(2) == images.max_voxels(3) == 5000
    monkeypatch.setenv(images.MAX_VOXELS_ENV, "")
    assert images.max_voxels(3) == images.DEFAULT_MAX_VOXELS[3]
