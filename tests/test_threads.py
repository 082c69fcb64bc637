"""Threads: a given cap wins; otherwise the usable cores are shared among the segqc jobs running."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from segqc import threads
from segqc.errors import ConfigError


@pytest.fixture
def shared(monkeypatch, tmp_path):
    """No cap given, a private jobs folder, 4 usable cores; torch's thread count restored after."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_jobs_folder", lambda: tmp_path / "jobs")
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    before = torch.get_num_threads()
    yield tmp_path / "jobs"
    torch.set_num_threads(before)


def test_a_lone_job_takes_every_usable_core(shared) -> None:
    choice = threads.limit_threads(None)
    assert (choice.threads, choice.jobs, choice.source) == (4, 1, "shared") and torch.get_num_threads() == 4
    assert "4 core(s) shared by 1 segqc job(s)" in choice.describe()


def test_jobs_running_at_the_same_time_share_the_cores(shared) -> None:
    shared.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (shared / str(other.pid)).touch()
        (shared / "999999999").touch()  # a job that ended without removing its file
        choice = threads.limit_threads(None)
        assert (choice.threads, choice.jobs) == (2, 2)
        assert not (shared / "999999999").exists() and (shared / str(os.getpid())).exists()
    finally:
        other.kill()


def test_a_given_cap_wins_and_bad_ones_are_refused(shared, monkeypatch) -> None:
    assert threads.limit_threads(3).source == "--threads" and torch.get_num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.limit_threads(None).threads == 1
    with pytest.raises(ConfigError, match="--threads 0"):
        threads.limit_threads(0)


def test_usable_cores_follow_the_affinity_and_a_cgroup_quota(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(threads, "_CGROUP_QUOTA", quota)
    assert threads.usable_cores() == 4  # no quota file
    quota.write_text("150000 100000\n")
    assert threads.usable_cores() == 2
    quota.write_text("max 100000\n")
    assert threads.usable_cores() == 4
