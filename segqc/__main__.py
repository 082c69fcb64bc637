"""The ``segqc`` command and ``python -m segqc``: the command-line interface of :mod:`segqc.cli`."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command line; a Ctrl-C while it loads (importing torch takes seconds) ends quietly, exit 130.

    Once loaded, every command handles Ctrl-C itself (:func:`segqc.cli.terminal.handle_errors`).
    """
    try:
        from segqc.cli import app
    except KeyboardInterrupt:
        sys.stderr.write("interrupted while segqc was starting; nothing was written\n")
        raise SystemExit(130) from None
    app(prog_name="segqc")


if __name__ == "__main__":
    main()
