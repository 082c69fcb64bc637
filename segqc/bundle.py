"""Model bundles: a directory with JSON metadata, safetensors weights and npz arrays.

Layout::

    MODEL/
      segqc.json          format version, segqc version, mode, config, schema,
                          calibration, sha256 of every other file, and a
                          digest sealing all of it
      weights.safetensors network weights (never unpickled)
      arrays.npz          density parameters and other arrays (allow_pickle=False)
      .segqc-output       marker: a model segqc wrote, its mode and the SHA-256 of
                          every file (see :mod:`segqc.outputs`)

A bundle is written to a temporary sibling directory and renamed into place,
so an interrupted write never leaves a half-written bundle. The digest is the
SHA-256 of the canonical JSON of the metadata (sorted keys, without the digest
itself), which includes every file's checksum; reading recomputes it and the
checksums, so a bundle whose thresholds, config or arrays were edited is refused
with a clear error. Only a folder segqc wrote as a model of the same mode, holding
nothing but what segqc wrote, is ever replaced.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from segqc import __version__
from segqc.errors import BundleError
from segqc.jsonable import json_default
from segqc.manifests import OutputKind, sha256_file
from segqc.outputs import check_output_dir, owned_directory

FORMAT_VERSION = 2
METADATA_FILE = "segqc.json"
WEIGHTS_FILE = "weights.safetensors"
ARRAYS_FILE = "arrays.npz"


@dataclass
class Bundle:
    """Contents of a model bundle."""

    metadata: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    arrays: dict[str, np.ndarray]


def write_bundle(path: str | Path, mode: str, metadata: dict[str, Any], tensors: dict[str, torch.Tensor],
                 arrays: dict[str, np.ndarray]) -> Path:
    """Write a bundle atomically.

    Args:
        path: Target directory (replaced if it is a bundle segqc wrote).
        mode: ``"tabular"`` or ``"image"``.
        metadata: JSON-serialisable metadata (config, schema, calibration...).
        tensors: Network weights.
        arrays: Other numeric arrays (density parameters...).

    Returns:
        The bundle directory.

    Raises:
        OutputError: ``path`` is a file, a folder segqc did not write as a model
            of this mode, or holds something segqc did not write.
    """
    target = check_output_dir(path, OutputKind.MODEL, mode=mode)
    with owned_directory(target, OutputKind.MODEL, mode=mode) as staging:
        _write_contents(staging, mode, metadata, tensors, arrays)
    return target


def _write_contents(staging: Path, mode: str, metadata: dict[str, Any], tensors: dict[str, torch.Tensor],
                    arrays: dict[str, np.ndarray]) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(staging / WEIGHTS_FILE))
    with (staging / ARRAYS_FILE).open("wb") as handle:
        np.savez(handle, **{k: np.asarray(v) for k, v in arrays.items()})
    document = {"format_version": FORMAT_VERSION, "segqc_version": __version__, "mode": mode, **metadata,
                "checksums": {name: sha256_file(staging / name) for name in (WEIGHTS_FILE, ARRAYS_FILE)}}
    document = json.loads(json.dumps(document, default=json_default))  # the form a reader will see
    document["digest"] = metadata_digest(document)
    (staging / METADATA_FILE).write_text(json.dumps(document, indent=2), encoding="utf-8")


def metadata_digest(document: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a bundle's metadata (every key but ``digest``)."""
    canonical = json.dumps({k: v for k, v in document.items() if k != "digest"}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def with_prefix(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A part's arrays named for the bundle's one ``arrays.npz``: ``{"prefix_name": array}``."""
    return {f"{prefix}_{name}": value for name, value in arrays.items()}


def part(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of one part written with :func:`with_prefix`, under their own names (empty when absent)."""
    return {name.removeprefix(f"{prefix}_"): value for name, value in arrays.items() if name.startswith(f"{prefix}_")}


def model_id(metadata: dict[str, Any]) -> str:
    """Short id of a bundle: the first 12 hex digits of its weights' SHA-256 (names the model in reports)."""
    return str(metadata["checksums"][WEIGHTS_FILE])[:12]


def read_bundle(path: str | Path, mode: str) -> Bundle:
    """Read and verify a bundle.

    Args:
        path: Bundle directory.
        mode: Expected mode (``"tabular"`` or ``"image"``).

    Returns:
        The bundle's metadata, weights and arrays.

    Raises:
        BundleError: Missing files, another format version or mode, a checksum
            mismatch, or unreadable content.
    """
    root = Path(path)
    meta_path = root / METADATA_FILE
    if not root.is_dir() or not meta_path.is_file():
        raise BundleError(f"{root}: not a segqc model bundle (no {METADATA_FILE}); "
                          f"create one with 'segqc {'tabular fit' if mode == 'tabular' else 'train'}'")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{meta_path}: damaged metadata ({err})") from None
    if not isinstance(metadata, dict):
        raise BundleError(f"{meta_path}: damaged metadata (expected a JSON object)")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{root}: bundle format version {version!r} is not supported by segqc {__version__} "
                          f"(expected {FORMAT_VERSION}); retrain the model with this version")
    if metadata.get("mode") != mode:
        raise BundleError(f"{root}: a {metadata.get('mode')!r} model, expected a {mode!r} model")
    if metadata.get("digest") != metadata_digest(metadata):
        raise BundleError(f"{meta_path}: the metadata was modified after segqc wrote the bundle (digest "
                          f"mismatch); restore the original bundle or retrain")
    checksums = metadata.get("checksums")
    if not isinstance(checksums, dict) or set(checksums) != {WEIGHTS_FILE, ARRAYS_FILE}:
        raise BundleError(f"{meta_path}: checksums missing; the bundle was modified or damaged")
    for name, expected in checksums.items():
        file = root / name
        if not file.is_file():
            raise BundleError(f"{file}: missing from the bundle")
        if sha256_file(file) != expected:
            raise BundleError(f"{file}: checksum mismatch; the bundle was modified or damaged")
    try:
        tensors = load_file(str(root / WEIGHTS_FILE))
        with np.load(root / ARRAYS_FILE, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (SafetensorError, OSError, ValueError) as err:
        raise BundleError(f"{root}: cannot read the bundle's arrays ({err})") from None
    return Bundle(metadata, tensors, arrays)
