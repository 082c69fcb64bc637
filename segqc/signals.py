"""SIGTERM handled like Ctrl-C: the run stops where it is and cleans up after itself.

Job schedulers (cron wrappers, Slurm, Kubernetes, ``timeout``) stop a process
with SIGTERM. Python's default would end the process at once, leaving hidden
staging folders and temporary files behind. Inside :func:`terminate_as_interrupt`
a SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) in the main
thread instead, so every ``finally`` and context manager runs exactly as for
Ctrl-C: temporary outputs are removed, earlier outputs stay, and a training
run keeps its checkpoint for ``--resume``. Further SIGTERMs during that
cleanup are ignored (SIGKILL still ends the process).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

TERMINATED_EXIT_CODE = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        if not received:  # the first one stops the run; later ones would interrupt its cleanup
            received = True
            raise Terminated(f"received signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
