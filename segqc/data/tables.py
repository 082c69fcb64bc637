"""Reading tables: CSV / TSV (delimiter and header checked) and Parquet, with progress on long reads.

Id columns are read as text, so ids keep their exact spelling (``007``, ``NA``).
Schemas and encodings of the columns are :mod:`segqc.data.tabular`'s.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from segqc.errors import InputError, SchemaError
from segqc.inputs import check_input_file

logger = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
DELIMITERS = (",", ";", "\t", "|")
# pandas' default missing-value markers (docs of read_csv, na_values); id columns keep them as text.
NA_STRINGS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
              "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
Progress = Callable[[int, int], None]
"""``progress(done, total)``: megabytes read, or columns typed / encoded."""


class _CountingReader(io.RawIOBase):
    """A binary file that reports how many megabytes were read of how many."""

    def __init__(self, path: Path, on_progress: Progress) -> None:
        self._handle = path.open("rb")
        self._total = max(os.fstat(self._handle.fileno()).st_size >> 20, 1)
        self._on_progress = on_progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = self._handle.readinto(buffer)
        self._on_progress(min(self._handle.tell() >> 20, self._total) if count else self._total, self._total)
        return count

    def close(self) -> None:
        self._handle.close()
        super().close()


def read_table(path: str | Path, text_columns: Sequence[str] = (), on_progress: Progress | None = None
               ) -> pd.DataFrame:
    """Read a CSV-like (comma, or tab for ``.tsv``) or Parquet file.

    The column delimiter of a CSV-like file is detected from its header row
    (see :func:`_choose_delimiter`); a delimiter other than the suffix's usual
    one is logged as a warning.

    Args:
        path: The file.
        text_columns: Columns read as text exactly as written (ids: ``007``
            stays ``007``, ``NA`` stays ``NA``), in CSV-like files.
        on_progress: Called with ``(megabytes read, megabytes)`` while a CSV is read.

    Returns:
        The table with at least one row and one column.

    Raises:
        InputError: The path is missing, a directory, a pipe or device, empty,
            not UTF-8, malformed, or has no data rows.
        SchemaError: Two or more columns have the same name.
    """
    path = check_input_file(path, "CSV or Parquet file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file; expected a header row and data rows")
    parquet = path.suffix.lower() in PARQUET_SUFFIXES
    try:
        if parquet:
            check_unique_columns(pq.read_schema(path).names, str(path))
            frame = pd.read_parquet(path)
        else:
            usual = "\t" if path.suffix.lower() == ".tsv" else ","
            delimiter, header = _choose_delimiter(path, usual)
            if delimiter != usual:
                logger.warning("%s: read with %r as the column delimiter", path, delimiter)
            check_unique_columns(header, str(path))
            text = [name for name in text_columns if name in header]
            missing = {name: NA_STRINGS for name in header if name not in text}
            source = _CountingReader(path, on_progress) if on_progress else path
            try:
                with warnings.catch_warnings():  # pandas warns, and drops fields, when rows are longer than the header
                    warnings.simplefilter("error", pd.errors.ParserWarning)
                    frame = pd.read_csv(source, sep=delimiter, encoding="utf-8", dtype={name: str for name in text},
                                        keep_default_na=not text, na_values=missing if text else None,
                                        index_col=False)
            finally:
                if on_progress:
                    source.close()
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (invalid byte at position {err.start}); "
                         "re-save the file as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: no columns found; expected a header row and data rows") from None
    except pd.errors.ParserWarning:
        raise InputError(f"{path}: data rows have more fields than the header's {len(header)} column names; name "
                         f"every column in the header, or quote fields that hold the delimiter {delimiter!r}") from None
    except (pd.errors.ParserError, csv.Error) as err:
        raise InputError(f"{path}: malformed CSV ({str(err).strip().splitlines()[-1]})") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read as {'Parquet' if parquet else 'CSV'}"
                         f" ({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})") from None
    if frame.shape[1] == 0:
        raise InputError(f"{path}: no columns found; expected a header row and data rows")
    if frame.shape[0] == 0:
        raise InputError(f"{path}: has a header but no data rows")
    return frame


def _header_row(path: Path, delimiter: str, strict: bool) -> list[str]:
    """The first non-empty row of a CSV-like file, parsed by the ``csv`` module.

    Args:
        path: The file.
        delimiter: Column delimiter.
        strict: Raise ``csv.Error`` on bad quoting instead of reading on.

    Returns:
        The header names (``[]`` when the file has only blank lines).
    """
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        return next((row for row in csv.reader(handle, delimiter=delimiter, strict=strict) if row), [])


def _parse_header(path: Path, delimiter: str) -> tuple[list[str], bool]:
    """Parse the header row with one delimiter and say whether the parse is clean.

    A parse is clean when it follows strict quoting rules and leaves no quote
    character in a name, i.e. every quote opened or closed a field. A
    delimiter that occurs only inside quoted names gives an unclean parse.

    Args:
        path: The file.
        delimiter: Column delimiter.

    Returns:
        The header names and whether the parse is clean.

    Raises:
        csv.Error: The row cannot be parsed even leniently (e.g. a field over
            the ``csv`` module's size limit).
    """
    try:
        header = _header_row(path, delimiter, strict=True)
    except csv.Error:
        return _header_row(path, delimiter, strict=False), False
    return header, not any('"' in name for name in header)


def _choose_delimiter(path: Path, usual: str) -> tuple[str, list[str]]:
    """Pick the column delimiter of a CSV-like file from its header row.

    Clean parses (see :func:`_parse_header`) beat unclean ones, then more
    columns win (the most frequent delimiter outside quotes), then ``usual``,
    then the order of :data:`DELIMITERS`. A header with a tab keeps the tab
    when ``usual`` is a tab (``.tsv``). A header without any candidate stays
    one column with ``usual``.

    Args:
        path: The file.
        usual: The suffix's usual delimiter (``","``, or ``"\\t"`` for ``.tsv``).

    Returns:
        The delimiter and the header row as it parses with it.

    Raises:
        csv.Error: The header row cannot be parsed with any candidate.
    """
    parsed: dict[str, tuple[list[str], bool]] = {}
    failures: list[csv.Error] = []
    for delimiter in (usual, *(d for d in DELIMITERS if d != usual)):
        try:
            parsed[delimiter] = _parse_header(path, delimiter)
        except csv.Error as err:
            failures.append(err)
    if not parsed:
        raise failures[-1]

    def rank(delimiter: str) -> tuple[bool, bool, int]:
        header, clean = parsed[delimiter]
        return delimiter == "\t" == usual and len(header) > 1, clean, len(header)

    best = max(parsed, key=rank)
    return best, parsed[best][0]


def check_unique_columns(names: Sequence[object], where: str) -> None:
    """Refuse a table whose column names are not unique.

    Empty names are skipped: readers name such columns by position.

    Args:
        names: Column names in table order.
        where: Name of the table for messages (e.g. the file path).

    Raises:
        SchemaError: A name occurs more than once; the message names each
            duplicated column and its 1-based positions.
    """
    positions: dict[object, list[int]] = {}
    for position, name in enumerate(names, start=1):
        if name != "":
            positions.setdefault(name, []).append(position)
    repeated = [f"column name {name!r} appears {len(cols)} times "
                f"(columns {', '.join(map(str, cols[:-1]))} and {cols[-1]})"
                for name, cols in positions.items() if len(cols) > 1]
    if repeated:
        raise SchemaError(f"{where}: {', '.join(repeated)}; column names must be unique")
