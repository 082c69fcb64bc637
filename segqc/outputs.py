"""Where segqc may write: output paths are checked before any work starts.

segqc never deletes or overwrites what it did not write. Every folder it
writes (a report, a model bundle, a folder of segmenter masks, a demo folder)
carries a small marker file, :data:`MARKER`, that names its kind. An existing
folder at an output path is replaced (or, for masks, written into) only when it
is empty or carries the marker of the same kind and holds nothing but what
segqc writes there; anything else is refused with an :class:`OutputError` and
left untouched. Folders written by segqc before markers existed are recognised
by their metadata (``segqc.json`` of a bundle, ``summary.json`` of a report).

An output may also not be, lie inside, or contain one of the run's inputs, and
its parent must be a writable folder. All of this is checked before the first
file is read, so a refused run costs nothing and leaves nothing behind.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Iterable
from pathlib import Path

from segqc.errors import OutputError

MARKER = ".segqc-output"


class OutputKind(str, enum.Enum):
    """What an output folder holds."""

    REPORT = "report"
    MODEL = "model"
    MASKS = "masks"
    DEMO = "demo"


# Top-level entries segqc writes in each kind of folder (None: any file segqc names, e.g. masks).
_ENTRIES: dict[OutputKind, frozenset[str] | None] = {
    OutputKind.REPORT: frozenset({"scores.csv", "summary.json", "report.html", "heatmaps", "gallery"}),
    OutputKind.MODEL: frozenset({"segqc.json", "weights.safetensors", "arrays.npz"}),
    OutputKind.MASKS: None,
    OutputKind.DEMO: frozenset({"data", "model", "report"}),
}
# Metadata that identifies folders written before markers existed: file -> key it must hold.
_LEGACY = {OutputKind.REPORT: ("summary.json", "segqc_version"), OutputKind.MODEL: ("segqc.json", "format_version")}
# Columns a tabular scores file written by segqc always has.
SCORES_COLUMNS = ("score", "rank", "verdict", "unseen_categories")


def write_marker(folder: Path, kind: OutputKind) -> None:
    """Mark ``folder`` as a segqc output of ``kind`` (call inside the staging folder, before it is published)."""
    from segqc import __version__

    (Path(folder) / MARKER).write_text(json.dumps({"kind": kind.value, "segqc_version": __version__}) + "\n",
                                       encoding="utf-8")


def _marker_kind(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / MARKER).read_text(encoding="utf-8")).get("kind"))
    except (OSError, ValueError, AttributeError):
        return None


def _legacy_kind(folder: Path, kind: OutputKind) -> bool:
    if kind not in _LEGACY:
        return False
    name, key = _LEGACY[kind]
    try:
        return key in json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def _resolved(path: Path, option: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: symbolic link loop (Python < 3.13)
        raise OutputError(f"{option} {path}: cannot resolve the path ({err})") from None


def _check_inputs(path: Path, inputs: Iterable[Path | None], option: str) -> None:
    """Refuse an output that is, lies inside or contains an input."""
    target = _resolved(path, option)
    for given in inputs:
        if given is None:
            continue
        source = _resolved(Path(given), option)
        if target == source:
            relation = "is"
        elif source in target.parents:
            relation = "lies inside"
        elif target in source.parents:
            relation = "contains"
        else:
            continue
        raise OutputError(f"{option} {path}: {relation} the input {given}; write the output outside the inputs")


def _check_parent(path: Path, option: str) -> None:
    """The nearest existing ancestor must be a writable folder (the output is created beside / in it)."""
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{option} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: cannot write in {ancestor} (permission denied)")


def check_output_dir(path: str | Path, kind: OutputKind, inputs: Iterable[Path | None] = (),
                     option: str = "--out") -> Path:
    """Check that segqc may write the folder ``path`` (create, or replace its own earlier output).

    Args:
        path: The output folder.
        kind: What segqc writes there.
        inputs: Files and folders the run reads; the output may not be,
            lie inside or contain any of them.
        option: The option that named ``path``, for the message.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: ``path`` is a file or a symbolic link, a folder segqc did
            not write (or holding files it did not write), overlaps an input,
            or its parent is not a writable folder.
    """
    path = Path(path)
    _check_inputs(path, inputs, option)
    if path.is_symlink():
        raise OutputError(f"{option} {path}: is a symbolic link; give the folder itself")
    _check_parent(path, option)
    if not path.exists():
        return path
    if not path.is_dir():
        raise OutputError(f"{option} {path}: exists and is not a folder; give a folder path for the {kind.value}")
    entries = sorted(entry.name for entry in path.iterdir())
    if not entries:
        return path
    if _marker_kind(path) != kind.value and not _legacy_kind(path, kind):
        raise OutputError(f"{option} {path}: folder exists and was not written by segqc as a {kind.value}; "
                          f"segqc replaces only its own output: choose a new or empty folder")
    allowed = _ENTRIES[kind]
    foreign = [name for name in entries if name != MARKER and allowed is not None and name not in allowed]
    if foreign:
        raise OutputError(f"{option} {path}: holds {foreign[0]!r}, which segqc did not write; "
                          f"move it away or choose another folder")
    return path


def check_output_file(path: str | Path, inputs: Iterable[Path | None] = (), option: str = "--out") -> Path:
    """Check that segqc may write the scores file ``path`` (create, or replace a scores file it wrote).

    Args:
        path: The output file (CSV).
        inputs: Files the run reads; the output may not be one of them or contain them.
        option: The option that named ``path``, for the message.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: ``path`` is a folder, an input, a file segqc did not
            write, or its parent is not a writable folder.
    """
    path = Path(path)
    _check_inputs(path, inputs, option)
    _check_parent(path, option)
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a folder; give the path of the CSV file to write")
    if path.exists() or path.is_symlink():
        try:
            with path.open(encoding="utf-8") as handle:
                header = handle.readline().strip().split(",")
        except (OSError, UnicodeDecodeError):
            header = []
        if not set(SCORES_COLUMNS) <= set(header):
            raise OutputError(f"{option} {path}: file exists and is not a scores file written by segqc; "
                              f"choose a new file name")
    return path
