"""Atomic writes: a file or directory appears whole or not at all.

A failed write (an exception, Ctrl-C, SIGTERM handled by the CLI) removes its
temporary file or staging directory and leaves the earlier version in place.
A write that fails because of its environment (a full disk, a quota, a
read-only file system, a file-size limit) raises an :class:`OutputError` naming
the target and what to do (:func:`segqc.errors.write_fault`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType

from segqc.errors import write_fault

logger = logging.getLogger(__name__)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_HINT_CHARACTERS = 64
"""Characters of the target's name kept in the names of its temporary file, staging and set-aside folders (enough
to tell whose they are; a longer hint would make a valid long name too long for the file system)."""


def _hidden_name(target: Path, tag: str) -> str:
    """``.NAME.TAG`` beside ``target``, with ``NAME`` cut to :data:`_HINT_CHARACTERS` characters."""
    return f".{target.name[:_HINT_CHARACTERS]}.{tag}"


def _publish_mode(path: Path, directory: bool) -> None:
    """Give a temporary file / directory the mode a normally created one would get (mkstemp uses 0600)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_current_umask())


_OUTERMOST: ContextVar[bool] = ContextVar("segqc_writing", default=True)


@contextmanager
def writing(target: str | Path) -> Iterator[None]:
    """Report a write that fails for lack of space, quota, a read-only disk or a size limit as bad input.

    Writes nest (a report's ``report.html`` is written inside its staging
    folder); the outermost one names the output, the path the user gave.

    Raises:
        OutputError: Naming ``target`` and what to do, in place of the ``OSError``
            (or torch / safetensors error wrapping one).
    """
    if not _OUTERMOST.get():
        yield
        return
    token = _OUTERMOST.set(False)
    try:
        yield
    except Exception as err:  # translated when it is an environment fault, else re-raised
        fault = write_fault(err, target)
        if fault is None:
            raise
        raise fault from err
    finally:
        _OUTERMOST.reset(token)


@contextmanager
def _temporary_beside(target: Path) -> Iterator[Path]:
    """The path of a new, empty temporary file beside ``target`` (environment faults reported as for ``target``);
    removed when the block ends unless it was renamed."""
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=_hidden_name(target, ""), suffix=".tmp", dir=target.parent)
        os.close(handle)
        temporary = Path(name)
        try:
            yield temporary
        finally:
            temporary.unlink(missing_ok=True)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    with _temporary_beside(target) as temporary:
        yield temporary
        _publish_mode(temporary, directory=False)
        os.replace(temporary, target)


def create_whole(path: str | Path, write: Callable[[Path], None]) -> bool:
    """Create the file ``path`` whole unless it exists; never write over an existing file.

    ``write`` fills a temporary file beside ``path``, which is then linked into
    place only if ``path`` still does not exist (a concurrent process may have
    created it meanwhile: its file is kept).

    Returns:
        Whether this call created ``path``.
    """
    target = Path(path)
    with _temporary_beside(target) as temporary:
        temporary.unlink()  # ``write`` creates it (SQLite, say, wants a missing or valid file)
        write(temporary)
        _publish_mode(temporary, directory=False)
        try:
            os.link(temporary, target)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: rename, unless another process got there first
            if target.exists():
                return False
            os.replace(temporary, target)
        return True


class PublishGuard(AbstractContextManager):
    """Work that must succeed or fail together with publishing a directory.

    Context managers added with :meth:`add` (while the directory is being
    written) are entered just before the directory is swapped into place and
    exited right after; when one of them fails, on entering or on leaving (a
    database commit, say), the swap is undone and the earlier directory stays.
    """

    def __init__(self) -> None:
        self._pending: list[AbstractContextManager] = []
        self._stack = ExitStack()

    def add(self, context: AbstractContextManager) -> None:
        """Enter ``context`` when the directory is published (and exit it once it is in place)."""
        self._pending.append(context)

    def __enter__(self) -> None:
        with ExitStack() as stack:
            for context in self._pending:
                stack.enter_context(context)
            self._stack = stack.pop_all()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> bool | None:
        return self._stack.__exit__(kind, error, traceback)


def replace_directory(staging: Path, target: Path, guard: AbstractContextManager | None = None,
                      discard: Callable[[Path], None] = shutil.rmtree) -> None:
    """Move a fully written ``staging`` directory to ``target``, replacing it.

    The old directory is renamed aside first and discarded only after the new
    one is in place, so ``target`` is always either the old or the new version.

    Args:
        staging: The new directory.
        target: Where it goes.
        guard: Entered before the swap and exited after it; if it fails, the
            swap is undone (``staging`` and the old ``target`` are restored).
        discard: Removes the old directory once it was set aside.
    """
    backup = None
    swapped = False
    try:
        with guard or nullcontext():
            if target.exists():
                if not target.is_dir():
                    raise NotADirectoryError(f"{target}: exists and is not a directory")
                backup = target.with_name(_hidden_name(target, f"old-{os.getpid()}"))
                os.replace(target, backup)
            os.replace(staging, target)
            swapped = True
    except BaseException:
        if swapped:
            os.replace(target, staging)
        if backup is not None:
            os.replace(backup, target)
        raise
    if backup is not None:
        discard(backup)


@contextmanager
def rebuilt_in_place(path: str | Path, discard: Callable[[Path], None]) -> Iterator[Path]:
    """Build a new version of the directory ``path`` where it will stay, all or nothing.

    For outputs whose files record their own paths (a demo's report names its
    images), so they cannot be staged elsewhere: the earlier version is set
    aside first, and restored when the build fails or is interrupted (what the
    build wrote is removed with ``discard``); it is discarded once the build
    succeeds.

    Args:
        path: The directory.
        discard: Removes a version segqc wrote (only what it wrote).
    """
    target = Path(path)
    backup = None
    with writing(target):
        if target.exists():
            backup = target.with_name(_hidden_name(target, f"old-{os.getpid()}"))
            os.replace(target, backup)
    try:
        yield target
    except BaseException:
        if target.exists():
            discard(target)
        if backup is not None:
            if target.exists():
                logger.warning("%s: the earlier version is kept at %s (the interrupted build left files there "
                               "that segqc did not write)", target, backup)
            else:
                os.replace(backup, target)
        raise
    if backup is not None:
        discard(backup)


@contextmanager
def atomic_directory(path: str | Path, finish: Callable[[Path], None] | None = None,
                     guard: AbstractContextManager | None = None,
                     discard: Callable[[Path], None] = shutil.rmtree) -> Iterator[Path]:
    """Yield a staging directory beside ``path``; move it to ``path`` on success.

    Args:
        path: The directory to write.
        finish: Called with the staging directory once it is written, before it is published.
        guard: See :func:`replace_directory`.
        discard: Removes the earlier directory once the new one is in place.
    """
    target = Path(path)
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(f"{target}: exists and is not a directory")
        staging = Path(tempfile.mkdtemp(prefix=_hidden_name(target, "tmp-"), dir=target.parent))
        try:
            yield staging
            if finish is not None:
                finish(staging)
            _publish_mode(staging, directory=True)
            replace_directory(staging, target, guard, discard)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
