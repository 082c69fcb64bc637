"""json_default: what segqc's own values become in JSON (a TypeError for anything else); finite_number: numbers
read back."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pytest

from segqc.jsonable import finite_number, json_default


def dumped(value: object) -> object:
    return json.loads(json.dumps(value, default=json_default))


@pytest.mark.parametrize(("value", "expected"), [
    (np.int64(7), 7),
    (np.int8(-3), -3),
    (np.uint16(65535), 65535),
    (np.float32(0.5), 0.5),
    (np.bool_(True), True),
    (np.str_("organ"), "organ"),
    (np.array([[1, 2], [3, 4]], dtype=np.int32), [[1, 2], [3, 4]]),
    (np.array([0.25, 0.75], dtype=np.float32), [0.25, 0.75]),
    (np.zeros((0,)), []),
    (Path("/data/case.nii.gz"), "/data/case.nii.gz"),
    (PurePosixPath("relative/model"), "relative/model"),
    (pd.NA, None),
    (pd.NaT, None),
])
def test_segqc_values_become_plain_json(value: object, expected: object) -> None:
    assert dumped({"value": value}) == {"value": expected}


def test_values_nested_in_containers_are_converted() -> None:
    document = {"labels": [np.int64(0), np.int64(2)], "counts": np.arange(3), "where": [Path("a/b")],
                "score": {"mean": np.float32(1.5), "missing": pd.NA}}
    assert dumped(document) == {"labels": [0, 2], "counts": [0, 1, 2], "where": ["a/b"],
                                "score": {"mean": 1.5, "missing": None}}


def test_numpy_scalars_become_python_types() -> None:
    assert type(json_default(np.int64(1))) is int
    assert type(json_default(np.float32(1.0))) is float
    assert type(json_default(np.bool_(False))) is bool


class Unknown:
    pass


@pytest.mark.parametrize("value", [Unknown(), {1, 2}, b"bytes", complex(1, 2), object()])
def test_values_without_a_json_form_raise_type_error_naming_the_type(value: object) -> None:
    with pytest.raises(TypeError, match=type(value).__name__):
        json_default(value)
    with pytest.raises(TypeError):
        json.dumps({"value": value}, default=json_default)


@pytest.mark.parametrize(("value", "expected"), [
    ("0.25", 0.25), (3, 3.0), (np.float32(0.5), 0.5), ("nan", None), (float("inf"), None), ("", None),
    ("n/a", None), (None, None), ([1], None),
])
def test_finite_number_reads_back_only_finite_values(value, expected):
    assert finite_number(value) == expected
