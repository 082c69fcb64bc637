"""How many CPU threads segqc computes with.

On a machine shared with other jobs, every process using all cores
oversubscribes them: three training processes with two threads each on two
cores ran one step every 4-18 s instead of 3 steps/s, and two torch processes
with two threads each on two cores slowed each other 5-50 times. So, unless
told (``--threads N`` or ``OMP_NUM_THREADS``), segqc shares the cores it may
use (the CPU affinity of the process and a cgroup CPU quota, as in a container
or a batch job) among the segqc jobs running at the same time: each computing
command registers itself (a pid file in a per-user folder of the temporary
directory) and takes ``cores // jobs`` threads, at least one. The choice caps
PyTorch's intra-op threads and the BLAS / OpenMP pools of NumPy and
scikit-learn.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from segqc.errors import ConfigError

logger = logging.getLogger(__name__)

THREADS_ENV = "OMP_NUM_THREADS"
MAX_THREADS = 1024
"""More threads than this is a typo (OpenMP would try to allocate a pool for each and abort)."""
_CGROUP_QUOTA = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class ThreadChoice:
    """The threads a process computes with, and why.

    Attributes:
        threads: The cap in force.
        cores: Cores this process may use.
        jobs: segqc jobs sharing them (this one included); 0 when the cap was given.
        source: ``--threads``, ``OMP_NUM_THREADS`` or ``shared``.
    """

    threads: int
    cores: int
    jobs: int
    source: str

    def describe(self) -> str:
        """One line for the terminal."""
        if self.source != "shared":
            return f"computing with {self.threads} thread(s) ({self.source})"
        return (f"computing with {self.threads} thread(s): {self.cores} core(s) shared by {self.jobs} segqc job(s) "
                "(--threads N to choose)")


def usable_cores() -> int:
    """Cores this process may use: its CPU affinity, bounded by a cgroup v2 CPU quota when there is one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = _CGROUP_QUOTA.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    return max(1, cores)


def _jobs_folder() -> Path:
    return Path(tempfile.gettempdir()) / f"segqc-jobs-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_jobs(register: bool = True) -> int:
    """segqc jobs computing now (this one included); with ``register``, this process joins them until it exits.

    Pid files of jobs that ended without removing theirs are removed.
    """
    folder = _jobs_folder()
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        own = folder / str(os.getpid())
        if register and not own.exists():
            own.touch()
            atexit.register(own.unlink, missing_ok=True)
        jobs = 0
        for entry in folder.iterdir():
            if entry.name.isdigit() and _alive(int(entry.name)):
                jobs += 1
            elif entry.name.isdigit():
                entry.unlink(missing_ok=True)
        return max(jobs, 1)
    except OSError:  # an unwritable temporary folder: assume no other job
        return 1


def _explicit(threads: int | None) -> tuple[int, str] | None:
    """The cap asked for by ``--threads`` or ``OMP_NUM_THREADS``, or ``None``."""
    if threads is None:
        text = os.environ.get(THREADS_ENV, "").strip()
        if not text:
            return None
        if not text.isdigit() or not 1 <= int(text) <= MAX_THREADS:
            raise ConfigError(f"{THREADS_ENV}={text!r}: expected a whole number of threads in 1..{MAX_THREADS}")
        return int(text), THREADS_ENV
    if not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"--threads {threads}: expected a number of threads in 1..{MAX_THREADS} (this machine has "
                          f"{os.cpu_count()} cores)")
    return threads, "--threads"


def limit_threads(threads: int | None) -> ThreadChoice:
    """Compute with ``threads`` CPU threads; ``None``: ``OMP_NUM_THREADS`` when set, else a fair share of the cores.

    Args:
        threads: The cap, >= 1, or ``None``.

    Returns:
        The cap now in force and why.

    Raises:
        ConfigError: ``threads`` or ``OMP_NUM_THREADS`` is not a whole number in 1..:data:`MAX_THREADS`.
    """
    asked = _explicit(threads)
    cores = usable_cores()
    if asked is not None:
        choice = ThreadChoice(asked[0], cores, 0, asked[1])
    else:
        jobs = running_jobs()
        choice = ThreadChoice(max(1, cores // jobs), cores, jobs, "shared")
    import torch  # imported here so that `segqc --help` stays quick
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(choice.threads)
    threadpool_limits(choice.threads)
    logger.info(choice.describe())
    return choice
