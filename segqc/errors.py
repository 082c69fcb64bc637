"""Error hierarchy of segqc.

Every error that reaches a user is a :class:`SegQCError`. Its message says what
was expected, what was found and where (file, column or option), so that the
CLI can print it as one line. The CLI exits with :attr:`SegQCError.exit_code`.
"""

from __future__ import annotations

import difflib
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
