"""Spreadsheet-safe CSV: text that would start a formula is written as text, numbers stay numbers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segqc.csvfiles import escape_text, read_csv, unescape_text, write_csv


@pytest.mark.parametrize("text, written", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("@SUM(A1)", "'@SUM(A1)"), ("+1", "'+1"),
    ("-cmd", "'-cmd"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("'quoted", "''quoted"), ("007", "007"), ("a=b", "a=b"),
    ("", ""),
])
def test_text_cells_round_trip(text: str, written: str) -> None:
    assert escape_text(text) == written and unescape_text(written) == text


def test_only_text_is_escaped_and_everything_reads_back(tmp_path: Path) -> None:
    frame = pd.DataFrame({"=id": ["=1+2", "-x", "007", "NA", None],
                          "score": [-1.5, 0.0, 2.0, -3e-5, np.nan],
                          "rank": pd.array([1, 2, 3, 4, None], dtype="Int64")})
    write_csv(frame, tmp_path / "t.csv")
    rows = list(csv.reader(io.StringIO((tmp_path / "t.csv").read_text())))
    assert rows[0] == ["'=id", "score", "rank"]
    assert [row[0] for row in rows[1:]] == ["'=1+2", "'-x", "007", "NA", ""]
    assert [row[1] for row in rows[1:]] == ["-1.5", "0.0", "2.0", "-3e-05", ""]  # negative numbers unescaped
    back = read_csv(tmp_path / "t.csv")
    assert list(back.columns) == ["=id", "score", "rank"]
    assert back["=id"].tolist() == ["=1+2", "-x", "007", "NA", ""]
    assert pd.read_csv(tmp_path / "t.csv")["score"].dtype == np.float64
