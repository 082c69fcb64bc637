"""Run history of nightly QC and a cache of scored cases, in one SQLite file.

Two tables:

* ``runs``: one row per ``segqc score`` run (start time, model id, case count,
  verdict counts, score quantiles, report path), for trends across nights. A
  run goes in and comes out as a subset of its ``summary.json`` dict plus
  ``report``, so stored runs can be handed to the trend chart as they are.
* ``cases``: the last ``scores.csv`` row of each ``(model id, case id)`` with
  the fingerprint of the files it was computed from, so that an incremental
  run can reuse the row of an unchanged case verbatim.

Every write is one transaction: an interrupted run leaves either all of its
rows or none. The schema version is kept in SQLite's ``user_version`` pragma.
A database another process holds locked is waited for, with a warning that
says so, for up to :data:`LOCK_TIMEOUT_S`; a lock that outlasts it, a full
disk, a read-only file and the like are reported as bad input naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from segqc.atomic import create_whole
from segqc.errors import InputError
from segqc.inputs import check_input_file
from segqc.jsonable import json_default

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Concurrent nightly runs on one history file wait this long for each other's write transaction.
LOCK_TIMEOUT_S = 120.0
# A lock still held after this long is announced (a concurrent run's write takes well under a second).
LOCK_NOTICE_S = 2.0
VERDICTS = ("pass", "review", "fail", "error")
QUANTILES = ("p25", "median", "p75", "p95")

_SCHEMA = (
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started TEXT NOT NULL,
        started_utc TEXT NOT NULL,
        model_id TEXT NOT NULL,
        cases INTEGER NOT NULL,
        verdict_pass INTEGER NOT NULL,
        verdict_review INTEGER NOT NULL,
        verdict_fail INTEGER NOT NULL,
        verdict_error INTEGER NOT NULL,
        score_p25 REAL,
        score_median REAL,
        score_p75 REAL,
        score_p95 REAL,
        report TEXT NOT NULL
    )""",
    "CREATE INDEX runs_by_model ON runs (model_id, started_utc)",
    """CREATE TABLE cases (
        model_id TEXT NOT NULL,
        case_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        score REAL,
        verdict TEXT,
        row_json TEXT NOT NULL,
        stored TEXT NOT NULL,
        PRIMARY KEY (model_id, case_id)
    )""",
)
_UPSERT_CASE = (
    "INSERT INTO cases (model_id, case_id, fingerprint, score, verdict, row_json, stored) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model_id, case_id) DO UPDATE SET "
    "fingerprint = excluded.fingerprint, score = excluded.score, verdict = excluded.verdict, "
    "row_json = excluded.row_json, stored = excluded.stored"
)


def fingerprint(paths: Sequence[str | os.PathLike[str]]) -> str:
    """A cheap fingerprint of a case's input files.

    SHA-256 over the ordered list of ``(file name, size in bytes, mtime in
    ns)``; file contents are not read. It changes when a file is rewritten
    (new mtime or size), renamed, added or removed, and stays the same when
    the folder holding the files is moved. A copy that keeps name, size and
    mtime (``cp -p``) counts as unchanged.

    Args:
        paths: The case's files in a fixed order (image channels, prediction,
            ground truth when given).

    Returns:
        64 hex digits.

    Raises:
        InputError: A file does not exist or cannot be read.
    """
    entries = []
    for path in map(Path, paths):
        try:
            status = path.stat()
        except OSError as error:
            raise InputError(f"{path}: cannot read file ({error.strerror or error})") from error
        entries.append([path.name, status.st_size, status.st_mtime_ns])
    return hashlib.sha256(json.dumps(entries).encode("utf-8")).hexdigest()


def _sort_time(started: str) -> str:
    """Sortable text of an ISO-8601 time: times with an offset become naive UTC (as in the trend chart)."""
    moment = datetime.fromisoformat(started)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat()


def _case_records(model_id: str, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Parameters of :data:`_UPSERT_CASE` for ``scores.csv`` rows carrying a ``fingerprint``."""
    records = []
    stored = datetime.now(timezone.utc).isoformat()
    for row in rows:
        if "case_id" not in row or "fingerprint" not in row:
            raise ValueError(f"case row lacks case_id or fingerprint: {sorted(row)}")
        result = {key: value for key, value in row.items() if key != "fingerprint"}
        records.append((model_id, str(row["case_id"]), str(row["fingerprint"]), _optional_float(result.get("score")),
                        result.get("verdict"), json.dumps(result, default=json_default), stored))
    return records


def _optional_float(value: Any) -> float | None:
    """``value`` as a float; ``None`` for a missing value (``None``, ``pd.NA``, empty text)."""
    if value is None or value is pd.NA or (isinstance(value, str) and not value.strip()):
        return None
    return float(value)


def _write_schema(path: Path) -> None:
    """An empty history database at ``path``: the schema and its version."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in _SCHEMA:
            connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    finally:
        connection.close()


class RunHistory:
    """The QC history database at ``path`` (created whole, with its schema, when missing).

    Use as a context manager, or call :meth:`close`.

    Args:
        path: The SQLite file.

    Raises:
        InputError: The file exists but is not a segqc history database, is of
            a newer schema version, or cannot be opened.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            if self.path.exists() or self.path.is_symlink():
                check_input_file(self.path, "history database", "--history")
            else:
                create_whole(self.path, _write_schema)  # a concurrent run may create it first
            self._connection = sqlite3.connect(self.path, isolation_level=None, timeout=LOCK_NOTICE_S)
        except (OSError, sqlite3.Error) as error:
            raise InputError(f"{self.path}: cannot open history database ({error})") from error
        try:
            self._check_schema()
        except sqlite3.OperationalError as error:  # locked past the wait, unreadable
            self._connection.close()
            raise InputError(f"{self.path}: cannot read the history database ({error}); {_remedy(error)}") from error
        except sqlite3.DatabaseError as error:
            self._connection.close()
            raise InputError(f"{self.path}: not a segqc history database ({error})") from error
        except InputError:
            self._connection.close()
            raise

    def __enter__(self) -> RunHistory:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection."""
        self._connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back on an exception.

        Raises:
            InputError: The database stayed locked for :data:`LOCK_TIMEOUT_S`, or
                cannot be written (full disk, read-only file, damaged file).
        """
        try:
            self._begin()
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")
        except sqlite3.OperationalError as error:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            raise InputError(f"{self.path}: cannot write the history database ({error}); "
                             f"{_remedy(error)}") from error

    def _begin(self) -> None:
        """Start a write transaction, waiting (and saying so) while another process holds the database."""
        started = time.monotonic()
        try:
            self._connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            if not _is_locked(error):
                raise
        logger.warning("%s: history database locked by another process (another segqc run?); waiting up to %.0f s",
                       self.path, LOCK_TIMEOUT_S)
        remaining = max(LOCK_TIMEOUT_S - (time.monotonic() - started), 0.0)
        self._connection.execute(f"PRAGMA busy_timeout = {int(remaining * 1000)}")
        try:
            self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if not _is_locked(error):
                raise
            raise InputError(f"{self.path}: history database still locked by another process after "
                             f"{LOCK_TIMEOUT_S:.0f} s; end that process (or wait for it) and run again, or give "
                             f"another --history file") from error
        finally:
            self._connection.execute(f"PRAGMA busy_timeout = {int(LOCK_NOTICE_S * 1000)}")

    def _check_schema(self) -> None:
        """Read (never write) the schema: a file segqc did not create as a history is refused as it is."""
        connection = self._connection
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 and not tables:
            raise InputError(f"{self.path}: not a segqc history database (an empty file or database segqc did not "
                             "create); give the path of a history segqc wrote, or of a file that does not exist yet")
        if version > SCHEMA_VERSION:
            raise InputError(f"{self.path}: history schema version {version} is newer than this segqc "
                             f"supports ({SCHEMA_VERSION}); upgrade segqc")
        if version != SCHEMA_VERSION or not {"runs", "cases"} <= tables:
            raise InputError(f"{self.path}: not a segqc history database (unexpected tables or version)")

    def append(self, run: Mapping[str, Any], cases: Sequence[Mapping[str, Any]] = ()) -> int:
        """Record one run, and optionally its scored cases, in one transaction.

        Args:
            run: The run's ``summary.json`` dict plus ``report`` (the report
                directory). Used: ``run.started`` (ISO-8601), ``run.cases``,
                ``model.id``, ``verdicts`` (``pass``/``review``/``fail``/
                ``error``; missing ones count 0) and ``score_quantiles``
                (``p25``, ``median``, ``p75``, ``p95``; ``None`` allowed).
            cases: Rows to store as with :meth:`store_cases`, under the run's
                model id; stored together with the run or not at all.

        Returns:
            The new run's id.

        Raises:
            ValueError: A key is missing or a value has the wrong type.
            TypeError: A case row holds a value that JSON cannot represent.
            InputError: The database stayed locked, or cannot be written.
        """
        with self.recording(run, cases) as run_id:
            return run_id

    @contextmanager
    def recording(self, run: Mapping[str, Any], cases: Sequence[Mapping[str, Any]] = ()) -> Iterator[int]:
        """Write one run (and its cases) now, and commit it when the block ends; roll it back on an exception.

        For work that must agree with the history: the rows are written (so a
        locked database or a full disk shows) before the block runs, and kept
        only if it succeeds. Arguments as for :meth:`append`.

        Yields:
            The new run's id.
        """
        try:
            started, count, model_id = run["run"]["started"], run["run"]["cases"], run["model"]["id"]
            report = os.fspath(run["report"])
        except KeyError as error:
            raise ValueError(f"run record lacks {error}") from error
        verdicts, quantiles = run.get("verdicts") or {}, run.get("score_quantiles") or {}
        values = (str(started), _sort_time(str(started)), str(model_id), int(count),
                  *(int(verdicts.get(verdict, 0)) for verdict in VERDICTS),
                  *(_optional_float(quantiles.get(name)) for name in QUANTILES), report)
        records = _case_records(str(model_id), cases)
        with self._transaction() as connection:
            cursor = connection.execute(
                "INSERT INTO runs (started, started_utc, model_id, cases, verdict_pass, verdict_review, "
                "verdict_fail, verdict_error, score_p25, score_median, score_p75, score_p95, report) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
            connection.executemany(_UPSERT_CASE, records)
            yield int(cursor.lastrowid)

    def runs(self, model_id: str | None = None) -> list[dict[str, Any]]:
        """Recorded runs, oldest first (by start time in UTC, then insertion).

        Args:
            model_id: Only the runs of this model; all runs when ``None``.

        Returns:
            ``{"id", "run": {"started", "cases"}, "model": {"id"}, "verdicts",
            "score_quantiles": {"p25", "median", "p75", "p95"}, "report"}``
            per run, ``started`` as it was given.
        """
        query = "SELECT * FROM runs"
        parameters: tuple[str, ...] = ()
        if model_id is not None:
            query += " WHERE model_id = ?"
            parameters = (model_id,)
        with self._reading():
            cursor = self._connection.execute(query + " ORDER BY started_utc, id", parameters)
            columns = [description[0] for description in cursor.description]
            rows = cursor.fetchall()
        return [self._run_record(dict(zip(columns, row))) for row in rows]

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Report a read that fails (a lock held by a writer for long, a damaged file) as bad input."""
        try:
            yield
        except sqlite3.OperationalError as error:
            raise InputError(f"{self.path}: cannot read the history database ({error}); {_remedy(error)}") from error

    @staticmethod
    def _run_record(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row["id"],
            "run": {"started": row["started"], "cases": row["cases"]},
            "model": {"id": row["model_id"]},
            "verdicts": {verdict: row[f"verdict_{verdict}"] for verdict in VERDICTS},
            "score_quantiles": {name: row[f"score_{name}"] for name in QUANTILES},
            "report": row["report"],
        }

    def store_cases(self, model_id: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store (insert or replace) scored cases of a model, all in one transaction.

        Args:
            model_id: The model that scored the cases.
            rows: ``scores.csv`` rows as dicts with ``case_id`` plus a
                ``fingerprint`` key (:func:`fingerprint` of the case's files),
                which is stored beside the row, not in it.

        Raises:
            ValueError: A row lacks ``case_id`` or ``fingerprint``.
            TypeError: A row holds a value that JSON cannot represent.
        """
        records = _case_records(model_id, rows)
        with self._transaction() as connection:
            connection.executemany(_UPSERT_CASE, records)

    def cached_case(self, model_id: str, case_id: str, fingerprint: str) -> dict[str, Any] | None:
        """The stored row of a case if it was scored by this model from unchanged files.

        Args:
            model_id: The model id.
            case_id: The case id.
            fingerprint: :func:`fingerprint` of the case's files now.

        Returns:
            The ``scores.csv`` row as stored (without ``fingerprint``), or
            ``None`` when the case is unknown or its files changed.
        """
        with self._reading():
            found = self._connection.execute(
                "SELECT row_json FROM cases WHERE model_id = ? AND case_id = ? AND fingerprint = ?",
                (model_id, case_id, fingerprint)).fetchone()
        return None if found is None else json.loads(found[0])


def _is_locked(error: sqlite3.OperationalError) -> bool:
    return "locked" in str(error) or "busy" in str(error)


def _remedy(error: sqlite3.OperationalError) -> str:
    """What to do about a failed write, from SQLite's message."""
    text = str(error)
    if "full" in text:
        return "the disk is full: free some space and run again"
    if "readonly" in text or "read-only" in text:
        return "the file or its folder is read-only: make it writable or give another --history file"
    if _is_locked(error):
        return "another process holds it locked: wait for that process and run again"
    return "check the file and the disk, or give another --history file"
