"""Render a report directory's ``scores.csv`` and ``summary.json`` into a self-contained ``report.html``.

Every image (plots, gallery panels, 2D heat maps) is embedded as a base64 data
URI; the case table travels as JSON in the page and is drawn one page at a
time by a little inline JavaScript (sort, filter, pages), so a report of
10,000 cases opens fast; the page references nothing outside itself. See
``docs/report-format.md``.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, Undefined, select_autoescape
from markupsafe import Markup

from segqc.csvfiles import read_csv
from segqc.errors import InputError
from segqc.jsonable import finite_number
from segqc.outputs import owned_member
from segqc.report.cards import gallery_cards, heat_gradient
from segqc.report.heatmaps import PREDICTION_COLOUR, RECONSTRUCTION_COLOUR, TRUTH_COLOUR
from segqc.report.plots import METRIC_LABELS, METRICS, quality_scatters, scatter_plots, score_histogram, trend_chart
from segqc.report.rankings import read_rankings
from segqc.report.volumes import volume_section

SCORES_FILE = "scores.csv"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
REQUIRED_COLUMNS = ("case_id", "status", "score", "rank", "verdict")
VERDICTS = ("pass", "review", "fail", "error")
METRIC_FORMATS = {"dice_mean": ".3f", "msd": ".2f", "hd95": ".2f"}
PAGE_SIZES = (25, 100, 500, 2000)
"""Rows per page the case table offers (the second is the default)."""


def _environment() -> Environment:
    # select_autoescape() keys on the template's extension, and "report.html.j2"
    # ends in ".j2": enable escaping for it explicitly.
    environment = Environment(loader=PackageLoader("segqc.report", "templates"),
                              autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml", "j2")))
    environment.filters["fmt"] = format_value
    return environment


def format_value(value: Any, spec: str = ".3g") -> str:
    """Format a number for display; ``None``, NaN and missing values become ``"n/a"``.

    Args:
        value: The value (number, string, bool, ``None`` or a Jinja2 undefined).
        spec: Format specification for floats.

    Returns:
        The display text.
    """
    if value is None or isinstance(value, Undefined) or value == "":
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(value, spec) if math.isfinite(value) else "n/a"
    return str(value)


def read_scores(path: Path) -> pd.DataFrame:
    """Read ``scores.csv`` with every column as text (case ids such as ``NA`` or ``007`` stay intact).

    Text cells that segqc escaped for spreadsheets (:mod:`segqc.csvfiles`) are read back as they were.

    Args:
        path: The ``scores.csv`` file.

    Returns:
        The table; empty cells are empty strings.

    Raises:
        InputError: The file is missing, unreadable, not CSV or lacks a required column.
    """
    try:
        table = read_csv(path)
    except FileNotFoundError as error:
        raise InputError(f"{path}: {SCORES_FILE} not found") from error
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"{path}: cannot read {SCORES_FILE} ({error})") from error
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise InputError(f"{path}: {SCORES_FILE} lacks the column(s) {', '.join(missing)}; "
                         f"found {', '.join(map(str, table.columns)) or 'none'}")
    return table


def read_summary(path: Path) -> dict[str, Any]:
    """Read ``summary.json``.

    Args:
        path: The ``summary.json`` file.

    Returns:
        The summary dictionary.

    Raises:
        InputError: The file is missing, unreadable, not JSON or not a JSON object.
    """
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise InputError(f"{path}: {SUMMARY_FILE} not found") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: cannot read {SUMMARY_FILE} ({error})") from error
    if not isinstance(summary, dict):
        raise InputError(f"{path}: {SUMMARY_FILE} must hold a JSON object, found {type(summary).__name__}")
    return summary


def _png_uri(data: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(data).decode('ascii')}"


COLUMN_LABELS = {"case_id": "Case", "predicted_dice": "Predicted Dice [interval]", "verdict": "Verdict",
                 "dice_mean": "True Dice", "hd95": "HD95 (mm)", "msd": "MSD (mm)", "score": "Anomaly score",
                 "rank": "Score rank", "status": "Status", "message": "Message"}


def _cell(row: Mapping[str, str], column: str) -> list[Any]:
    """``[display text, sort key]`` of one table cell (numbers sort as numbers, missing ones as ``None``)."""
    text = row.get(column, "")
    if column == "predicted_dice":
        value = finite_number(text)
        low, high = finite_number(row.get("predicted_dice_low")), finite_number(row.get("predicted_dice_high"))
        if value is None:
            return ["", None]
        interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
        return [f"{value:.2f}{interval}", value]
    if column in ("rank", "score") or column in METRICS:
        value = finite_number(text)
        if value is None:
            return ["", None]
        shown = str(int(value)) if column == "rank" else format(value, METRIC_FORMATS.get(column, ".4g"))
        return [shown, value]
    return [text, text.lower()]


def _columns(table: pd.DataFrame) -> list[dict[str, str]]:
    """The case table's columns: predicted Dice and the verdict lead, the anomaly score follows the metrics."""
    names = ["case_id", "predicted_dice", "verdict", "dice_mean", "hd95", "msd", "score", "rank", "status",
             "message"]
    numeric = {"rank", "score", "predicted_dice", *METRICS}
    return [{"name": name, "label": COLUMN_LABELS[name], "type": "number" if name in numeric else "text"}
            for name in names if name in table.columns or name == "message"]


def _script_json(data: Any) -> Markup:
    """JSON that is safe inside ``<script type="application/json">`` (no ``<``, ``>`` or ``&`` left)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def case_table(table: pd.DataFrame) -> tuple[list[dict[str, str]], Markup]:
    """The case table's columns and its rows as JSON for the page script.

    The rows start sorted by predicted Dice, lowest first, when the table has
    it, else by anomaly-score rank.

    Args:
        table: The ``scores.csv`` table (text values).

    Returns:
        The columns (``name``, ``label``, ``type``) and ``{"columns", "rows", "sort", "pageSizes"}`` as JSON;
        each row is ``{"verdict", "empty", "cells": [[text, sort key], ...]}``.
    """
    columns = _columns(table)
    rows = [{"verdict": row["verdict"], "empty": finite_number(row.get("empty_prediction", "")) == 1,
             "cells": [_cell(row, column["name"]) for column in columns]} for row in table.to_dict("records")]
    lead = "predicted_dice" if "predicted_dice" in table.columns else "rank"
    names = [column["name"] for column in columns]
    data = {"columns": columns, "rows": rows, "sort": {"column": names.index(lead), "ascending": True},
            "pageSizes": PAGE_SIZES}
    return columns, _script_json(data)


def _verdict_counts(summary: Mapping[str, Any], table: pd.DataFrame) -> dict[str, int]:
    counts = summary.get("verdicts")
    if isinstance(counts, dict):
        return {name: int(finite_number(counts.get(name, 0)) or 0) for name in VERDICTS}
    found = table["verdict"].value_counts()
    return {name: int(found.get(name, 0)) for name in VERDICTS}


def _trend_runs(summary: dict[str, Any], history_runs: Sequence[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    """Earlier runs plus this one, unless this one is already among them."""
    runs = list(history_runs or [])

    def key(run: Mapping[str, Any]) -> tuple[Any, Any]:
        return (run.get("run") or {}).get("started"), (run.get("model") or {}).get("id")

    if key(summary) not in {key(run) for run in runs}:
        runs.append(summary)
    return runs


def _int_or_none(value: Any) -> int | None:
    number = finite_number(value)
    return None if number is None else int(number)


def ranking_rows(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The rankings card: one row per ranking (headline first) with its failure detection and correlations.

    Args:
        summary: The parsed ``summary.json`` (any segqc version).

    Returns:
        ``rows`` (``name``, ``label``, ``headline``, ``detection``, ``correlations``
        (``{metric: stats}``) and ``own``, the correlation with its own structure's Dice), ``metrics`` (the correlated metrics present, with labels),
        ``structure`` (whether a per-structure ranking has its own-structure Dice),
        ``threshold`` and ``failures`` of the headline ranking.
    """
    figures = read_rankings(summary)
    names = sorted(figures.labels, key=lambda name: name != figures.headline)
    rows = []
    for name in names:
        correlated = figures.correlations.get(name, {})
        own = next((stats for metric, stats in correlated.items() if metric.startswith("dice_")
                    and metric != "dice_mean"), None)
        rows.append({"name": name, "label": figures.labels[name], "headline": name == figures.headline,
                     "detection": figures.failure_detection.get(name, {}), "correlations": correlated, "own": own})
    present = {metric for row in rows for metric in row["correlations"]}
    headline = figures.failure_detection.get(figures.headline, {})
    return {"rows": rows if figures else [],
            "metrics": [{"name": metric, "label": label} for metric, label in
                        (("dice_mean", "Dice"), ("hd95", "HD95"), ("msd", "MSD")) if metric in present],
            "structure": any(row["own"] for row in rows),
            "threshold": headline.get("dice_threshold"), "failures": headline.get("failures")}


def _plots(table: pd.DataFrame, summary: Mapping[str, Any], rule: Mapping[str, Any], thresholds: Mapping[str, Any],
           top_k: int | None, history_runs: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """Every figure of the report as data URIs (none without a scored case, no trend with under two runs)."""
    plots: dict[str, Any] = {"histogram": None, "quality": [], "scatter": [], "trend": None}
    if (table["status"] == "ok").any():
        figures = read_rankings(summary)
        plots["histogram"] = _png_uri(score_histogram(table, thresholds))
        plots["quality"] = [{"metric": metric, "label": METRIC_LABELS[metric], "uri": _png_uri(data)}
                            for metric, data in quality_scatters(table, finite_number(rule.get("dice_threshold")))
                            .items()]
        plots["scatter"] = [{"metric": metric, "label": METRIC_LABELS[metric], "uri": _png_uri(data)}
                            for metric, data in scatter_plots(table, top_k, figures.correlations.get("score"),
                                                              thresholds).items()]
    trend = trend_chart(_trend_runs(dict(summary), history_runs)) if history_runs else None
    plots["trend"] = _png_uri(trend) if trend is not None else None
    return plots


def render_report(report_dir: Path, history_runs: list[dict] | None = None) -> Path:
    """Write ``report.html`` into a report directory.

    Args:
        report_dir: A directory holding ``scores.csv`` and ``summary.json``
            (and the ``gallery/`` and ``heatmaps/`` files they reference).
        history_runs: ``summary.json`` dictionaries of earlier runs for the
            trend chart; the current run is added unless already present (same
            ``run.started`` and ``model.id``). No chart with fewer than two runs.

    Returns:
        The path of ``report.html``.

    Raises:
        InputError: ``scores.csv`` or ``summary.json`` is missing or invalid.
    """
    report_dir = Path(report_dir)
    table = read_scores(report_dir / SCORES_FILE)
    summary = read_summary(report_dir / SUMMARY_FILE)
    rule = summary.get("verdict_rule") if isinstance(summary.get("verdict_rule"), dict) else {}
    # Score thresholds are drawn only when they gave the verdicts.
    thresholds = (summary.get("thresholds") if isinstance(summary.get("thresholds"), dict)
                  and rule.get("rule") != "quality" else {})
    top_k = _int_or_none(summary.get("top_k"))
    columns, table_data = case_table(table)
    errors = [{"case_id": row["case_id"], "message": row.get("message", "")}
              for row in table.to_dict("records") if row["status"] != "ok"]
    html = _environment().get_template("report.html.j2").render(
        summary=summary,
        model=summary.get("model") if isinstance(summary.get("model"), dict) else {},
        run=summary.get("run") if isinstance(summary.get("run"), dict) else {},
        thresholds=thresholds,
        rule=rule,
        verdicts=_verdict_counts(summary, table),
        cases=len(table),
        scored=int((table["status"] == "ok").sum()),
        top_k=top_k,
        errors=errors,
        rankings=ranking_rows(summary),
        plots=_plots(table, summary, rule, thresholds, top_k, history_runs),
        gallery=gallery_cards(table, report_dir, top_k),
        colours={"prediction": PREDICTION_COLOUR, "reconstruction": RECONSTRUCTION_COLOUR, "truth": TRUTH_COLOUR},
        heat_gradient=heat_gradient(),
        columns=columns,
        volumes=volume_section(report_dir, table),
        table_data=table_data,
    )
    with owned_member(report_dir, REPORT_FILE) as temporary:  # keeps the report's manifest true
        temporary.write_text(html, encoding="utf-8")
    return report_dir / REPORT_FILE
