"""How fast a report of many cases renders and opens: ``render_report`` and page load in headless Chromium.

Builds a report directory of N cases as ``segqc score`` writes it with ground
truth (``scores.csv`` with predicted Dice and two foreground labels, a
``summary.json`` of every ranking computed from it, 75 real gallery panels of
64 x 64 cases, i.e. the top 50 and 25 near the fail line), then measures:

* ``render_report`` wall time (median of 3) and the size of ``report.html``;
* opening it in headless Chromium (``chromium --headless --dump-dom``): the
  wall time of the whole browser process minus that of an empty page (median of
  3 each), and the page's own ``performance.now()`` at its ``load`` event (the
  table's first page drawn, every image decoded), which ``report.html`` writes
  into ``<body data-ready>``.

Usage::

    python benchmarks/report_size.py --cases 10000 --out docs/benchmarks-report.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segqc.report import heatmaps, render_report  # noqa: E402
from segqc.report.summary import summarise_metrics  # noqa: E402

GALLERY = 75
REPEATS = 3


def write_report_dir(root: Path, cases: int, seed: int = 0) -> Path:
    """A report directory of ``cases`` scored cases with ground truth (see the module docstring)."""
    rng = np.random.default_rng(seed)
    dice = np.clip(rng.beta(6, 1.5, cases), 0, 1)
    predicted = np.clip(dice + rng.normal(0, 0.08, cases), 0, 1)
    score = np.exp(rng.normal(1.0, 2.5, cases) - 4 * dice) * 100 - 10
    order = np.argsort(-score, kind="stable")
    rank = np.empty(cases, int)
    rank[order] = np.arange(1, cases + 1)
    table = pd.DataFrame({
        "case_id": [f"patient{i // 40:04d}_slice{i % 40:03d}" for i in range(cases)], "status": "ok",
        "message": "", "score": score, "rank": rank,
        "verdict": np.where(predicted + 0.1 < 0.8, "fail", np.where(predicted - 0.1 < 0.8, "review", "pass")),
        "predicted_dice": predicted, "predicted_dice_low": np.clip(predicted - 0.1, 0, 1),
        "predicted_dice_high": np.clip(predicted + 0.1, 0, 1), "predicted_dice_1": predicted,
        "predicted_dice_2": np.clip(predicted ** 2, 0, 1), "empty_prediction": (dice < 0.05).astype(int),
        "reconstruction_dice": np.clip(dice + rng.normal(0, 0.15, cases), 0, 1),
        "image": [f"/data/images/case{i}.npy" for i in range(cases)],
        "prediction": [f"/data/predictions/case{i}.npy" for i in range(cases)],
        "heatmap": [f"heatmaps/case{i}.png" for i in range(cases)],
        "dice_mean": dice, "dice_1": dice, "dice_2": dice ** 2,
        "msd": (1 - dice) * 8 + rng.exponential(0.5, cases), "hd95": (1 - dice) * 40 + rng.exponential(2, cases),
    })
    near = np.argsort(np.abs(predicted - 0.8), kind="stable")
    shown = list(dict.fromkeys([*order[:50], *[i for i in near if rank[i] > 50][:GALLERY - 50]]))
    table["gallery"], table["gallery_reason"] = "", ""
    report = root / "report"
    (report / "gallery").mkdir(parents=True)
    mask = np.zeros((64, 64), np.int64)
    mask[16:44, 20:48], mask[26:34, 30:38] = 1, 2
    for number, index in enumerate(shown):
        image = rng.random((1, 64, 64))
        (report / "gallery" / f"case{index}.png").write_bytes(heatmaps.gallery_png(
            image, np.roll(mask, number % 9, 0), mask, rng.exponential(1, (64, 64)), 3, np.roll(mask, 1, 1)))
        table.loc[index, ["gallery", "gallery_reason"]] = [f"gallery/case{index}.png",
                                                          "top-k" if rank[index] <= 50 else "near the fail line"]
    table = table.sort_values("rank", kind="stable")
    table.to_csv(report / "scores.csv", index=False)
    counts = table["verdict"].value_counts()
    summary = {"segqc_version": "benchmark", "model": {"path": "/models/m", "id": "benchmark", "labels": [0, 1, 2]},
               "run": {"started": "2026-01-01T00:00:00+00:00", "seconds": 1.0, "cases": cases, "scored": cases,
                       "errors": 0, "skipped_unchanged": 0},
               "thresholds": {"review": 50.0, "fail": 500.0},
               "verdicts": {name: int(counts.get(name, 0)) for name in ("pass", "review", "fail", "error")},
               "verdict_rule": {"rule": "quality", "dice_threshold": 0.8, "coverage": 0.8}, "top_k": 50,
               "ground_truth": True, **summarise_metrics(table, 50, 0.8)}
    (report / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return report


def chromium(page: str, profile: Path) -> tuple[float, str]:
    """Wall time of ``chromium --headless --dump-dom page`` and the DOM it printed."""
    command = [shutil.which("chromium") or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", f"--user-data-dir={profile}", "--dump-dom", page]
    clock = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    return time.perf_counter() - clock, result.stdout


def measure(cases: int, work: Path) -> dict[str, float]:
    """Render and load figures of a report of ``cases`` cases (see the module docstring)."""
    report = write_report_dir(work / str(cases), cases)
    renders = []
    for _ in range(REPEATS):
        clock = time.perf_counter()
        path = render_report(report)
        renders.append(time.perf_counter() - clock)
    blank = work / "blank.html"
    blank.write_text("<!DOCTYPE html><title>blank</title>", encoding="utf-8")
    loads, baselines, ready, rows = [], [], [], 0
    for repeat in range(REPEATS):
        seconds, dom = chromium(path.resolve().as_uri(), work / f"profile-{cases}-{repeat}")
        loads.append(seconds)
        ready.append(float(re.search(r'data-ready="(\d+)"', dom).group(1)) / 1000)
        rows = len(re.findall(r"<tr class=", dom))
        baselines.append(chromium(blank.resolve().as_uri(), work / f"profile-blank-{repeat}")[0])
    return {"cases": cases, "render_s": statistics.median(renders), "html_mb": path.stat().st_size / 1e6,
            "load_s": statistics.median(loads) - statistics.median(baselines),
            "ready_s": statistics.median(ready), "rows_drawn": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-report.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(cases, Path(tmp)) for cases in args.cases]
    version = subprocess.run(["chromium", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    lines = ["# Report size: render and open times", "",
             f"Command: `python {shlex.join(sys.argv)}`  ",
             (f"Date: {datetime.date.today()}; machine: {platform.machine()}, 2 CPU cores; {version} headless; "
              "other jobs may have shared the cores (run under the heavy-job lock)."), "",
             ("Report directory as `segqc score` writes it with ground truth: `scores.csv` with predicted Dice and two "
              f"labels, `summary.json` of every ranking, {GALLERY} real gallery panels (64 x 64 cases). Render: "
              f"`render_report`, median of {REPEATS}. Open: headless Chromium `--dump-dom` wall time minus that of an "
              f"empty page (median of {REPEATS} each); ready: the page's `performance.now()` at its load event (first "
              "table page drawn, images decoded)."), "",
             "| cases | render_report (s) | report.html (MB) | open in Chromium (s) | ready at (s) | table rows drawn |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['cases']:,} | {r['render_s']:.2f} | {r['html_mb']:.1f} | {r['load_s']:.2f} | {r['ready_s']:.2f} "
              f"| {r['rows_drawn']} |" for r in results]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
