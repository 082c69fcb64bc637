"""SIGTERM stops a command as Ctrl-C does, so its cleanup runs."""

from __future__ import annotations

import os
import signal

import pytest

from segqc.signals import Terminated, terminate_as_interrupt


def test_sigterm_raises_terminated_inside_the_block_only() -> None:
    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(Terminated), terminate_as_interrupt():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10**6):  # the handler runs between bytecodes
                pass
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # a second one is ignored: the cleanup runs to its end
            for _ in range(10**5):
                pass
            cleaned.append(True)
    assert cleaned == [True] and signal.getsignal(signal.SIGTERM) == before
    assert issubclass(Terminated, KeyboardInterrupt)
