"""Reading files written with ``torch.save`` safely, with errors a user can act on.

Everything goes through ``torch.load(weights_only=True)``: tensors and plain
containers only, never arbitrary pickled objects. Before that, the first bytes
tell a ``torch.save`` file (a zip archive, or a legacy pickle) from anything
else, so a text file or an image given as weights gets a plain "not a PyTorch
file" instead of a pickle-protocol message.
"""

from __future__ import annotations

import struct
from pathlib import Path
from pickle import UnpicklingError  # the exception class only: torch.load(weights_only=True) raises it
from typing import Any

import torch

from segqc.errors import InputError

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL = b"\x80"
_SAFETENSORS_HINT = b'{"'


def _kind_of(head: bytes) -> str | None:
    """What the first bytes of a file say it is, when it is not a ``torch.save`` file."""
    if head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTOCOL):
        return None
    if len(head) >= 10 and head[8:10] == _SAFETENSORS_HINT:
        return "a safetensors file"
    if not head:
        return "an empty file"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "a file of another format"


def load_torch_file(path: str | Path, what: str, remedy: str = "") -> Any:
    """Read a ``torch.save`` file with ``weights_only=True``.

    Args:
        path: The file.
        what: What the file should be, for messages (e.g. ``"a PyTorch state_dict for deeplabv3"``).
        remedy: Advice appended to every error (e.g. ``"delete it to start over"``).

    Returns:
        The loaded object (tensors in plain containers).

    Raises:
        InputError: The file is missing, not a ``torch.save`` file, damaged,
            or holds pickled Python objects other than tensors.
    """
    path = Path(path)
    suffix = f"; {remedy}" if remedy else ""
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as err:
        raise InputError(f"{path}: cannot open {what} ({err.strerror or err}){suffix}") from None
    kind = _kind_of(head)
    if kind is not None:
        raise InputError(f"{path}: expected {what} saved with torch.save, found {kind}{suffix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except UnpicklingError as err:
        reason = ("it pickles Python objects, not only tensors; save tensors only (e.g. model.state_dict())"
                  if "weights only" in str(err).lower() else "damaged or not written by torch.save")
        raise InputError(f"{path}: cannot read as {what} ({reason}){suffix}") from None
    except (RuntimeError, OSError, EOFError, ValueError, struct.error) as err:
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        raise InputError(f"{path}: cannot read as {what} (damaged file: {reason}){suffix}") from None
