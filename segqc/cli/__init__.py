"""segqc command line: thin Typer commands over the jobs of :mod:`segqc.jobs`.

Each command parses its options, calls one job and prints what it returns.
Exit codes: 0 success, 1 internal error, 2 bad input (one line on stderr),
3 (``score --fail-on``) more cases failed QC than allowed.
"""

from segqc.cli import image, tabular  # noqa: F401  (the commands register themselves on the app)
from segqc.cli.app import app

__all__ = ["app"]
