"""The Typer application: the ``segqc`` command group, its ``tabular`` sub-group and the global options."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from segqc import __version__
from segqc.cli.terminal import console, error_line, setup_logging


class OneLineErrors(typer.core.TyperGroup):
    """Usage errors (unknown option, bad value, missing argument) as one line and exit code 2."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as err:  # Typer's (vendored Click's) ClickException family
            if type(err).__name__ == "NoArgsIsHelpError":  # a bare command group: show its help
                err.show()
            else:
                context = getattr(err, "ctx", None)
                where = f"{context.command_path}: " if context is not None else ""
                hint = f" (see '{context.command_path} --help')" if context is not None else ""
                error_line(f"{where}{err.format_message()}{hint}")
            sys.exit(getattr(err, "exit_code", 2))
        except typer.Abort:
            console.print("[bold red]aborted[/]")
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode="rich",
                  help="segqc: find failed segmentations and anomalous table rows without ground truth.")
tabular_app = typer.Typer(help="Anomaly scores for rows of a CSV / Parquet table (GNSM).", no_args_is_help=True)
app.add_typer(tabular_app, name="tabular")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"segqc {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show progress details and tracebacks.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """segqc learns what correct data look like and flags what does not."""
    setup_logging(verbose)
