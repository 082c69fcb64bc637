"""Render a report directory's ``scores.csv`` and ``summary.json`` into a self-contained ``report.html``.

Every image (plots, gallery panels, 2D heat maps) is embedded as a base64 data
URI; the page has inline CSS and a little inline JavaScript (sortable, filterable
case table) and references nothing outside itself. See ``docs/report-format.md``.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, Undefined, select_autoescape
from PIL import Image

from segqc.csvfiles import read_csv
from segqc.errors import InputError
from segqc.outputs import owned_member
from segqc.report.plots import METRIC_LABELS, METRICS, quality_scatter, scatter_plots, score_histogram, trend_chart
from segqc.report.volumes import volume_section

SCORES_FILE = "scores.csv"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
REQUIRED_COLUMNS = ("case_id", "status", "score", "rank", "verdict")
VERDICTS = ("pass", "review", "fail", "error")
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}
CORRELATION_FIELDS = (("pearson", "Pearson"), ("spearman", "Spearman"), ("pearson_top_k", "Pearson top-K"),
                      ("spearman_top_k", "Spearman top-K"), ("n", "n"), ("n_top_k", "n top-K"))
FAILURE_FIELDS = (("dice_threshold", "Dice threshold"), ("failures", "Failures"), ("auroc", "AUROC"),
                  ("average_precision", "Average precision"), ("aurc", "AURC"))
METRIC_FORMATS = {"dice_mean": ".3f", "msd": ".2f", "hd95": ".2f"}


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


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


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


def image_data_uri(report_dir: Path, relative: str) -> str | None:
    """Embed a PNG or JPEG file as a data URI.

    Args:
        report_dir: The report directory that ``relative`` is relative to.
        relative: The path from the table; empty for none.

    Returns:
        ``data:image/...;base64,...``, or ``None`` when the path is empty or the
        file is missing, unreadable or not a valid PNG/JPEG image.
    """
    if not relative:
        return None
    try:
        data = (report_dir / relative).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            kind = IMAGE_TYPES.get(image.format or "")
            image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    if kind is None:
        return None
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def _png_uri(data: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(data).decode('ascii')}"


def _cell(row: Mapping[str, str], column: str) -> dict[str, str]:
    """Display text and sort key of one table cell."""
    text = row.get(column, "")
    if column == "predicted_dice":
        value = _number(text)
        low, high = _number(row.get("predicted_dice_low", "")), _number(row.get("predicted_dice_high", ""))
        if value is None:
            return {"text": "", "sort": ""}
        interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
        return {"text": f"{value:.2f}{interval}", "sort": repr(value)}
    if column in ("rank", "score") or column in METRICS:
        value = _number(text)
        if value is None:
            return {"text": "", "sort": ""}
        spec = "d" if column == "rank" else METRIC_FORMATS.get(column, ".4g")
        shown = format(int(value), spec) if column == "rank" else format(value, spec)
        return {"text": shown, "sort": repr(value)}
    return {"text": text, "sort": text.lower()}


def _columns(table: pd.DataFrame) -> list[dict[str, str]]:
    names = ["case_id", "rank", "score"] + (["predicted_dice"] if "predicted_dice" in table.columns else [])
    names += ["verdict", "status"] + [metric for metric in METRICS if metric in table.columns]
    names.append("message")
    labels = {"case_id": "Case", "rank": "Rank", "score": "Score", "predicted_dice": "Predicted Dice [interval]",
              "verdict": "Verdict", "status": "Status", "dice_mean": "Mean Dice", "msd": "MSD (mm)",
              "hd95": "HD95 (mm)", "message": "Message"}
    numeric = {"rank", "score", "predicted_dice", *METRICS}
    return [{"name": name, "label": labels[name], "type": "number" if name in numeric else "text"}
            for name in names]


def _gallery(table: pd.DataFrame, report_dir: Path, top_k: int | None) -> list[dict[str, Any]]:
    """The gallery cards (top-K and cases near the fail line), most anomalous first, with their embedded images."""
    cards = []
    for row in table.to_dict("records"):
        rank = _number(row["rank"])
        if row["status"] != "ok" or rank is None:
            continue
        in_top = top_k is not None and rank <= top_k
        if not (in_top or row.get("gallery", "")):
            continue
        heatmap = row.get("heatmap", "")
        is_volume = heatmap.lower().endswith((".nii", ".nii.gz"))
        cards.append({
            "case_id": row["case_id"],
            "rank": int(rank),
            "score": _cell(row, "score")["text"],
            "predicted_dice": _cell(row, "predicted_dice")["text"],
            "reason": row.get("gallery_reason", "") or ("top-k" if in_top else ""),
            "verdict": row["verdict"],
            "panel": image_data_uri(report_dir, row.get("gallery", "")),
            "heatmap": None if is_volume else image_data_uri(report_dir, heatmap),
            "heatmap_file": heatmap if is_volume else "",
        })
    return sorted(cards, key=lambda card: card["rank"])


def _verdict_counts(summary: Mapping[str, Any], table: pd.DataFrame) -> dict[str, int]:
    counts = summary.get("verdicts")
    if isinstance(counts, dict):
        return {name: int(_number(str(counts.get(name, 0))) or 0) for name in VERDICTS}
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
    number = _number(str(value)) if value is not None else None
    return None if number is None else int(number)


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
    correlations = summary.get("correlations") if isinstance(summary.get("correlations"), dict) else None
    failure_detection = summary.get("failure_detection")
    scored = int((table["status"] == "ok").sum())

    plots: dict[str, Any] = {"histogram": None, "scatter": [], "trend": None, "quality": None}
    if scored:
        plots["histogram"] = _png_uri(score_histogram(table, thresholds))
        quality = quality_scatter(table, _number(str(rule.get("dice_threshold"))))
        plots["quality"] = _png_uri(quality) if quality is not None else None
        plots["scatter"] = [{"metric": metric, "label": METRIC_LABELS[metric], "uri": _png_uri(data)}
                            for metric, data in scatter_plots(table, top_k, correlations, thresholds).items()]
    trend = trend_chart(_trend_runs(summary, history_runs)) if history_runs else None
    plots["trend"] = _png_uri(trend) if trend is not None else None

    columns = _columns(table)
    rows = [{"verdict": row["verdict"], "cells": [_cell(row, column["name"]) for column in columns]}
            for row in table.to_dict("records")]
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
        scored=scored,
        top_k=top_k,
        errors=errors,
        correlations=[{"label": METRIC_LABELS.get(metric, metric),
                       "values": [(label, (stats or {}).get(key)) for key, label in CORRELATION_FIELDS]}
                      for metric, stats in (correlations or {}).items()],
        correlation_headers=[label for _, label in CORRELATION_FIELDS],
        failure_detection=[(label, failure_detection.get(key)) for key, label in FAILURE_FIELDS]
        if isinstance(failure_detection, dict) else [],
        plots=plots,
        gallery=_gallery(table, report_dir, top_k),
        columns=columns,
        rows=rows,
        volumes=volume_section(report_dir, table),
    )
    with owned_member(report_dir, REPORT_FILE) as temporary:  # keeps the report's manifest true
        temporary.write_text(html, encoding="utf-8")
    return report_dir / REPORT_FILE
