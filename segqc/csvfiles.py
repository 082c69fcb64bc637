"""Spreadsheet-safe CSV: the one writer (and its reader) for every CSV segqc writes.

A spreadsheet opening a CSV runs a cell that starts with ``=``, ``+``, ``-``
or ``@`` (or a tab or carriage return before one) as a formula, so a row id or
file name such as ``=HYPERLINK("http://...")`` would become a live link or
command on a reviewer's screen (CSV injection). :func:`write_csv` therefore
writes every *text* cell (and column name) that starts with one of those
characters, or with the escape character ``'`` itself, with a ``'`` in front:
spreadsheets show it as text. Numbers are written as numbers, negative ones
included; only text is escaped. :func:`read_csv` removes exactly one leading
``'`` from every text cell and name, so segqc reads its own files back as they
were (``'=1+1`` -> ``=1+1``, ``''x`` -> ``'x``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula."""
ESCAPE = "'"


def escape_text(value: Any) -> Any:
    """``value`` as a spreadsheet shows it as text: a ``'`` before a text that starts a formula (or with ``'``)."""
    if isinstance(value, str) and value.startswith((*FORMULA_STARTS, ESCAPE)):
        return ESCAPE + value
    return value


def unescape_text(value: Any) -> Any:
    """Inverse of :func:`escape_text` for text read back from a file :func:`write_csv` wrote."""
    if isinstance(value, str) and value.startswith(ESCAPE):
        return value[1:]
    return value


def write_csv(frame: pd.DataFrame, target: str | os.PathLike[str] | TextIO) -> None:
    """Write ``frame`` as CSV (no index) with every text cell and column name spreadsheet-safe.

    Args:
        frame: The table; numeric columns are written as they are.
        target: A path or an open text handle.
    """
    safe = frame.rename(columns=lambda name: escape_text(str(name)))
    for position, dtype in enumerate(safe.dtypes):
        if dtype == object or isinstance(dtype, pd.StringDtype):
            safe.isetitem(position, safe.iloc[:, position].map(escape_text, na_action="ignore"))
    safe.to_csv(target, index=False)


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV :func:`write_csv` wrote, every column as text (ids such as ``007`` or ``NA`` intact).

    Args:
        path: The file.

    Returns:
        The table; empty cells are empty strings.
    """
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.columns = [unescape_text(name) for name in table.columns]
    for position in range(table.shape[1]):
        table.isetitem(position, table.iloc[:, position].map(unescape_text))
    return table
