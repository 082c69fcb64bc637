"""Commands of the tabular mode: ``segqc tabular fit`` and ``segqc tabular score``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from segqc.cli.app import tabular_app
from segqc.cli.options import (
    MODEL_DEFAULTS,
    TRAINING_DEFAULTS,
    DeviceOption,
    SeedOption,
    ThreadsOption,
    computing,
    split_names,
)
from segqc.cli.terminal import console, handle_errors, progress_bar, training_progress
from segqc.config import AUTO, CLEAN_SIGMA_MIN, CONTAMINATED_SIGMA_MIN
from segqc.errors import ConfigError


@tabular_app.command("fit")
@handle_errors
def tabular_fit(
    data: Annotated[Path, typer.Argument(help="Training table: CSV (.csv, .tsv) or Parquet (.parquet).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model bundle directory to write.")],
    config: Annotated[Path | None, typer.Option(help="YAML file with 'model' and 'training' sections; "
                                                     "command-line options override it.")] = None,
    method: Annotated[str | None, typer.Option(help="msma: score norms at several noise scales; kdsm: one "
                                                    "scale, kurtosis-scaled for continuous columns. Both compare "
                                                    "each column's norms with the training rows'. "
                                                    f"(default: {MODEL_DEFAULTS.method})")] = None,
    steps: Annotated[int | None, typer.Option(help=f"Training steps. (default: {TRAINING_DEFAULTS.steps})")] = None,
    batch_size: Annotated[int | None, typer.Option(help=f"Rows per training step. (default: {TRAINING_DEFAULTS.batch_size})")] = None,
    lr: Annotated[float | None, typer.Option(help=f"Peak learning rate (AdamW, cosine decay). (default: {TRAINING_DEFAULTS.lr:g})")] = None,
    width: Annotated[int | None, typer.Option(help=f"Hidden width of the score network. (default: {MODEL_DEFAULTS.width})")] = None,
    depth: Annotated[int | None, typer.Option(help=f"Residual blocks of the score network. (default: {MODEL_DEFAULTS.depth})")] = None,
    levels: Annotated[int | None, typer.Option(help=f"Noise levels, geometric scales {MODEL_DEFAULTS.sigma_max:g} -> {CLEAN_SIGMA_MIN:g}, "
                                                    f"-> {CONTAMINATED_SIGMA_MIN:g} when the table may hold anomalies (msma). "
                                                    f"(default: {MODEL_DEFAULTS.levels})")] = None,
    loss: Annotated[str | None, typer.Option(help=f"Categorical loss with gumbel noise: kl or mse. (default: {MODEL_DEFAULTS.loss})")] = None,
    categorical: Annotated[list[str] | None, typer.Option(help="Columns to treat as categorical "
                                                               "(repeat or comma-separate).")] = None,
    continuous: Annotated[list[str] | None, typer.Option(help="Columns to treat as continuous.")] = None,
    ignore: Annotated[list[str] | None, typer.Option(help="Columns to leave out.")] = None,
    id_column: Annotated[str | None, typer.Option(help="Column of row ids (left out of the model, "
                                                       "copied to the scores).")] = None,
    contamination: Annotated[str | None, typer.Option(
        help="Share of anomalous rows in the training table: 'auto' estimates it after the first quarter of "
             "the steps; a number in [0, 0.5) states it. That share of the most anomalous training rows is left "
             f"out of the rest of the fit. (default: {MODEL_DEFAULTS.contamination:g}: every row is used)")] = None,
    contaminated: Annotated[bool, typer.Option(help="The training table may hold anomalies (last month's data, "
                                                    "say): same as --contamination auto.")] = False,
    val_fraction: Annotated[float | None, typer.Option(help="Rows held out for checkpoint selection and "
                                                            f"threshold calibration. (default: {TRAINING_DEFAULTS.val_fraction})")] = None,
    review_quantile: Annotated[float | None, typer.Option(help="Held-out quantile above which a row is "
                                                               f"'review'. (default: {MODEL_DEFAULTS.review_quantile})")] = None,
    fail_quantile: Annotated[float | None, typer.Option(help="Held-out quantile above which a row is "
                                                             f"'fail'. (default: {MODEL_DEFAULTS.fail_quantile})")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from OUT's checkpoint.")] = False,
    seed: SeedOption = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Learn what normal rows look like from a table and write a model bundle.

    Column types are inferred (text, booleans and integers with few values are
    categorical; other numbers continuous) unless given with --categorical,
    --continuous or --ignore. Example:

        segqc tabular fit data.csv --out model/ --id-column patient_id
    """
    from segqc.jobs.tabular import fit_table

    computing(threads, reads_images=False)
    model = {"method": method, "width": width, "depth": depth, "levels": levels, "loss": loss,
             "review_quantile": review_quantile, "fail_quantile": fail_quantile,
             "contamination": contamination_share(contamination, contaminated)}
    training = {"steps": steps, "batch_size": batch_size, "lr": lr, "val_fraction": val_fraction, "seed": seed,
                "device": device}
    with progress_bar("reading", "items") as on_read, training_progress() as on_step:
        detector = fit_table(data, out, config, model, training, split_names(categorical), split_names(continuous),
                             split_names(ignore), id_column, resume, on_step, on_read)
    schema = detector.schema_
    console.print(f"[green]model written to[/] {out}  ({len(schema.categorical)} categorical, "
                  f"{len(schema.continuous)} continuous columns; best step {detector.training_['best_step']}; "
                  f"review > {detector.calibration_.review:.4g}, fail > {detector.calibration_.fail:.4g})",
                  highlight=False)
    if detector.trimming:
        console.print(f"contamination: {detector.trimming}", highlight=False)


def contamination_share(contamination: str | None, contaminated: bool) -> float | str | None:
    """The ``model.contamination`` value of ``--contamination`` / ``--contaminated`` (``None``: not given).

    Raises:
        ConfigError: ``--contamination`` is neither ``auto`` nor a share in ``[0, 0.5)``, or it is a number
            given together with ``--contaminated``.
    """
    if contamination is None:
        return AUTO if contaminated else None
    value = contamination.strip().lower()
    if value == AUTO:
        return AUTO
    try:
        share = float(value)
    except ValueError:
        share = float("nan")
    if not 0 <= share < 0.5:
        raise ConfigError(f"--contamination {contamination!r}: expected 'auto' or a share of the training rows "
                          "in [0, 0.5), e.g. 0.05")
    if contaminated:
        raise ConfigError(f"--contaminated asks for --contamination auto, but --contamination {contamination} "
                          "was given too; give one of them")
    return share


@tabular_app.command("score")
@handle_errors
def tabular_score(
    data: Annotated[Path, typer.Argument(help="Table to score, with the columns the model was fitted on.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model bundle written by 'segqc tabular fit'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV of scores to write: id (or row), score, "
                                                          "rank, verdict, unseen_categories, top_column, top_share, norm_1..L.")],
    device: DeviceOption = None,
    top: Annotated[int, typer.Option(help="Most anomalous rows to show on the terminal.")] = 5,
    threads: ThreadsOption = None,
) -> None:
    """Score every row of a table: higher = more anomalous.

    Writes one row per input row, in input order. Verdicts use the thresholds
    calibrated at fit time (pass / review / fail). Example:

        segqc tabular score new.csv --model model/ --out scores.csv
    """
    from segqc.jobs.tabular import score_table

    computing(threads, reads_images=False)
    if top < 0:
        raise ConfigError(f"--top {top}: expected a number of rows >= 0")
    with progress_bar("reading", "items") as on_read:
        result, trimming = score_table(data, model, out, device, on_read)
    if trimming:
        console.print(f"model fitted with contamination: {trimming}", highlight=False)
    counts = result["verdict"].value_counts()
    console.print(f"[green]{len(result)} rows scored[/] -> {out}: " + ", ".join(
        f"{counts.get(v, 0)} {v}" for v in ("pass", "review", "fail")), highlight=False)
    if top > 0:
        table = Table(title=f"top {min(top, len(result))} most anomalous rows")
        shown = [*result.columns[:5], "top_column"]
        for column in shown:
            table.add_column(str(column))
        for _, row in result.nsmallest(top, "rank").iterrows():
            table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row[shown]])
        console.print(table)
