"""What a file named on the command line must be: one check, one message for every input file.

A path given as an input file (a table, a config, weights, a history database)
must exist and be a regular file. A pipe, a terminal or another device
(``/dev/stdin``, a FIFO made with ``mkfifo``) cannot be read twice or measured
before it is read, so it is refused with a message saying to save the data to
a file first, instead of being read as "an empty file" or waited on forever.
"""

from __future__ import annotations

from pathlib import Path

from segqc.errors import InputError


def check_input_file(path: str | Path, what: str, option: str | None = None) -> Path:
    """Refuse an input path that is not a readable regular file.

    Args:
        path: The path given.
        what: What the file is, e.g. ``"config file"``.
        option: The option that named it, for the message (``None``: an argument).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InputError: The path is missing, a broken link, a folder, or not a
            regular file (a pipe, terminal or device).
    """
    path = Path(path)
    where = f"{option} {path}" if option else str(path)
    if not path.exists():
        if path.is_symlink():
            raise InputError(f"{where}: broken symbolic link or link loop; expected a {what}")
        raise InputError(f"{where}: file not found; expected a {what}")
    if path.is_dir():
        raise InputError(f"{where}: is a directory; expected a {what}")
    if not path.is_file():
        raise InputError(f"{where}: is not a regular file (a pipe, terminal or device); save it as a {what} and "
                         "give that file")
    return path
