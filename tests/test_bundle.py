"""Bundles and atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segqc import bundle
from segqc.atomic import atomic_file
from segqc.errors import BundleError


def test_round_trip(tmp_path) -> None:
    path = bundle.write_bundle(tmp_path / "b", "tabular", {"note": "hi"}, {"w": torch.arange(3.0)},
                               {"a": np.eye(2)})
    content = bundle.read_bundle(path, "tabular")
    assert content.metadata["note"] == "hi" and content.metadata["format_version"] == bundle.FORMAT_VERSION
    torch.testing.assert_close(content.tensors["w"], torch.arange(3.0))
    np.testing.assert_array_equal(content.arrays["a"], np.eye(2))


def test_failed_write_keeps_the_previous_bundle(tmp_path) -> None:
    path = bundle.write_bundle(tmp_path / "b", "tabular", {"v": 1}, {"w": torch.zeros(1)}, {})
    with pytest.raises(TypeError):
        bundle.write_bundle(path, "tabular", {"v": object()}, {"w": torch.ones(1)}, {})
    assert bundle.read_bundle(path, "tabular").metadata["v"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_pickled_arrays_are_refused(tmp_path) -> None:
    path = bundle.write_bundle(tmp_path / "b", "tabular", {}, {"w": torch.zeros(1)}, {})
    with (path / bundle.ARRAYS_FILE).open("wb") as handle:
        np.savez(handle, evil=np.array([object()], dtype=object))
    with pytest.raises(BundleError):
        bundle.read_bundle(path, "tabular")


def test_atomic_file_leaves_nothing_on_error(tmp_path) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), atomic_file(target) as temporary:
        temporary.write_text("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
