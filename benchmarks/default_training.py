"""`segqc train` exactly as a new user runs it: no --config, on 300 2D 96 x 96 pairs.

Writes 300 phantom training pairs and 200 phantom predictions (40 % failed, graded
modes) at 96 x 96 as PNG files, times ``segqc train --images D --masks D --out M``
(no other option: segqc picks its preset from the data and the device), then runs
``segqc score`` with ground truth on the predictions and reports the training wall
time, the preset chosen, and how well the model separates failed predictions
(AUROC for Dice < 0.8 of the anomaly score and of ``1 - predicted Dice``), the
predicted-Dice MAE and the verdict mistakes. ``--steps N ...`` adds one run per
step count (``segqc train ... --steps N``, everything else as bare), to show what
a shorter training costs.

Usage::

    python benchmarks/default_training.py [--steps 600 750] [--out docs/benchmarks-default-training.md]

Run it alone on the machine: anything else running changes the time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segqc.synthetic import phantoms  # noqa: E402


def segqc(*arguments: str) -> tuple[float, str]:
    """Run the CLI; its wall time and stderr."""
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "segqc", *arguments], capture_output=True, text=True)
    if completed.returncode:
        raise SystemExit(f"segqc {arguments[0]} failed: {completed.stderr[-2000:]}")
    return time.perf_counter() - started, completed.stderr


def train_and_score(work: Path, steps: int | None) -> dict[str, str]:
    """``segqc train`` on ``work/train`` (``--steps`` when given), ``segqc score`` of ``work/test``; the figures."""
    model, report = work / f"model-{steps}", work / f"report-{steps}"
    seconds, trained = segqc("train", "--images", str(work / "train/images"), "--masks", str(work / "train/masks"),
                             "--out", str(model), *(["--steps", str(steps)] if steps is not None else []))
    scoring_seconds, _ = segqc("score", str(work / "test/predictions"), "--images", str(work / "test/images"),
                               "--model", str(model), "--out", str(report), "--ground-truth", str(work / "test/masks"))
    summary = json.loads((report / "summary.json").read_text())
    chosen = re.search(r"trained with (.*?), (\d+) steps", " ".join(trained.split()))
    quality, verdicts = summary.get("predicted_dice") or {}, summary.get("verdict_quality") or {}
    detection = summary["failure_detection"]  # keyed by ranking (docs/report-format.md)
    return {
        "preset chosen": chosen.group(1) if chosen else "see stderr",
        "training steps": chosen.group(2) if chosen else "?",
        "training wall time (reading, training, density, quality estimator, saving)": f"{seconds:.0f} s",
        "scoring wall time, 200 cases with ground truth and report": f"{scoring_seconds:.0f} s",
        "AUROC of the anomaly score (Dice < 0.8)": f"{detection['score']['auroc']:.3f}",
        "AUROC of 1 - predicted Dice": f"{(detection.get('predicted_dice') or {}).get('auroc', float('nan')):.3f}",
        "predicted Dice MAE": f"{quality.get('mae', float('nan')):.3f}",
        "false alarms (Dice >= 0.9 not pass)": f"{verdicts.get('false_alarms', float('nan')):.3f}",
        "misses (Dice < 0.8 pass)": f"{verdicts.get('misses', float('nan')):.3f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-default-training.md")
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--steps", type=int, nargs="*", default=[],
                        help="further runs with `segqc train --steps N`, beside the bare one")
    args = parser.parse_args()
    size = (args.size, args.size)
    runs = [None, *args.steps]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        phantoms.write_cases(phantoms.make_training_set(args.pairs, size, seed=0), work / "train", fmt="png")
        phantoms.write_cases(phantoms.make_prediction_set(200, size, seed=100, failure_fraction=0.4), work / "test",
                             fmt="png")
        figures = [train_and_score(work, steps) for steps in runs]
    names = ["bare" if steps is None else f"`--steps {steps}`" for steps in runs]
    steps_option = f" --steps {' '.join(map(str, args.steps))}" if args.steps else ""
    lines = [
        "# `segqc train` without a config",
        "",
        f"Command: `python benchmarks/default_training.py --pairs {args.pairs} --size {args.size}{steps_option}`  ",
        f"Date: {datetime.date.today()}; machine: {platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}; nothing else running.",
        "",
        f"`segqc train --images D --masks D --out M` on {args.pairs} phantom pairs of {args.size} x {args.size} "
        "(PNG), then `segqc score` with ground truth on 200 phantom predictions (40 % failed)"
        + ("; the further columns add `--steps N` to `segqc train`." if args.steps else "."),
        "",
        "| figure | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *(f"| {figure} | " + " | ".join(run[figure] for run in figures) + " |" for figure in figures[0]),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
