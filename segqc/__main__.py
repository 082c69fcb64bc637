"""``python -m segqc``: the same command-line interface as the ``segqc`` command."""

from segqc.cli import app

app(prog_name="segqc")
