"""Where segqc may write: one ownership rule for every output, checked before any work starts.

segqc never deletes or overwrites what it did not write. It records what it
wrote, and replaces or deletes only that:

* **Folders** (a report, a model bundle, a folder of segmenter masks, a demo
  and its data) carry a marker file, :data:`MARKER`, holding their kind (and a
  model's mode, ``image`` or ``tabular``) and a *manifest*: the SHA-256 of
  every file and the name of every sub-folder segqc wrote there, at any depth.
  An existing folder at an output path is replaced only when it is empty, or
  a segqc output of the same kind (and mode) every entry of which is in its
  manifest with unchanged content. Anything else -- a file or folder of the
  user's at any depth, a file changed since segqc wrote it, a symbolic link,
  a report where a model should go, a tabular model where an image model
  should go -- blocks the write with an :class:`OutputError` naming it.
  Replacing is atomic (written beside, then renamed), and the old folder is
  then removed through its manifest: a file that appeared meanwhile is kept.
* **Single files** (``tabular score --out scores.csv``) get a hidden sidecar,
  ``.scores.csv.segqc-output``, holding the file's SHA-256: an existing file
  is replaced only when its content is what segqc wrote. A pipe or device
  (``/dev/stdout``) is written to as it is, and never read.

Outputs written before manifests existed (a marker without a manifest, only
metadata, no sidecar) are replaced only when they hold exactly segqc's layout
(:func:`_legacy_manifest`): a report's top-level files and the heat maps and
gallery panels its ``scores.csv`` lists; a model's three files; a masks folder
of mask files; a demo's phantom files; a scores CSV whose header is exactly
the columns segqc writes.

An output may also not be, lie inside, or contain one of the run's inputs, and
its parent must be a writable folder.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from segqc.atomic import atomic_directory, atomic_file
from segqc.errors import OutputError
from segqc.manifests import (
    MARKER,
    Manifest,
    OutputKind,
    foreign_entry,
    manifest_of,
    model_mode,
    read_marker,
    recorded_manifest,
    remove_owned,
    seal,
    sha256_file,
)

logger = logging.getLogger(__name__)

# Columns of a tabular scores file after the id column: older segqc wrote the first four and the norms.
_SCORES_HEAD = ("score", "rank", "verdict", "unseen_categories")
_SCORES_CULPRIT = ("top_column", "top_share")
_NORM = re.compile(r"norm_(\d+)")


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


# Bytes segqc adds to an output's name for the files beside it: ``.NAME.segqc-output`` (a single file's
# record), ``NAME.checkpoints`` (a model's), ``NAME.predictions`` (a report's segmenter masks).
_COMPANION_BYTES = len("." + MARKER)  # the longest: the record's leading dot and suffix


def _nearest_ancestor(path: Path) -> Path:
    """The nearest existing folder (or file) above ``path``, where the output will be created."""
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    return ancestor


def _name_max(path: Path) -> int:
    """The longest file name (bytes) the file system of ``path``'s nearest existing ancestor allows."""
    try:
        return os.pathconf(_nearest_ancestor(path), "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_output_name(path: Path, option: str) -> None:
    """An output's name must name it (not ``.`` or ``..``) and leave room for the names segqc puts beside it.

    Raises:
        OutputError: Otherwise.
    """
    if Path(path).name in ("", ".", ".."):
        raise OutputError(f"{option} {path}: name the output itself (e.g. {option} results/run1): segqc writes it "
                          "beside its final place and renames it there, which a path ending in '.' or '..' cannot "
                          "be")
    size, most = len(os.fsencode(Path(path).name)), _name_max(Path(path))
    if size + _COMPANION_BYTES > most:
        raise OutputError(f"{option} {path}: the name is {size} bytes long; the file system allows {most} and segqc "
                          f"needs {_COMPANION_BYTES} more for the files it keeps beside an output: use a shorter name")


def _check_parent(path: Path, option: str) -> None:
    """The nearest existing ancestor must be a writable folder (the output is created beside / in it)."""
    ancestor = _nearest_ancestor(path)
    if not ancestor.is_dir():
        raise OutputError(f"{option} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: cannot write in {ancestor} (permission denied)")


def check_output_dir(path: str | Path, kind: OutputKind, inputs: Iterable[Path | None] = (),
                     option: str = "--out", mode: str | None = None) -> Path:
    """Check that segqc may write the folder ``path`` (create it, or replace its own earlier output).

    Args:
        path: The output folder.
        kind: What segqc writes there.
        inputs: Files and folders the run reads; the output may not be,
            lie inside or contain any of them.
        option: The option that named ``path``, for the message.
        mode: For models, ``image`` or ``tabular``: a model of the other mode is not replaced.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: ``path`` is a file or a symbolic link, a folder segqc did
            not write as this kind (and mode), holds at any depth an entry segqc
            did not write or a file changed since, overlaps an input, or its
            parent is not a writable folder.
    """
    path = Path(path)
    check_output_name(path, option)
    _check_inputs(path, inputs, option)
    if path.is_symlink():
        raise OutputError(f"{option} {path}: is a symbolic link; give the folder itself")
    _check_parent(path, option)
    if not path.exists():
        return path
    if not path.is_dir():
        raise OutputError(f"{option} {path}: exists and is not a folder; give a folder path for the {kind.value}")
    if not any(path.iterdir()):
        return path
    manifest = manifest_of(path, kind)
    if manifest is None:
        raise OutputError(f"{option} {path}: folder exists and was not written by segqc as a {kind.value}; "
                          f"segqc replaces only its own output: choose a new or empty folder")
    existing = model_mode(path, manifest) if kind == OutputKind.MODEL else None
    if mode is not None and existing is not None and existing != mode:
        raise OutputError(f"{option} {path}: holds a model of mode {existing!r} and this command writes one of mode "
                          f"{mode!r}; segqc does not replace a model of the other mode: choose another folder")
    foreign = foreign_entry(path, manifest)
    if foreign is not None:
        relative, why = foreign
        raise OutputError(f"{option} {path}: holds {relative!r}, {why}; segqc replaces only what it wrote: "
                          f"move it away or choose another folder")
    return path


def check_output_member(folder: str | Path, relative: str, kind: OutputKind, option: str) -> Path:
    """Check that segqc may replace one file of its output ``folder`` (e.g. a report's ``report.html``).

    The rest of the folder is not touched, so only that file must be segqc's
    (in the manifest and unchanged) or absent.

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: ``folder`` is not a segqc output of ``kind``, or the file
            is not what segqc wrote there.
    """
    folder = Path(folder)
    if not folder.exists():
        raise OutputError(f"{option} {folder}: folder not found; give a {kind.value} folder segqc wrote")
    manifest = manifest_of(folder, kind) if folder.is_dir() and not folder.is_symlink() else None
    if manifest is None:
        raise OutputError(f"{option} {folder}: folder exists and was not written by segqc as a {kind.value}; "
                          f"give a {kind.value} folder segqc wrote")
    path = folder / relative
    if path.exists() or path.is_symlink():
        digests = manifest.files.get(relative, [])
        if path.is_symlink() or not path.is_file() or (digests is not None and sha256_file(path) not in digests):
            raise OutputError(f"{option} {folder}: holds {relative!r}, which segqc did not write (or which changed "
                              f"since); segqc replaces only what it wrote: move it away")
    return folder


@contextmanager
def owned_directory(path: str | Path, kind: OutputKind, mode: str | None = None,
                    guard: AbstractContextManager | None = None,
                    outputs: dict[str, OutputKind] | None = None) -> Iterator[Path]:
    """Write a segqc output folder atomically: yield a staging folder, seal its manifest, publish it.

    The earlier output at ``path`` (checked with :func:`check_output_dir`
    before the work started) is removed through its manifest once the new one
    is in place.

    Args:
        path: The output folder.
        kind: Its kind.
        mode: A model's mode.
        guard: Work that succeeds or fails with publishing (see :class:`segqc.atomic.PublishGuard`).
        outputs: Nested outputs, see :func:`seal`.
    """
    with atomic_directory(path, finish=lambda staging: seal(staging, kind, mode, outputs), guard=guard,
                          discard=lambda old: remove_owned(old, kind)) as staging:
        yield staging


def _is_stream(path: Path) -> bool:
    """Whether ``path`` is a pipe, a terminal or another device (written as it is, never read)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def sidecar_of(path: Path) -> Path:
    """The hidden file beside a single-file output that records what segqc wrote (``.NAME.segqc-output``)."""
    return path.with_name(f".{path.name}{MARKER}")


def _legacy_scores_header(path: Path) -> bool:
    """Whether a CSV's header is exactly the columns ``tabular score`` wrote before sidecars (nothing added)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 16).decode("utf-8").splitlines()[:1]
    except (OSError, UnicodeDecodeError):
        return False
    header = next(csv.reader(io.StringIO(head[0])), []) if head else []
    rest = header[1 + len(_SCORES_HEAD):]
    if tuple(header[1:1 + len(_SCORES_HEAD)]) != _SCORES_HEAD:
        return False
    if tuple(rest[:2]) == _SCORES_CULPRIT:
        rest = rest[2:]
    return [int(m.group(1)) if (m := _NORM.fullmatch(name)) else -1 for name in rest] == list(range(1, len(rest) + 1))


def check_output_file(path: str | Path, inputs: Iterable[Path | None] = (), option: str = "--out") -> Path:
    """Check that segqc may write the file ``path`` (create it, or replace a file it wrote).

    Args:
        path: The output file (CSV).
        inputs: Files the run reads; the output may not be one of them or contain them.
        option: The option that named ``path``, for the message.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: ``path`` is a folder, a symbolic link to a file, an input,
            a file segqc did not write or one changed since, or its parent is
            not a writable folder.
    """
    path = Path(path)
    if _is_stream(path):
        return path
    check_output_name(path, option)
    _check_inputs(path, inputs, option)
    _check_parent(path, option)
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a folder; give the path of the CSV file to write")
    if path.is_symlink():
        raise OutputError(f"{option} {path}: is a symbolic link; give the file itself")
    if not path.exists():
        return path
    if not path.is_file():
        raise OutputError(f"{option} {path}: exists and is not a regular file")
    document = read_marker(sidecar_of(path))
    manifest = recorded_manifest(document) if document else None
    digests = manifest.files.get(path.name) if manifest is not None else None
    if digests is not None:
        if sha256_file(path) not in digests:
            raise OutputError(f"{option} {path}: changed since segqc wrote it (your edits would be lost); "
                              f"move it away or choose a new file name")
    elif not _legacy_scores_header(path):
        raise OutputError(f"{option} {path}: file exists and is not a scores file written by segqc; "
                          f"choose a new file name")
    return path


@contextmanager
def owned_file(path: str | Path, kind: OutputKind = OutputKind.SCORES) -> Iterator[Path]:
    """Write a single-file output: yield where to write; on success it replaces ``path`` with its sidecar.

    Crash-safe: while the file is swapped its sidecar accepts both the old
    and the new content, so it is segqc's whichever it holds. A pipe or device
    is yielded as it is (written directly, no sidecar).

    Args:
        path: The output file, checked with :func:`check_output_file`.
        kind: What it holds.
    """
    path = Path(path)
    if _is_stream(path):
        try:
            yield path
        except BrokenPipeError:  # e.g. `--out /dev/stdout | head`: the reader took what it wanted
            logger.info("%s: the reader closed it before the end", path)
        return
    with _recorded_swap(path, sidecar_of(path), Manifest(kind.value), path.name) as temporary:
        yield temporary


@contextmanager
def owned_member(folder: Path, relative: str) -> Iterator[Path]:
    """Replace one file of a segqc output folder, keeping its manifest true (crash-safe as :func:`owned_file`).

    A folder without a recorded manifest (a staging folder, an older output)
    gets a plain atomic write.
    """
    folder = Path(folder)
    document = read_marker(folder / MARKER)
    with _recorded_swap(folder / relative, folder / MARKER, recorded_manifest(document) if document else None,
                        relative) as temporary:
        yield temporary


@contextmanager
def _recorded_swap(target: Path, marker: Path, manifest: Manifest | None, key: str) -> Iterator[Path]:
    """Replace ``target`` atomically while ``manifest`` (saved at ``marker``) accepts the old and the new content.

    ``None``: no manifest to keep (a plain atomic write).
    """
    with atomic_file(target) as temporary:
        yield temporary
        if manifest is not None:
            new = sha256_file(temporary)
            manifest.files[key] = [*([sha256_file(target)] if target.is_file() else []), new]
            manifest.write(marker)
    if manifest is not None:
        manifest.files[key] = [new]
        manifest.write(marker)
