"""How many CPU threads segqc computes with.

On a machine shared with other jobs, every process using all cores
oversubscribes them: three training processes with two threads each on two
cores ran one step every 4-18 s instead of 3 steps/s. ``--threads N`` (or
``OMP_NUM_THREADS``, which PyTorch and the BLAS libraries read at start-up)
caps PyTorch's intra-op threads and the BLAS / OpenMP pools of NumPy and
scikit-learn.
"""

from __future__ import annotations

import os

from segqc.errors import ConfigError

THREADS_ENV = "OMP_NUM_THREADS"
MAX_THREADS = 1024
"""More threads than this is a typo (OpenMP would try to allocate a pool for each and abort)."""


def limit_threads(threads: int | None) -> int | None:
    """Compute with at most ``threads`` CPU threads (``None``: ``OMP_NUM_THREADS`` when set, else all cores).

    Args:
        threads: The cap, >= 1, or ``None``.

    Returns:
        The cap now in force, or ``None`` when none was asked for.

    Raises:
        ConfigError: ``threads`` or ``OMP_NUM_THREADS`` is not a whole number in 1..:data:`MAX_THREADS`.
    """
    if threads is None:
        text = os.environ.get(THREADS_ENV, "").strip()
        if not text:
            return None
        if not text.isdigit() or not 1 <= int(text) <= MAX_THREADS:
            raise ConfigError(f"{THREADS_ENV}={text!r}: expected a whole number of threads in 1..{MAX_THREADS}")
        threads = int(text)
    if not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"--threads {threads}: expected a number of threads in 1..{MAX_THREADS} (this machine has "
                          f"{os.cpu_count()} cores)")
    import torch  # imported here so that `segqc --help` stays quick
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)
    return threads
