"""Atomic writes: a file or directory appears whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_mode(path: Path, directory: bool) -> None:
    """Give a temporary file / directory the mode a normally created one would get (mkstemp uses 0600)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_current_umask())


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        _publish_mode(temporary, directory=False)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def replace_directory(staging: Path, target: Path) -> None:
    """Move a fully written ``staging`` directory to ``target``, replacing it.

    The old directory is renamed aside first and removed only after the new one
    is in place, so ``target`` is always either the old or the new version.
    """
    backup = None
    if target.exists():
        if not target.is_dir():
            raise NotADirectoryError(f"{target}: exists and is not a directory")
        backup = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, backup)
    os.replace(staging, target)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a staging directory beside ``path``; move it to ``path`` on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target}: exists and is not a directory")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        _publish_mode(staging, directory=True)
        replace_directory(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
