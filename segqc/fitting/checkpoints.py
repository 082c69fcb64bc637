"""Resumable training checkpoints: where they live beside a model, and their clean-up.

A run writing the model ``OUT`` keeps its checkpoint in ``OUT.checkpoints/last.pt``
(:data:`CHECKPOINT_NAME`). That folder is a segqc output like any other
(:mod:`segqc.outputs`): its marker records the model's mode and the digest of
every checkpoint written there, so a ``last.pt`` segqc did not write (another
tool's checkpoint, a file the user put there) or one of a model of the other
mode blocks the run instead of being overwritten or deleted. The checkpoint is
removed after success and after bad input found by a run that created the
folder, and kept after an interruption for ``--resume``. Nothing else in that
folder is ever touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from segqc.errors import InputError, OutputError, SegQCError
from segqc.manifests import MARKER, Manifest, OutputKind, foreign_entry, manifest_of, remove_owned, sha256_file
from segqc.torchfile import load_torch_file

CHECKPOINT_NAME = "last.pt"
# What a checkpoint of a segqc without checkpoint markers holds (``snapshots`` came later).
_LEGACY_KEYS = frozenset({"model", "ema", "optimizer", "scheduler", "generator", "step", "best_val", "best_step",
                          "best_state", "history"})


def checkpoint_folder(out: str | Path, mode: str | None = None) -> Path:
    """The folder of resumable checkpoints beside a model bundle ``out`` (``OUT.checkpoints``), checked.

    Args:
        out: The model bundle's folder (its name checked by :func:`segqc.outputs.check_output_dir`).
        mode: ``image`` or ``tabular``: a checkpoint of a model of the other mode is not touched.

    Raises:
        OutputError: The folder exists and holds anything segqc did not write
            there as checkpoints (a ``last.pt`` included), or a checkpoint of the
            other mode, so using (and later removing) it could lose a user's files.
    """
    return _checked(out, mode)[0]


def _checked(out: str | Path, mode: str | None) -> tuple[Path, Manifest | None]:
    """:func:`checkpoint_folder` and what segqc wrote there (``None``: the folder is missing or empty)."""
    given = Path(out)
    folder = given.with_name(f"{given.name}.checkpoints")
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise OutputError(f"--out {given}: {folder} (where checkpoints go) exists and is not a folder; move it away")
    if not folder.is_dir() or not any(folder.iterdir()):
        return folder, None
    manifest = _manifest(folder)
    if manifest is None:
        entry = min(p.name for p in folder.iterdir())
        raise OutputError(f"--out {given}: {folder} (where checkpoints go) holds {entry!r}, which segqc did not "
                          "write; move it away or choose another --out")
    if mode is not None and manifest.mode not in (None, mode):
        command = "tabular fit" if manifest.mode == "tabular" else "train"
        raise OutputError(f"--out {given}: {folder} holds the resumable checkpoint of a model of mode "
                          f"{manifest.mode!r} (`segqc {command} --resume` continues it); segqc does not replace it "
                          f"with one of mode {mode!r}: choose another --out")
    foreign = foreign_entry(folder, manifest)
    if foreign is not None:
        raise OutputError(f"--out {given}: {folder} (where checkpoints go) holds {foreign[0]!r}, {foreign[1]}; "
                          "move it away or choose another --out")
    return folder, manifest


def _manifest(folder: Path) -> Manifest | None:
    """What segqc wrote in a checkpoint folder: its marker's record, or a lone ``last.pt`` that is a checkpoint
    of a segqc without markers (its content, read safely, has exactly the trainer's keys); else ``None``."""
    manifest = manifest_of(folder, OutputKind.CHECKPOINTS)
    if manifest is not None:
        return manifest
    path = folder / CHECKPOINT_NAME
    if [p.name for p in folder.iterdir()] != [CHECKPOINT_NAME] or path.is_symlink() or not path.is_file():
        return None
    try:
        payload = load_torch_file(path, "a segqc training checkpoint")
    except InputError:
        return None
    if not isinstance(payload, dict) or not _LEGACY_KEYS <= set(payload) <= _LEGACY_KEYS | {"snapshots"}:
        return None
    return Manifest(OutputKind.CHECKPOINTS.value, files={CHECKPOINT_NAME: [sha256_file(path)]})


def discard_checkpoints(folder: str | Path) -> None:
    """Remove what segqc wrote in ``folder`` (its checkpoint and marker), and the folder once it is empty."""
    folder = Path(folder)
    if folder.is_dir() and not folder.is_symlink():
        remove_owned(folder, OutputKind.CHECKPOINTS)


@contextmanager
def checkpoints_for(out: Path, mode: str, is_writer: bool = True) -> Iterator[Path]:
    """The checkpoint folder beside a model ``out`` (checked, and marked as segqc's by the writer).

    It is removed after success, and after bad input or an interruption before
    any checkpoint was written if this run made it. An interrupted run (Ctrl-C,
    a crash) keeps its checkpoint for ``--resume``.

    Args:
        out: The model bundle's folder.
        mode: ``image`` or ``tabular``.
        is_writer: Whether this process writes (rank 0 of a distributed run).
    """
    folder, manifest = _checked(out, mode)
    existed = folder.exists()
    if is_writer:
        folder.mkdir(parents=True, exist_ok=True)
        Manifest(OutputKind.CHECKPOINTS.value, mode, manifest.files if manifest else {}).write(folder / MARKER)
    try:
        yield folder
    except SegQCError:
        if is_writer and not existed:
            discard_checkpoints(folder)
        raise
    except BaseException:
        if is_writer and not existed and not (folder / CHECKPOINT_NAME).exists():
            discard_checkpoints(folder)
        raise
    if is_writer:
        discard_checkpoints(folder)
