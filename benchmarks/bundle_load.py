"""How long loading an image model bundle takes, and how much of it the quality estimator takes.

The quality estimator keeps its fitted trees as arrays (``segqc/quality/forest.py``),
so a load reads them instead of refitting the forest on the teaching set. For
each bundle given, in a fresh process: the wall time of ``ImageQC.load`` (after
the imports), the part spent rebuilding the quality estimator, the teaching-set
rows and the trees' nodes (median of ``--repeats`` loads).

Usage::

    python benchmarks/bundle_load.py MODEL [MODEL ...] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segqc.detectors.image import ImageQC  # noqa: E402
from segqc.quality import estimator  # noqa: E402


def load_times(model: Path, repeats: int) -> dict:
    """Median seconds of a whole load and of the estimator's part, with the estimator's size."""
    rebuild = estimator.QualityEstimator.from_arrays.__func__
    spent: list[float] = []

    def timed(cls: type, arrays: dict) -> estimator.QualityEstimator:
        started = time.perf_counter()
        result = rebuild(cls, arrays)
        spent.append(time.perf_counter() - started)
        return result

    estimator.QualityEstimator.from_arrays = classmethod(timed)
    try:
        totals = []
        for _ in range(repeats):
            started = time.perf_counter()
            qc = ImageQC.load(model, device="cpu")
            totals.append(time.perf_counter() - started)
    finally:
        estimator.QualityEstimator.from_arrays = classmethod(rebuild)
    quality = qc.quality_
    return {"load": statistics.median(totals), "estimator": statistics.median(spent),
            "rows": len(quality.targets_), "nodes": len(quality.trees_.left)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| bundle | load (s) | quality estimator (s) | teaching rows | tree nodes |")
    print("|---|---|---|---|---|")
    for model in args.models:
        result = load_times(model, args.repeats)
        print(f"| {model.parent.name}/{model.name} | {result['load']:.3f} | {result['estimator']:.4f} | {result['rows']} | "
              f"{result['nodes']} |")


if __name__ == "__main__":
    main()
