"""Sources and splits: one source never on both sides of a split."""

from __future__ import annotations

import numpy as np
import pytest

from segqc.data.cases import PreparedCase
from segqc.data.grouping import source_groups, split_groups
from segqc.data.pairing import CaseFiles
from segqc.errors import ConfigError


def test_group_split_never_puts_one_source_on_both_sides() -> None:
    groups = np.repeat([f"volume{i}" for i in range(17)], np.arange(1, 18))  # 1..17 slices per volume
    for seed in range(10):
        train, val = split_groups(groups, 0.2, seed)
        assert not set(groups[train]) & set(groups[val])
        assert len(train) + len(val) == len(groups) and len(train) > 0
        assert 0.1 < len(val) / len(groups) < 0.45


def prepared(case_id: str, source: str) -> PreparedCase:
    return PreparedCase(case_id, np.zeros((1, 2, 2), np.float32), None, CaseFiles(source, [], None), (2, 2),
                        np.eye(4))


def test_slices_of_a_volume_and_pattern_matches_form_one_source() -> None:
    cases = [prepared("vol1#2:0", "vol1"), prepared("vol1#2:1", "vol1"), prepared("p7_slice01", "p7_slice01"),
             prepared("p7_slice02", "p7_slice02"), prepared("other", "other")]
    assert source_groups(cases) == ["vol1", "vol1", "p7_slice01", "p7_slice02", "other"]
    assert source_groups(cases, r"(p\d+)_slice") == ["vol1", "vol1", "p7", "p7", "other"]
    with pytest.raises(ConfigError, match="--group-pattern"):
        source_groups(cases, "(unclosed")
