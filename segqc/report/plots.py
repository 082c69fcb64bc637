"""Report figures rendered with matplotlib's Agg canvas and returned as PNG bytes.

Figures are built with :class:`matplotlib.figure.Figure` on an explicit
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`, so no GUI backend is
ever touched and pyplot's global state is left alone.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.scale import SymmetricalLogTransform
from matplotlib.ticker import FuncFormatter, Locator, MaxNLocator

from segqc.jsonable import finite_number

# Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
COLOURS = {
    "pass": "#0072B2",
    "review": "#E69F00",
    "fail": "#D55E00",
    "other": "#999999",
    "accent": "#009E73",
}
METRICS = ("dice_mean", "msd", "hd95")
METRIC_LABELS = {"dice_mean": "Mean Dice", "msd": "Mean surface distance (mm)", "hd95": "HD95 (mm)"}
QUANTILES = ("p25", "median", "p75", "p95")
DPI = 110


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def _style(axes: Any) -> None:
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(True, color="#e5e7eb", linewidth=0.8)
    axes.set_axisbelow(True)


def _scored(table: pd.DataFrame) -> pd.DataFrame:
    """Rows with status ``ok`` and a finite score, as floats."""
    frame = table
    if "status" in frame.columns:
        frame = frame[frame["status"].astype(str) == "ok"]
    scores = pd.to_numeric(frame["score"], errors="coerce") if "score" in frame.columns else pd.Series(dtype=float)
    return frame.assign(score=scores)[np.isfinite(scores.to_numpy(dtype=float))]


SYMLOG = SymmetricalLogTransform(base=10, linthresh=1.0, linscale=1.0)
"""The symmetric log axis of scores and spread-out distances: linear within ±1, logarithmic beyond."""


def _tick_label(value: float, _position: Any = None) -> str:
    """``−10``, ``0``, ``500``, ``2000``; from 10^4 on as powers of ten (``10^4``, ``2×10^5``)."""
    if abs(value) < 1e4:
        return f"{value:g}".replace("-", "\u2212")
    exponent = math.floor(math.log10(abs(value)) + 1e-9)
    mantissa = abs(value) / 10**exponent
    power = f"10^{{{exponent}}}" if math.isclose(mantissa, 1) else f"{mantissa:g}\\times10^{{{exponent}}}"
    return f"{'−' if value < 0 else ''}${power}$"


class SymlogTicks(Locator):
    """Ticks of a :data:`SYMLOG` axis: 0 and ±m·10^k (|x| >= 1) inside the view.

    ``m`` is 1 when that gives four ticks or more, else 1, 2 and 5, else 1 to 9;
    a view too narrow for any of them gets ordinary linear ticks.
    """

    def __call__(self) -> list[float]:
        low, high = sorted(self.axis.get_view_interval())
        return self.tick_values(low, high)

    def tick_values(self, vmin: float, vmax: float) -> list[float]:
        low, high = sorted((vmin, vmax))
        exponents = range(math.floor(math.log10(max(abs(low), abs(high), 1.0))) + 1)
        inside: list[float] = []
        for mantissas in ((1,), (1, 2, 5), tuple(range(1, 10))):
            magnitudes = [m * 10.0**k for k in exponents for m in mantissas]
            inside = [t for t in sorted({0.0, *magnitudes, *(-x for x in magnitudes)}) if low <= t <= high]
            if len(inside) >= 4:
                return inside
        return inside if len(inside) >= 2 else list(MaxNLocator(4).tick_values(low, high))


def _symlog(axes: Any, axis: str) -> None:
    """Put ``axis`` (``x`` or ``y``) of ``axes`` on :data:`SYMLOG` with :class:`SymlogTicks`."""
    (axes.set_xscale if axis == "x" else axes.set_yscale)("symlog", linthresh=SYMLOG.linthresh, base=SYMLOG.base,
                                                          linscale=SYMLOG.linscale)
    target = axes.xaxis if axis == "x" else axes.yaxis
    target.set_major_locator(SymlogTicks())
    target.set_major_formatter(FuncFormatter(_tick_label))


def _score_scale(axes: Any, axis: str) -> None:
    """The anomaly score's axis, always symmetric log: scores run from about -10 to 1e5."""
    _symlog(axes, axis)


def _spans_magnitudes(values: np.ndarray) -> bool:
    """Whether finite ``values`` span orders of magnitude (range over 50 interquartile ranges)."""
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return False
    low, high = np.percentile(finite, [25, 75])
    return bool(np.ptp(finite) > 50 * max(high - low, 1e-9))


def _metric_scale(axes: Any, metric: str, values: np.ndarray) -> None:
    """A surface distance that spans orders of magnitude goes on a symmetric log x axis (Dice stays linear)."""
    if metric != "dice_mean" and _spans_magnitudes(values):
        _symlog(axes, "x")


def _threshold_lines(axes: Any, thresholds: Mapping[str, Any] | None, vertical: bool) -> None:
    for name in ("review", "fail"):
        value = finite_number((thresholds or {}).get(name))
        if value is None:
            continue
        draw = axes.axvline if vertical else axes.axhline
        draw(value, color=COLOURS[name], linestyle="--", linewidth=1.5, label=f"{name} threshold ({value:.3g})")


def _correlation_title(label: str, stats: Mapping[str, Any] | None) -> str:
    if not stats:
        return label
    parts = []
    for key, name in (("pearson", "Pearson r"), ("spearman", "Spearman ρ")):
        value = finite_number(stats.get(key))
        parts.append(f"{name} = {value:.2f}" if value is not None else f"{name} = n/a")
    return f"{label}\n" + ", ".join(parts)


def scatter_plots(table: pd.DataFrame, top_k: int | None,
                  correlations: Mapping[str, Mapping[str, Any]] | None = None,
                  thresholds: Mapping[str, Any] | None = None) -> dict[str, bytes]:
    """Score against each ground-truth metric present in the table, the score on a symmetric log axis.

    Args:
        table: The ``scores.csv`` table.
        top_k: Cases with ``rank <= top_k`` are highlighted; ``None`` highlights none.
        correlations: ``summary.json``'s ``correlations``; its Pearson and
            Spearman coefficients go into each title when given.
        thresholds: ``{"review": x, "fail": y}``; drawn as horizontal lines when given.

    Returns:
        PNG bytes per metric name (``dice_mean``, ``msd``, ``hd95``), for each
        metric column with at least one finite value among the scored cases.
    """
    scored = _scored(table)
    ranks = pd.to_numeric(scored["rank"], errors="coerce") if "rank" in scored.columns else None
    plots: dict[str, bytes] = {}
    for metric in METRICS:
        if metric not in scored.columns:
            continue
        values = pd.to_numeric(scored[metric], errors="coerce").to_numpy(dtype=float)
        finite = np.isfinite(values)
        if not finite.any():
            continue
        top = np.zeros(len(scored), dtype=bool)
        if top_k is not None and ranks is not None:
            top = (ranks <= top_k).to_numpy()
        score = scored["score"].to_numpy(dtype=float)
        figure = _new_figure(4.4, 4.0)
        axes = figure.add_subplot()
        _style(axes)
        rest = finite & ~top
        axes.scatter(values[rest], score[rest], s=18, color=COLOURS["pass"], alpha=0.6, edgecolors="none",
                     label="other cases")
        if (finite & top).any():
            axes.scatter(values[finite & top], score[finite & top], s=30, color=COLOURS["fail"], marker="D",
                         edgecolors="white", linewidths=0.5, label=f"top {top_k}")
        _threshold_lines(axes, thresholds, vertical=False)
        _score_scale(axes, "y")
        _metric_scale(axes, metric, values)
        axes.set_xlabel(METRIC_LABELS[metric])
        axes.set_ylabel("anomaly score (symmetric log)")
        axes.set_title(_correlation_title(METRIC_LABELS[metric], (correlations or {}).get(metric)), fontsize=10)
        figure.legend(loc="outside lower center", ncols=2, fontsize=7, frameon=False)
        plots[metric] = _png(figure)
    return plots


def _unavailable(scored: pd.DataFrame, metric: str) -> int:
    """Scored cases without a value of ``metric`` (a surface distance with exactly one empty mask)."""
    return int((~np.isfinite(pd.to_numeric(scored[metric], errors="coerce").to_numpy(dtype=float))).sum())


def quality_scatters(table: pd.DataFrame, dice_threshold: float | None) -> dict[str, bytes]:
    """Predicted Dice against each ground-truth metric, coloured by verdict.

    Against true Dice with its interval, the identity line and the failure Dice
    on both axes; against HD95 and MSD with the failure Dice as a horizontal line.

    Args:
        table: The ``scores.csv`` table (needs ``predicted_dice``, its interval and the metric columns).
        dice_threshold: The failure Dice, or ``None``.

    Returns:
        PNG bytes per metric name (``dice_mean``, ``hd95``, ``msd``) present in
        the table with a finite value; empty without ``predicted_dice``.
    """
    scored = _scored(table)
    if "predicted_dice" not in scored.columns:
        return {}
    predicted = pd.to_numeric(scored["predicted_dice"], errors="coerce").to_numpy(dtype=float)
    low = pd.to_numeric(scored["predicted_dice_low"], errors="coerce").to_numpy(dtype=float)
    high = pd.to_numeric(scored["predicted_dice_high"], errors="coerce").to_numpy(dtype=float)
    verdicts = scored["verdict"].astype(str).to_numpy()
    plots: dict[str, bytes] = {}
    for metric in ("dice_mean", "hd95", "msd"):
        if metric not in scored.columns:
            continue
        truth = pd.to_numeric(scored[metric], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(truth).any():
            continue
        figure = _new_figure(4.4, 4.2)
        axes = figure.add_subplot()
        _style(axes)
        for name in ("pass", "review", "fail"):
            keep = (verdicts == name) & np.isfinite(truth) & np.isfinite(predicted)
            if keep.any():
                # an interval that does not hold its estimate (older scores.csv) is drawn from the estimate on
                error = (np.clip([predicted[keep] - low[keep], high[keep] - predicted[keep]], 0, None)
                         if metric == "dice_mean" else None)
                axes.errorbar(truth[keep], predicted[keep], yerr=error, fmt="o", ms=3.5, color=COLOURS[name],
                              ecolor=COLOURS[name], elinewidth=0.6, alpha=0.7, label=name)
        title = f"predicted Dice vs {METRIC_LABELS[metric]}"
        if metric == "dice_mean":
            axes.plot([0, 1], [0, 1], color="#888", linewidth=0.8, linestyle=":")
            if dice_threshold is not None:
                axes.axvline(dice_threshold, color="#888", linewidth=0.8, linestyle="--")
            axes.set_xlim(-0.02, 1.02)
            title = f"predicted vs true Dice (MAE {np.nanmean(np.abs(predicted - truth)):.3f})"
        else:
            _metric_scale(axes, metric, truth)
            missing = _unavailable(scored, metric)
            title += f"\n({missing} case(s) with one empty mask not shown)" if missing else ""
        if dice_threshold is not None:
            axes.axhline(dice_threshold, color="#888", linewidth=0.8, linestyle="--")
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("true Dice" if metric == "dice_mean" else METRIC_LABELS[metric])
        axes.set_ylabel("predicted Dice" + (" [interval]" if metric == "dice_mean" else ""))
        axes.set_ylim(-0.02, 1.02)
        figure.legend(loc="outside lower center", ncols=3, fontsize=7, frameon=False)
        plots[metric] = _png(figure)
    return plots


def score_histogram(table: pd.DataFrame, thresholds: Mapping[str, Any] | None) -> bytes:
    """Histogram of the scores on a symmetric log axis, stacked by verdict, with the threshold lines.

    Args:
        table: The ``scores.csv`` table.
        thresholds: ``{"review": x, "fail": y}``; missing or null values draw no line.

    Returns:
        PNG bytes. With no scored case the figure says so instead of plotting bars.
    """
    scored = _scored(table)
    figure = _new_figure(10.5, 3.4)
    axes = figure.add_subplot()
    _style(axes)
    axes.set_xlabel("anomaly score (higher = more anomalous; symmetric log axis)")
    axes.set_ylabel("cases")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if scored.empty:
        axes.text(0.5, 0.5, "no scored cases", ha="center", va="center", transform=axes.transAxes, color="#555")
        return _png(figure)
    scores = scored["score"].to_numpy(dtype=float)
    count = min(40, max(8, int(math.sqrt(len(scores))) * 2))
    low, high = SYMLOG.transform(np.array([scores.min(), scores.max()]))  # bins of equal width on the axis
    bins = (SYMLOG.inverted().transform(np.linspace(low, high, count + 1)) if high > low
            else np.histogram_bin_edges(scores, count))
    _score_scale(axes, "x")
    verdicts = scored["verdict"].astype(str) if "verdict" in scored.columns else pd.Series("pass", index=scored.index)
    groups, labels, colours = [], [], []
    for name in ("pass", "review", "fail"):
        mask = (verdicts == name).to_numpy()
        if mask.any():
            groups.append(scores[mask])
            labels.append(name)
            colours.append(COLOURS[name])
    others = ~verdicts.isin(["pass", "review", "fail"]).to_numpy()
    if others.any():
        groups.append(scores[others])
        labels.append("other")
        colours.append(COLOURS["other"])
    axes.hist(groups, bins=bins, stacked=True, color=colours, label=labels, edgecolor="white", linewidth=0.5)
    _threshold_lines(axes, thresholds, vertical=True)
    figure.legend(loc="outside right upper", fontsize=8, frameon=False)
    return _png(figure)


def _run_point(run: Mapping[str, Any]) -> tuple[datetime, dict[str, float | None], dict[str, float]] | None:
    started = (run.get("run") or {}).get("started")
    try:
        when = datetime.fromisoformat(str(started))
    except ValueError:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    quantiles = run.get("score_quantiles") or {}
    verdicts = run.get("verdicts") or {}
    return (when, {name: finite_number(quantiles.get(name)) for name in QUANTILES},
            {name: finite_number(verdicts.get(name)) or 0.0 for name in ("review", "fail")})


def trend_chart(runs: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Score quantiles and review/fail counts over the run start times.

    Args:
        runs: ``summary.json`` dictionaries; each needs ``run.started`` (ISO 8601,
            times with an offset are converted to UTC) and uses
            ``score_quantiles`` and ``verdicts``. Runs without a readable start
            time are left out.

    Returns:
        PNG bytes, or ``None`` when fewer than two runs have a start time.
    """
    points = sorted((point for point in map(_run_point, runs) if point is not None), key=lambda point: point[0])
    if len(points) < 2:
        return None
    times = [point[0] for point in points]
    figure = _new_figure(10.5, 4.8)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    for axes in (top, bottom):
        _style(axes)
    styles = {"p25": ("#56B4E9", ":"), "median": (COLOURS["pass"], "-"), "p75": ("#56B4E9", "--"),
              "p95": (COLOURS["fail"], "-")}
    for name in QUANTILES:
        values = [np.nan if point[1][name] is None else point[1][name] for point in points]
        colour, line = styles[name]
        top.plot(times, values, marker="o", markersize=4, color=colour, linestyle=line, label=name)
    _score_scale(top, "y")
    top.set_ylabel("anomaly score")
    top.set_title("Score quantiles per run", fontsize=10)
    top.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for name in ("review", "fail"):
        bottom.plot(times, [point[2][name] for point in points], marker="s", markersize=4, color=COLOURS[name],
                    label=name)
    bottom.set_ylabel("cases")
    bottom.set_ylim(bottom=0)
    bottom.set_title("Review and fail counts per run", fontsize=10)
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    locator = mdates.AutoDateLocator()
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    return _png(figure)
