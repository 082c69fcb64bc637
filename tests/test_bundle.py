"""Bundles and atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segqc import bundle
from segqc.atomic import atomic_file
from segqc.errors import BundleError, OutputError


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


@pytest.mark.parametrize("edit", [
    lambda meta: meta["calibration"].update(review=1e9),
    lambda meta: meta.update(labels=[0, 2]),
    lambda meta: meta["checksums"].update({bundle.WEIGHTS_FILE: "0" * 64}),
    lambda meta: meta.pop("digest"),
    lambda meta: meta.update(extra="added"),
], ids=["threshold", "labels", "checksum", "no-digest", "added-key"])
def test_edited_metadata_is_refused(tmp_path, edit) -> None:
    path = bundle.write_bundle(tmp_path / "b", "image", {"calibration": {"review": 1.0, "fail": 2.0},
                                                       "labels": [0, 1]}, {"w": torch.zeros(1)}, {})
    meta = json.loads((path / bundle.METADATA_FILE).read_text())
    edit(meta)
    (path / bundle.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"segqc\.json: the metadata was modified"):
        bundle.read_bundle(path, "image")


def test_reformatted_metadata_is_still_accepted(tmp_path) -> None:
    path = bundle.write_bundle(tmp_path / "b", "image", {"values": [1.5, float("nan")], "n": 3},
                               {"w": torch.zeros(1)}, {})
    meta = json.loads((path / bundle.METADATA_FILE).read_text())
    (path / bundle.METADATA_FILE).write_text(json.dumps(dict(reversed(list(meta.items())))))  # other order, no indent
    assert bundle.read_bundle(path, "image").metadata["n"] == 3


def test_only_a_folder_segqc_wrote_is_replaced(tmp_path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputError, match="not written by segqc"):
        bundle.write_bundle(tmp_path / "mine", "image", {}, {"w": torch.zeros(1)}, {})
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"
    path = bundle.write_bundle(tmp_path / "b", "image", {"v": 1}, {"w": torch.zeros(1)}, {})
    bundle.write_bundle(path, "image", {"v": 2}, {"w": torch.zeros(1)}, {})
    assert bundle.read_bundle(path, "image").metadata["v"] == 2
