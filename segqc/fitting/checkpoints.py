"""Resumable training checkpoints: where they live beside a model, and their clean-up.

A run writing the model ``OUT`` keeps its checkpoint in ``OUT.checkpoints/last.pt``
(:data:`CHECKPOINT_NAME`); it is removed after success and after bad input found by a
run that created it, and kept after an interruption for ``--resume``. Nothing else in
that folder is ever touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from segqc.errors import OutputError, SegQCError

CHECKPOINT_NAME = "last.pt"


def checkpoint_folder(out: str | Path) -> Path:
    """The folder of resumable checkpoints beside a model bundle ``out`` (``OUT.checkpoints``).

    Raises:
        OutputError: The folder exists and holds anything but segqc's checkpoint,
            so using (and later removing) it could lose a user's files.
    """
    out = Path(out)
    folder = out.with_name(f"{out.name}.checkpoints")
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise OutputError(f"--out {out}: {folder} (where checkpoints go) exists and is not a folder; move it away")
    if folder.is_dir():
        foreign = sorted(p.name for p in folder.iterdir() if p.name != CHECKPOINT_NAME)
        if foreign:
            raise OutputError(f"--out {out}: {folder} (where checkpoints go) holds {foreign[0]!r}, which segqc did "
                              "not write; move it away or choose another --out")
    return folder


def discard_checkpoints(folder: str | Path) -> None:
    """Remove segqc's checkpoint from ``folder``, and the folder once it is empty (nothing else is touched)."""
    folder = Path(folder)
    (folder / CHECKPOINT_NAME).unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


@contextmanager
def checkpoints_for(out: Path, is_writer: bool = True) -> Iterator[Path]:
    """The checkpoint folder beside a model ``out``: removed after success, and after bad input if this run made it.

    An interrupted run (Ctrl-C, a crash) keeps its checkpoint for ``--resume``.
    """
    folder = checkpoint_folder(out)
    existed = folder.exists()
    try:
        yield folder
    except SegQCError:
        if is_writer and not existed:
            discard_checkpoints(folder)
        raise
    if is_writer:
        discard_checkpoints(folder)
