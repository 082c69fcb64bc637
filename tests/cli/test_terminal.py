"""The CLI's terminal layer: one-line errors with exit codes, progress bars and result lines."""

from __future__ import annotations

import sys

import pytest
import typer
from typer.testing import CliRunner

from segqc.cli.terminal import handle_errors, number, print_quality_lines, progress_bar
from segqc.errors import BundleError, ConfigError, InputError, OutputError, SchemaError, SegQCError

runner = CliRunner()


def app_raising(error: BaseException | None) -> typer.Typer:
    """A throwaway one-command app whose command raises ``error`` (or prints its option)."""
    app = typer.Typer()

    @app.command()
    @handle_errors
    def command(name: str = typer.Option("world")) -> None:
        if error is not None:
            raise error
        print(f"hello {name}")

    return app


def lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.mark.parametrize("error", [SegQCError("base"), InputError("/data/a.png: cannot read"),
                                   SchemaError("scores.csv: column 'age' missing"),
                                   ConfigError("--top-k 0: expected at least 1"),
                                   OutputError("--out /x: folder exists"), BundleError("/m: damaged")],
                         ids=lambda error: type(error).__name__)
def test_segqc_errors_print_one_error_line_and_exit_2(error: SegQCError) -> None:
    result = runner.invoke(app_raising(error), [])
    assert result.exit_code == 2
    assert lines(result.output) == [f"error: {error}"]
    assert "Traceback" not in result.output


def test_an_error_of_several_lines_prints_as_one_and_markup_is_not_read() -> None:
    result = runner.invoke(app_raising(InputError("/data/[bold]x[/bold].png:\n   cannot   read\tit")), [])
    assert result.exit_code == 2
    assert lines(result.output) == ["error: /data/[bold]x[/bold].png: cannot read it"]


@pytest.mark.parametrize("error", [ValueError("bad shape"), RuntimeError("unexpected state"), KeyError("id"),
                                   ZeroDivisionError("division by zero")],
                         ids=lambda error: type(error).__name__)
def test_other_exceptions_print_one_internal_error_line_and_exit_1(error: Exception) -> None:
    result = runner.invoke(app_raising(error), [])
    assert result.exit_code == 1
    expected = f"internal error: {type(error).__name__}: {error} (run with --verbose for the traceback)"
    assert lines(result.output) == [expected]
    assert "Traceback" not in result.output


def test_an_interrupt_exits_130_and_says_nothing_was_written() -> None:
    result = runner.invoke(app_raising(KeyboardInterrupt()), [])
    assert result.exit_code == 130 and "interrupted" in result.output and "nothing was written" in result.output


@pytest.mark.parametrize("code", [0, 3])
def test_a_deliberate_exit_keeps_its_code(code: int) -> None:
    result = runner.invoke(app_raising(typer.Exit(code)), [])
    assert result.exit_code == code and result.output == ""


def test_a_successful_command_keeps_its_options_and_output() -> None:
    result = runner.invoke(app_raising(None), ["--name", "segqc"])
    assert result.exit_code == 0 and result.output.strip() == "hello segqc"
    assert "--name" in runner.invoke(app_raising(None), ["--help"]).output


def test_the_wrapper_keeps_the_commands_name_and_docstring() -> None:
    def score_things(x: int) -> int:
        """Score things."""
        return x + 1

    wrapped = handle_errors(score_things)
    assert wrapped.__name__ == "score_things" and wrapped.__doc__ == "Score things." and wrapped(1) == 2


@pytest.mark.parametrize(("value", "text"), [(None, "n/a"), (0.5, "0.500"), (0.12345, "0.123"), (1, "1.000")])
def test_number_shows_three_decimals_or_n_a(value, text: str) -> None:
    assert number(value) == text


def test_ground_truth_lines_show_the_figures_given(capsys) -> None:
    print_quality_lines({"failure_detection": {"dice_threshold": 0.8, "auroc": 0.91234, "average_precision": 0.5,
                                                    "aurc": None},
                              "predicted_dice": {"mae": 0.05, "spearman": 0.7, "coverage": 0.9},
                              "verdict_quality": {"false_alarms": 0.1, "good": 20, "misses": 0.25, "failed": 4}})
    err = " ".join(capsys.readouterr().err.split())  # rich wraps at the console width
    assert "failure detection (Dice < 0.8" in err and "headline ranking: anomaly score" in err
    assert "AUROC 0.912, AP 0.500, AURC n/a" in err
    assert "predicted Dice vs true Dice: MAE 0.050, interval coverage 0.900" in err
    assert "false alarms 0.100 of 20 good" in err and "misses 0.250 of 4 failed" in err


def test_ground_truth_lines_are_silent_without_figures(capsys) -> None:
    print_quality_lines({"failure_detection": None})
    assert capsys.readouterr().err == ""


def test_progress_bar_is_silent_off_a_terminal_and_lets_errors_through(capsys) -> None:
    with progress_bar("scoring", "cases") as update:
        for done in range(1, 4):
            update(done, 3, "ok")
    assert capsys.readouterr().err == ""
    with pytest.raises(InputError, match="boom"), progress_bar("scoring", "cases") as update:
        update(1, 2)
        raise InputError("boom")


def test_ctrl_c_while_segqc_starts_ends_quietly(monkeypatch, capsys) -> None:
    import types

    from segqc.__main__ import main

    class Loading(types.ModuleType):
        def __getattr__(self, name: str):
            raise KeyboardInterrupt  # as if Ctrl-C landed while torch was being imported

    monkeypatch.setitem(sys.modules, "segqc.cli", Loading("segqc.cli"))
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 130
    assert capsys.readouterr().err == "interrupted while segqc was starting; nothing was written\n"
