"""Error hierarchy of segqc.

Every error that reaches a user is a :class:`SegQCError`. Its message says what
was expected, what was found and where (file, column or option), so that the
CLI can print it as one line. The CLI exits with :attr:`SegQCError.exit_code`.
"""

from __future__ import annotations

import difflib
import errno
import os
import re
from collections.abc import Iterable


class SegQCError(Exception):
    """Base class of every error segqc raises on purpose."""

    exit_code: int = 2


class InputError(SegQCError):
    """A file, folder or table given by the user cannot be used."""


class SchemaError(InputError):
    """Columns, labels or shapes of the input do not match what the model expects."""


class ConfigError(SegQCError):
    """A configuration value or command-line option is invalid."""


class FieldError(ConfigError):
    """A config value of the wrong type or out of range; names its section and key.

    Attributes:
        section: The config section, e.g. ``"training"``.
        name: The key, e.g. ``"lr"``.
        detail: What was found and what was expected.
        related: Other keys of the section the failed check involves (``lr_min <= lr``); ``detail`` then
            names each of them with its value, so the error may be shown under any of them.
    """

    def __init__(self, section: str, name: str, detail: str, related: tuple[str, ...] = ()) -> None:
        super().__init__(f"{section}.{name}: {detail}")
        self.section, self.name, self.detail, self.related = section, name, detail, related


class OutputError(ConfigError):
    """An output path cannot be written without losing something segqc did not write."""


class BundleError(SegQCError):
    """A model bundle is missing, damaged, tampered with or of another format version."""


class NotFittedError(SegQCError):
    """A detector was used before ``fit`` or ``load``."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return a ``" (did you mean 'x'?)"`` hint for ``name``, or ``""``.

    Args:
        name: The unknown name the user typed.
        choices: The valid names.

    Returns:
        A hint to append to an error message.
    """
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# What to do when a write fails because of where it goes, by errno.
_WRITE_FAULTS = {
    errno.ENOSPC: "the disk is full; free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up; free some space or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.ENAMETOOLONG: "a file name is longer than the file system allows; use shorter names",
    errno.EFBIG: "the file is larger than the file system or this process's file-size limit (ulimit -f) allows; "
                 "raise the limit or write elsewhere",
}
# Libraries that wrap an OS error in their own: safetensors (Rust) says "(os error 28)"; torch's zip writer
# says only "enforce fail at inline_container.cc ... unexpected pos" when a write came up short.
_WRAPPED_ERRNO = re.compile(r"\(os error (\d+)\)|Os \{ code: (\d+)")
_TORCH_SHORT_WRITE = "inline_container.cc"


def write_fault(err: BaseException, target: str | os.PathLike[str]) -> OutputError | None:
    """The bad-input error for a write that failed because of its environment, or ``None``.

    Environment faults are a full disk, a used-up quota, a read-only file
    system and a file-size limit: the user can act on them, so they are bad
    input (exit 2), not bugs.

    Args:
        err: The exception a write raised.
        target: The output being written, named in the message.

    Returns:
        An :class:`OutputError` naming ``target`` and what to do, or ``None``
        when ``err`` is something else.
    """
    if isinstance(err, SegQCError):
        return None
    code = err.errno if isinstance(err, OSError) else None
    if code is None and not isinstance(err, OSError):
        match = _WRAPPED_ERRNO.search(str(err))
        code = int(match.group(1) or match.group(2)) if match else None
    if code in _WRITE_FAULTS:
        return OutputError(f"{target}: cannot write ({os.strerror(code)}): {_WRITE_FAULTS[code]}; "
                           "an earlier version, if any, is unchanged")
    if isinstance(err, RuntimeError) and _TORCH_SHORT_WRITE in str(err):
        return OutputError(f"{target}: cannot write (a write came up short: the disk may be full, or a quota or "
                           "file-size limit reached); free some space or write elsewhere; an earlier version, "
                           "if any, is unchanged")
    return None


def memory_fault(err: BaseException) -> ConfigError | None:
    """The bad-input error for running out of memory (a MemoryError or PyTorch's allocation error), or ``None``."""
    text = " ".join(str(err).split())
    if not isinstance(err, MemoryError) and not (isinstance(err, RuntimeError) and (
            "can't allocate memory" in text or "out of memory" in text.lower())):
        return None
    return ConfigError(f"not enough memory ({type(err).__name__}{': ' + text[:200] if text else ''}); lower the "
                       "batch size, the model size (levels, width, nf) or the data size (--max-voxels), or run on a "
                       "machine with more memory")


def case_error(err: BaseException) -> str:
    """The message of an error row: what went wrong with one case, in one line.

    A :class:`SegQCError` gives its own message; running out of memory and any
    other failure are described so that the run can go on without them.
    """
    if isinstance(err, SegQCError):
        return str(err)
    if isinstance(err, MemoryError):
        return "not enough memory to read and prepare this case (is a file larger than it should be?)"
    text = " ".join(str(err).split())[:300]
    return f"cannot be read or prepared ({type(err).__name__}{': ' + text if text else ''})"
