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


def limit_threads(threads: int | None) -> int | None:
    """Compute with at most ``threads`` CPU threads (``None``: ``OMP_NUM_THREADS`` when set, else all cores).

    Args:
        threads: The cap, >= 1, or ``None``.

    Returns:
        The cap now in force, or ``None`` when none was asked for.

    Raises:
        ConfigError: ``threads`` < 1, or ``OMP_NUM_THREADS`` is not a positive whole number.
    """
    if threads is None:
        text = os.environ.get(THREADS_ENV, "").strip()
        if not text:
            return None
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"{THREADS_ENV}={text!r}: expected a positive whole number of threads")
        threads = int(text)
    if threads < 1:
        raise ConfigError(f"--threads {threads}: expected at least 1")
    import torch  # imported here so that `segqc --help` stays quick
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)
    return threads
