"""SQLite run history and the incremental case cache."""

from __future__ import annotations

import math
import os
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segqc.errors import InputError
from segqc.history import RunHistory, fingerprint


def make_run(started: str, model_id: str = "abc123def456", fail: int = 1) -> dict:
    """A ``summary.json`` dict (keys the history does not keep included) plus ``report``."""
    return {"segqc_version": "0.1.0", "model": {"path": "qc-model", "id": model_id, "labels": [0, 1]},
            "run": {"started": started, "seconds": 1.5, "cases": 10, "scored": 9, "errors": 1},
            "verdicts": {"pass": 7, "review": 1, "fail": fail, "error": 1},
            "score_quantiles": {"min": 0.0, "p25": 1.0, "median": 2.0, "p75": 3.0, "p95": 4.5, "max": 9.0},
            "report": Path("/reports/night")}


def test_append_and_read_round_trip(tmp_path: Path) -> None:
    with RunHistory(tmp_path / "history.sqlite") as history:
        run_id = history.append(make_run("2024-05-01T02:00:00+02:00"))
    with RunHistory(tmp_path / "history.sqlite") as history:
        (stored,) = history.runs()
    assert stored == {"id": run_id, "run": {"started": "2024-05-01T02:00:00+02:00", "cases": 10},
                      "model": {"id": "abc123def456"},
                      "verdicts": {"pass": 7, "review": 1, "fail": 1, "error": 1},
                      "score_quantiles": {"p25": 1.0, "median": 2.0, "p75": 3.0, "p95": 4.5},
                      "report": str(Path("/reports/night"))}


def test_runs_are_ordered_by_time_and_filtered_by_model(tmp_path: Path) -> None:
    with RunHistory(tmp_path / "history.sqlite") as history:
        history.append(make_run("2024-05-03T02:00:00", fail=3))
        history.append(make_run("2024-05-01T02:00:00", fail=1))
        history.append(make_run("2024-05-02T02:00:00", model_id="other", fail=2))
        history.append(make_run("2024-05-02T03:00:00+02:00", fail=4))  # 01:00 UTC
        assert [run["verdicts"]["fail"] for run in history.runs()] == [1, 4, 2, 3]
        assert [run["verdicts"]["fail"] for run in history.runs("abc123def456")] == [1, 4, 3]
        assert history.runs("unknown") == []


def test_failed_append_leaves_no_row(tmp_path: Path) -> None:
    with RunHistory(tmp_path / "history.sqlite") as history:
        broken = make_run("2024-05-01T02:00:00")
        broken["verdicts"] = {"pass": "many"}
        with pytest.raises(ValueError):
            history.append(broken)
        with pytest.raises(ValueError, match="report"):
            history.append({key: value for key, value in make_run("2024-05-01").items() if key != "report"})
        with pytest.raises(ValueError):
            history.append(make_run("last night"))
        assert history.runs() == []


def test_append_stores_cases_with_the_run_or_not_at_all(tmp_path: Path) -> None:
    case = {"case_id": "case1", "status": "ok", "score": 2.0, "verdict": "pass", "rank": pd.NA, "fingerprint": "f"}
    with RunHistory(tmp_path / "history.sqlite") as history:
        with pytest.raises(sqlite3.Error):  # the second case fails after the run row was inserted
            history.append(make_run("2024-05-01T02:00:00"),
                           cases=[case, {**case, "case_id": "case2", "verdict": ["not", "text"]}])
        assert history.runs() == [] and history.cached_case("abc123def456", "case1", "f") is None
        history.append(make_run("2024-05-01T02:00:00"), cases=[case])
        assert len(history.runs()) == 1
        assert history.cached_case("abc123def456", "case1", "f") == {
            "case_id": "case1", "status": "ok", "score": 2.0, "verdict": "pass", "rank": None}


def test_run_without_scored_cases_has_no_quantiles(tmp_path: Path) -> None:
    run = {**make_run("2024-05-01T02:00:00"), "score_quantiles": None}
    with RunHistory(tmp_path / "history.sqlite") as history:
        history.store_cases("m1", [{"case_id": "x", "score": pd.NA, "fingerprint": "f"},
                                   {"case_id": "y", "score": "", "fingerprint": "f"}])
        assert history.cached_case("m1", "x", "f") == {"case_id": "x", "score": None}
    with RunHistory(tmp_path / "history.sqlite") as history:
        history.append(run)
        (stored,) = history.runs()
    assert stored["score_quantiles"] == {"p25": None, "median": None, "p75": None, "p95": None}


def test_case_cache_upsert_and_lookup(tmp_path: Path) -> None:
    row = {"case_id": "case1", "status": "ok", "message": "", "score": np.float64(1.5), "rank": 1,
           "verdict": "review", "norm_1": 0.25, "msd": float("nan"), "fingerprint": "f1"}
    with RunHistory(tmp_path / "history.sqlite") as history:
        history.store_cases("m1", [row, {**row, "case_id": "case2", "fingerprint": "f2"}])
        cached = history.cached_case("m1", "case1", "f1")
        assert cached is not None and "fingerprint" not in cached
        assert cached["score"] == 1.5 and cached["verdict"] == "review" and math.isnan(cached["msd"])
        assert history.cached_case("m1", "case1", "changed") is None
        assert history.cached_case("m2", "case1", "f1") is None
        assert history.cached_case("m1", "case3", "f1") is None
        history.store_cases("m1", [{**row, "score": 9.0, "verdict": "fail", "fingerprint": "f1b"}])
        assert history.cached_case("m1", "case1", "f1") is None
        assert history.cached_case("m1", "case1", "f1b")["score"] == 9.0
        assert history.cached_case("m1", "case2", "f2")["score"] == 1.5


def test_store_cases_is_all_or_nothing(tmp_path: Path) -> None:
    with RunHistory(tmp_path / "history.sqlite") as history:
        good = {"case_id": "a", "score": 1.0, "fingerprint": "f"}
        with pytest.raises(TypeError):
            history.store_cases("m1", [good, {"case_id": "b", "score": object(), "fingerprint": "f"}])
        with pytest.raises(ValueError, match="fingerprint"):
            history.store_cases("m1", [good, {"case_id": "b"}])
        # The second row fails inside the transaction, after the first was inserted: rolled back.
        with pytest.raises(sqlite3.Error):
            history.store_cases("m1", [good, {"case_id": "b", "verdict": ["not", "text"], "fingerprint": "f"}])
        assert history.cached_case("m1", "a", "f") is None


def test_fingerprint_tracks_size_mtime_and_names(tmp_path: Path) -> None:
    image, prediction = tmp_path / "case1_0000.nii.gz", tmp_path / "case1.nii.gz"
    image.write_bytes(b"image")
    prediction.write_bytes(b"mask")
    os.utime(prediction, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    first = fingerprint([image, prediction])
    assert first == fingerprint([str(image), str(prediction)])
    assert len(first) == 64
    assert fingerprint([prediction, image]) != first
    os.utime(prediction, ns=(1_700_000_000_000_000_001, 1_700_000_000_000_000_001))
    touched = fingerprint([image, prediction])
    assert touched != first
    prediction.write_bytes(b"mask!")
    os.utime(prediction, ns=(1_700_000_000_000_000_001, 1_700_000_000_000_000_001))
    assert fingerprint([image, prediction]) not in (first, touched)
    with pytest.raises(InputError, match="missing.nii.gz"):
        fingerprint([tmp_path / "missing.nii.gz"])


def test_corrupt_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"this is not a database " * 20)
    with pytest.raises(InputError, match=r"history\.sqlite: not a segqc history database"):
        RunHistory(path)


def test_foreign_sqlite_database_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE things (x)")
    connection.commit()
    connection.close()
    with pytest.raises(InputError, match="not a segqc history database"):
        RunHistory(path)


@pytest.mark.parametrize("link", [False, True])
def test_an_empty_file_segqc_did_not_create_is_refused_and_left_empty(tmp_path: Path, link: bool) -> None:
    empty = tmp_path / "notes.db"
    empty.touch()
    path = tmp_path / "history.sqlite" if link else empty
    if link:
        path.symlink_to(empty.name)
    with pytest.raises(InputError, match="an empty file or database segqc did not create"):
        RunHistory(path)
    assert empty.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == sorted({path.name, "notes.db"})


def test_a_history_is_created_whole_and_a_concurrent_creation_keeps_the_first(tmp_path: Path) -> None:
    from segqc.atomic import create_whole

    path = tmp_path / "night" / "history.sqlite"
    RunHistory(path).close()
    first = path.read_bytes()
    assert not create_whole(path, lambda temporary: temporary.write_bytes(b"second"))
    assert path.read_bytes() == first and [p.name for p in path.parent.iterdir()] == ["history.sqlite"]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    RunHistory(path).close()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(InputError, match="newer"):
        RunHistory(path)
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 99
    connection.close()


def test_a_lock_held_for_a_while_is_waited_for_and_said(tmp_path: Path, monkeypatch, caplog) -> None:
    import threading

    from segqc import history

    path = tmp_path / "history.sqlite"
    RunHistory(path).close()
    monkeypatch.setattr(history, "LOCK_NOTICE_S", 0.1)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.6, lambda: holder.execute("ROLLBACK"))
    release.start()
    try:
        with RunHistory(path) as runs:
            runs.append(make_run("2024-05-01T02:00:00"))
            assert len(runs.runs()) == 1
    finally:
        release.join()
        holder.close()
    assert "locked by another process (another segqc run?); waiting up to 120 s" in caplog.text


def test_recording_commits_only_when_its_block_succeeds(tmp_path: Path) -> None:
    with RunHistory(tmp_path / "history.sqlite") as history:
        with pytest.raises(RuntimeError), history.recording(make_run("2024-05-01T02:00:00")):
            raise RuntimeError("the report could not be published")
        assert history.runs() == []
        with history.recording(make_run("2024-05-02T02:00:00")) as run_id:
            assert run_id >= 1
        assert len(history.runs()) == 1
