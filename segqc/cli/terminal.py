"""What the command line shows: one-line errors, progress bars and result lines (rich, on stderr).

Only the CLI talks to the terminal; library code logs with :mod:`logging`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from segqc.errors import SegQCError, memory_fault, write_fault
from segqc.report.rankings import read_rankings
from segqc.signals import TERMINATED_EXIT_CODE, Terminated, terminate_as_interrupt

if TYPE_CHECKING:
    from segqc.fitting.trainer import StepInfo

console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def error_line(message: str, kind: str = "error") -> None:
    """The one line a user sees for bad input (white space folded, no markup read from the message)."""
    console.print(f"[bold red]{kind}:[/] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)


def setup_logging(verbose: bool) -> None:
    """Warnings by default; with --verbose, progress details and (for internal errors) the traceback."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_time=False, show_path=False)], force=True)
    logging.getLogger("segqc").setLevel(logging.DEBUG if verbose else logging.NOTSET)


def handle_errors(command: F) -> F:
    """Turn segqc errors (and full disks, quotas, read-only disks, lack of memory) into one line and exit 2; bugs 1.

    SIGTERM stops a command as Ctrl-C does (temporary files removed; exit 143).
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with terminate_as_interrupt():
                return command(*args, **kwargs)
        except SegQCError as err:
            error_line(str(err))
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt as err:
            console.print(f"[bold red]{'terminated' if isinstance(err, Terminated) else 'interrupted'}[/]; nothing "
                          "was written (a resumable checkpoint may exist)")
            raise typer.Exit(TERMINATED_EXIT_CODE if isinstance(err, Terminated) else 130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as err:  # noqa: BLE001 - the CLI must never print a traceback by default
            fault = write_fault(err, getattr(err, "filename", None) or "an output file") or memory_fault(err)
            if fault is not None:
                error_line(str(fault))
                raise typer.Exit(fault.exit_code) from None
            logging.getLogger("segqc").debug("internal error", exc_info=True)
            error_line(f"{type(err).__name__}: {err} (run with --verbose for the traceback)", "internal error")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def progress_bar(description: str, unit: str) -> Iterator[Callable[[int, int, str], None]]:
    """A rich progress bar; yields ``update(done, total, status)``.

    The bar appears at the first update, so input errors found before the work
    starts print alone; it is shown on terminals only, so logs of unattended
    runs hold just the result lines (and an error, one line).
    """
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TextColumn(f"{{task.fields[rate]}} {unit}/s"),
               TimeElapsedColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=console, disable=not console.is_terminal)  # no bars in cron logs
    task = progress.add_task(description, total=None, status="", rate="-", start=False)

    def update(done: int, total: int, status: str = "") -> None:
        if not progress.live.is_started:
            progress.start()
            progress.start_task(task)
        elapsed = progress.tasks[task].elapsed or 0.0
        rate = f"{done / elapsed:.1f}" if elapsed > 0 else "-"
        progress.update(task, total=total, completed=done, status=status, rate=rate)
        if done >= total:  # leave the finished bar on screen; rich shows one live display at a time
            progress.stop()

    try:
        yield update
    except BaseException:
        progress.live.transient = True  # on failure the error line stands alone
        raise
    finally:
        if progress.live.is_started:
            progress.stop()


@contextmanager
def training_progress(description: str = "training") -> Iterator[Callable[[StepInfo], None]]:
    """A progress bar fed by the trainer's ``on_step`` callback."""
    with progress_bar(description, "steps") as update:
        yield lambda info: update(info.step, info.total, f"loss {info.loss:.4g}")


def number(value: float | None) -> str:
    """A figure with three decimals, ``n/a`` when it is missing."""
    return "n/a" if value is None else f"{value:.3f}"


def ranking_lines(summary: dict[str, Any]) -> list[str]:
    """One line per ranking (the headline first, and named so): failure detection and Spearman correlations.

    The figures are ``summary.json``'s, printed with three decimals as the report shows them.
    """
    figures = read_rankings(summary)
    if not figures:
        return []
    names = sorted(figures.labels, key=lambda name: name != figures.headline)
    headline = figures.failure_detection.get(figures.headline, {})
    title = (f"failure detection (Dice < {headline.get('dice_threshold', 'n/a')}: {headline.get('failures', 'n/a')} "
             f"failed), headline ranking: {figures.labels[figures.headline]}")
    lines = [title]
    width = max(len(figures.labels[name]) for name in names)
    for name in names:
        detection, correlated = figures.failure_detection.get(name, {}), figures.correlations.get(name, {})
        spearman = ", ".join(f"{label} {number((correlated.get(metric) or {}).get('spearman'))}"
                             for metric, label in (("dice_mean", "Dice"), ("hd95", "HD95"), ("msd", "MSD"))
                             if metric in correlated)
        lines.append(f"  {figures.labels[name]:<{width}}  AUROC {number(detection.get('auroc'))}, AP "
                     f"{number(detection.get('average_precision'))}, AURC {number(detection.get('aurc'))}"
                     + (f"; Spearman with {spearman}" if spearman else ""))
    return lines


def print_quality_lines(summary: dict[str, Any]) -> None:
    """Where the predicted-Dice intervals come from; with ground truth, every ranking's failure detection (the
    headline first), predicted-vs-true Dice and verdict errors."""
    if summary.get("interval"):
        console.print(f"predicted-Dice intervals: {summary['interval']['text']}", highlight=False)
    for line in ranking_lines(summary):
        console.print(line, highlight=False, soft_wrap=True)
    agreement, verdicts = summary.get("predicted_dice"), summary.get("verdict_quality")
    if agreement:
        console.print(f"predicted Dice vs true Dice: MAE {number(agreement.get('mae'))}, interval coverage "
                      f"{number(agreement.get('coverage'))} (mean width {number(agreement.get('width'))})",
                      highlight=False)
    if verdicts:
        console.print(f"verdicts vs true Dice: false alarms {number(verdicts['false_alarms'])} of "
                      f"{verdicts['good']} good (Dice >= 0.9), misses {number(verdicts['misses'])} of "
                      f"{verdicts['failed']} failed", highlight=False)
