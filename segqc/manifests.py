"""What segqc wrote: output kinds, markers and their manifests, and removing only what they list.

Every folder segqc writes carries a marker file, :data:`MARKER`, holding its
kind (and a model's mode, ``image`` or ``tabular``) and a *manifest*: the
SHA-256 of every file and the name of every sub-folder segqc wrote there, at
any depth (:func:`seal`). :func:`manifest_of` reads it back (or, for outputs
written before manifests existed, the exact layout segqc wrote:
:func:`_legacy_manifest`); :func:`foreign_entry` finds what does not belong;
:func:`remove_owned` deletes only what the manifest lists. The rules built on
this are :mod:`segqc.outputs`'.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from segqc.atomic import atomic_file

logger = logging.getLogger(__name__)

MARKER = ".segqc-output"


class OutputKind(str, enum.Enum):
    """What an output holds."""

    REPORT = "report"
    MODEL = "model"
    MASKS = "masks"
    DEMO = "demo"
    DATA = "data"
    SCORES = "scores"
    CHECKPOINTS = "checkpoints"


# Nested outputs of a demo folder: each part carries its own marker.
DEMO_PARTS = {"data": OutputKind.DATA, "model": OutputKind.MODEL, "report": OutputKind.REPORT}
# Outputs written before manifests: the files segqc wrote, by kind, as patterns of their relative paths.
_LEGACY_FILES = {
    OutputKind.REPORT: re.compile(r"(scores\.csv|summary\.json|report\.html)"),
    OutputKind.MODEL: re.compile(r"(segqc\.json|weights\.safetensors|arrays\.npz)"),
    OutputKind.MASKS: re.compile(r"[^/]+\.(nii\.gz|nii|png|tif|tiff|npy)"),
    OutputKind.DATA: re.compile(r"(train|test)/((images|masks|predictions)/[A-Za-z0-9._-]+\.png|cases\.csv)"),
}
_LEGACY_FOLDERS = {OutputKind.REPORT: ("heatmaps", "gallery"),
                   OutputKind.DATA: tuple(f"{split}{part}" for split in ("train", "test")
                                          for part in ("", "/images", "/masks", "/predictions"))}
# Metadata that identifies folders written before markers existed: file -> key it must hold.
_LEGACY_METADATA = {OutputKind.REPORT: ("summary.json", "segqc_version"),
                    OutputKind.MODEL: ("segqc.json", "format_version")}



def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Manifest:
    """What segqc wrote in an output folder (or, for a sidecar, in one file).

    Attributes:
        kind: The output's kind (:class:`OutputKind` value).
        mode: ``image`` or ``tabular`` for models, else ``None``.
        files: Relative POSIX path -> accepted SHA-256 digests (two while a
            file is being replaced); ``None`` for files of an output written
            before manifests, whose content was not recorded.
        folders: Relative paths of the sub-folders segqc made.
        outputs: Nested outputs (relative folder -> kind), checked through their own markers.
    """

    kind: str
    mode: str | None = None
    files: dict[str, list[str] | None] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)
    outputs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """The marker file's content."""
        from segqc import __version__

        document = {"kind": self.kind, "segqc_version": __version__, "mode": self.mode,
                    "manifest": {"files": self.files, "folders": sorted(self.folders), "outputs": self.outputs}}
        return json.dumps(document, indent=1, sort_keys=True) + "\n"

    def write(self, marker: Path) -> None:
        """Write (atomically) the marker file ``marker``."""
        with atomic_file(marker) as temporary:
            temporary.write_text(self.to_json(), encoding="utf-8")


def read_marker(marker: Path) -> dict | None:
    try:
        document = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def recorded_manifest(document: dict) -> Manifest | None:
    """The manifest of a marker written by a segqc with manifests; ``None`` for an older marker."""
    manifest = document.get("manifest")
    if not isinstance(manifest, dict):
        return None
    try:
        files = {str(name): [str(d) for d in digests] for name, digests in manifest["files"].items()}
        return Manifest(str(document.get("kind")), document.get("mode"), files,
                        {str(f) for f in manifest["folders"]}, {str(k): str(v) for k, v in manifest["outputs"].items()})
    except (KeyError, TypeError, AttributeError):
        return None


def _legacy_kind(folder: Path, kind: OutputKind) -> bool:
    if kind not in _LEGACY_METADATA:
        return False
    name, key = _LEGACY_METADATA[kind]
    document = read_marker(folder / name)
    return document is not None and key in document


def walk(folder: Path) -> Iterator[tuple[str, Path, bool]]:
    """``(relative path, path, is a real folder)`` of every entry under ``folder``, sorted; links are not followed."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        base = Path(root)
        for name in [*dirs, *sorted(files)]:
            path = base / name
            relative = path.relative_to(folder).as_posix()
            if relative != MARKER:
                yield relative, path, path.is_dir() and not path.is_symlink()


def _legacy_manifest(folder: Path, kind: OutputKind) -> Manifest:
    """The files an output written before manifests may hold: segqc's layout for ``kind``, content not recorded."""
    manifest = Manifest(kind.value, folders=set(_LEGACY_FOLDERS.get(kind, ())))
    if kind == OutputKind.DEMO:
        manifest.outputs = {name: part.value for name, part in DEMO_PARTS.items()}
        return manifest
    pattern = _LEGACY_FILES.get(kind)
    for relative, path, is_folder in walk(folder):
        if not is_folder and pattern is not None and pattern.fullmatch(relative) and not path.is_symlink():
            manifest.files[relative] = None
    if kind == OutputKind.REPORT:  # the heat maps and gallery panels its scores.csv lists
        for relative in _listed_report_files(folder / "scores.csv"):
            if (folder / relative).is_file():
                manifest.files[relative] = None
    return manifest


def _listed_report_files(scores: Path) -> set[str]:
    try:
        with scores.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return set()
    listed = {row.get(column) or "" for row in rows for column in ("heatmap", "gallery")}
    return {name for name in listed if re.fullmatch(r"(heatmaps|gallery)/[^/]+", name)}


def manifest_of(folder: Path, kind: OutputKind) -> Manifest | None:
    """The manifest of a segqc output of ``kind`` at ``folder``; ``None`` when it is not one."""
    document = read_marker(folder / MARKER)
    if document is not None:
        if document.get("kind") != kind.value:
            return None
        return recorded_manifest(document) or _legacy_manifest(folder, kind)
    if kind == OutputKind.DATA or _legacy_kind(folder, kind):  # a demo's data folder had no marker before manifests
        return _legacy_manifest(folder, kind)
    return None


def model_mode(folder: Path, manifest: Manifest) -> str | None:
    """``image`` or ``tabular``: the marker's, else the bundle metadata's (older bundles)."""
    if manifest.mode:
        return manifest.mode
    document = read_marker(folder / "segqc.json")
    mode = document.get("mode") if document else None
    return mode if isinstance(mode, str) else None


def foreign_entry(folder: Path, manifest: Manifest) -> tuple[str, str] | None:
    """The first entry of ``folder`` segqc did not write, and why; ``None`` when segqc wrote everything.

    Names are checked first (cheap), then the content of every recorded file.
    """
    recorded = []
    nested = tuple(f"{name}/" for name in manifest.outputs)
    for relative, path, is_folder in walk(folder):
        if relative.startswith(nested):
            continue  # checked through the nested output's own marker
        if relative in manifest.outputs:
            problem = _nested_problem(path, OutputKind(manifest.outputs[relative]))
            if problem:
                return f"{relative}/{problem[0]}", problem[1]
        elif is_folder:
            if relative not in manifest.folders:
                return relative, "a folder segqc did not write"
        elif relative not in manifest.files:
            return relative, "a file segqc did not write"
        elif path.is_symlink() or not path.is_file():
            return relative, "not the file segqc wrote (a link or special file now)"
        elif manifest.files[relative] is not None:
            recorded.append((relative, path))
    for relative, path in recorded:
        if sha256_file(path) not in (manifest.files[relative] or ()):
            return relative, "changed since segqc wrote it"
    return None


def _nested_problem(folder: Path, kind: OutputKind) -> tuple[str, str] | None:
    """Why a nested output may not be replaced (relative entry, reason), or ``None``."""
    if folder.is_symlink() or not folder.is_dir():
        return ".", "not a folder segqc wrote"
    manifest = manifest_of(folder, kind)
    if manifest is None:
        return ".", f"a folder segqc did not write as {kind.value}"
    return foreign_entry(folder, manifest)


def seal(folder: Path, kind: OutputKind, mode: str | None = None,
         outputs: dict[str, OutputKind] | None = None) -> Manifest:
    """Record everything now in ``folder`` as segqc's, in its marker (call before the folder is published).

    Args:
        folder: A folder segqc has just written (a staging folder).
        kind: Its kind.
        mode: A model's mode.
        outputs: Nested outputs (relative folder -> kind) that carry their own
            markers, whether or not they exist yet.

    Returns:
        The manifest written.
    """
    nested = {name: part.value for name, part in (outputs or {}).items()}
    manifest = Manifest(kind.value, mode, outputs=nested)
    prefixes = tuple(f"{name}/" for name in nested)
    for relative, path, is_folder in walk(folder):
        if relative in nested or relative.startswith(prefixes):
            continue
        if is_folder:
            manifest.folders.add(relative)
        else:
            manifest.files[relative] = [sha256_file(path)]
    manifest.write(folder / MARKER)
    return manifest


def remove_owned(folder: Path, kind: OutputKind | None = None) -> None:
    """Delete what segqc wrote in ``folder`` (its manifest says what), then the folder if nothing else is left.

    A file that is not in the manifest, or whose content changed, is kept, and
    a warning names it.

    Args:
        folder: A segqc output folder.
        kind: Its kind; default: the one its marker names.
    """
    if kind is None:
        document = read_marker(folder / MARKER) or {}
        kind = next((k for k in OutputKind if k.value == document.get("kind")), None)
    manifest = manifest_of(folder, kind) if kind is not None else None
    if manifest is None:
        logger.warning("%s: not removed: segqc cannot tell what it wrote there", folder)
        return
    for relative, digests in manifest.files.items():
        path = folder / relative
        if path.is_file() and not path.is_symlink() and (digests is None or sha256_file(path) in digests):
            path.unlink()
    for relative in manifest.outputs:
        if (folder / relative).is_dir() and not (folder / relative).is_symlink():
            remove_owned(folder / relative, OutputKind(manifest.outputs[relative]))
    for relative in sorted(manifest.folders, key=lambda name: name.count("/"), reverse=True):
        _remove_if_empty(folder / relative)
    (folder / MARKER).unlink(missing_ok=True)
    if not _remove_if_empty(folder):
        entries = [(is_folder, relative) for relative, _, is_folder in walk(folder)]
        left = min(entries)[1] if entries else "?"  # a file, where there is one
        logger.warning("%s: kept %r, which segqc did not write (it appeared while segqc was writing); move it "
                       "where you want it", folder, left)


def _remove_if_empty(folder: Path) -> bool:
    try:
        folder.rmdir()
    except OSError:
        return not folder.exists()
    return True


def write_marker(folder: Path, kind: OutputKind, outputs: dict[str, OutputKind] | None = None) -> None:
    """Mark an output folder that segqc fills in place with nested outputs only (a demo folder)."""
    nested = {name: part.value for name, part in (outputs or {}).items()}
    Manifest(kind.value, outputs=nested).write(Path(folder) / MARKER)
