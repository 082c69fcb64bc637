"""Scoring throughput of ``segqc score`` on phantom files (the nightly job, end to end).

For each config and case count, a fresh subprocess scores a folder of predicted
masks with ground truth (reading, preprocessing, scoring at every noise level,
Dice / MSD / HD95, heat maps, gallery, HTML report) and reports wall time,
cases/s and peak resident memory. The model is trained for a few steps only:
throughput does not depend on how well it is trained.

Usage::

    python benchmarks/scoring.py --out docs/benchmarks-scoring.md [--counts 10,100,1000] [--counts-3d 10,100]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segqc import phantoms  # noqa: E402
from segqc.config import ImageModelConfig, TrainingConfig, from_mapping  # noqa: E402
from segqc.data.preprocess import PreprocessConfig  # noqa: E402
from segqc.detectors.image import ImageQC  # noqa: E402
from segqc.scoring import ScoreOptions, score_folder  # noqa: E402

FORMATS = {2: "png", 3: "nii.gz"}


def make_model(config: str, work: Path) -> Path:
    """A bundle of the preset ``segqc/presets/<config>.yaml`` trained for 20 steps on 40 phantoms."""
    data = yaml.safe_load((ROOT / "segqc" / "presets" / f"{config}.yaml").read_text())
    preprocess = from_mapping(PreprocessConfig, data["data"], "data")
    model = from_mapping(ImageModelConfig, data["model"], "model")
    training = from_mapping(TrainingConfig, {**data["training"], "steps": 20, "device": "cpu"}, "training")
    folder = work / f"train-{config}"
    phantoms.write_cases(phantoms.make_training_set(40, tuple(preprocess.spatial_size), seed=0), folder,
                         fmt=FORMATS[preprocess.spatial_dims])
    qc = ImageQC(model, training, preprocess=preprocess).fit_folders(folder / "images", folder / "masks")
    return qc.save(work / f"model-{config}")


def run_one(model: Path, count: int, work: Path) -> dict:
    """Score ``count`` phantom predictions (runs in this process; call it in a subprocess)."""
    qc = ImageQC.load(model, device="cpu")
    folder = work / f"cases-{model.name}-{count}"
    size = tuple(qc.preprocess.spatial_size)
    phantoms.write_cases(phantoms.make_prediction_set(count, size, seed=1), folder,
                         fmt=FORMATS[qc.preprocess.spatial_dims])
    started = time.perf_counter()
    run = score_folder(qc, folder / "predictions", folder / "images", work / f"report-{model.name}-{count}",
                       ScoreOptions(ground_truth=folder / "masks"))
    seconds = time.perf_counter() - started
    return {"model": model.name.removeprefix("model-"), "cases": count, "seconds": seconds,
            "cases_per_s": count / seconds, "scored": run.summary["run"]["scored"],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-scoring.md")
    parser.add_argument("--counts", default="10,100,1000", help="2D case counts")
    parser.add_argument("--counts-3d", default="10,100", help="3D case counts")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "COUNT", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.one:
        print(json.dumps(run_one(Path(args.one[0]), int(args.one[1]), Path(args.one[2]))))
        return
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        for config, counts in (("image2d-small", args.counts), ("image3d-small", args.counts_3d)):
            model = make_model(config, work)
            for count in [int(c) for c in counts.split(",") if c]:
                print(f"{config}: {count} cases", file=sys.stderr, flush=True)
                result = subprocess.run([sys.executable, __file__, "--one", str(model), str(count), str(work)],
                                        capture_output=True, text=True, check=True)
                rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    lines = ["# Scoring throughput (`segqc score`, end to end)", "",
             f"Command: `python {shlex.join(sys.argv)}`", "",
             f"- date: {datetime.date.today()}; machine: {platform.machine()} CPU, 2 cores, no GPU; "
             f"torch {torch.__version__}, 2 threads",
             "- each run: read + preprocess, score at every noise level, Dice/MSD/HD95 against ground truth, "
             "heat maps, top-50 gallery, report.html", "",
             "| model | cases | wall time (s) | cases/s | peak RSS (MiB) |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['cases']} | {row['seconds']:.1f} | {row['cases_per_s']:.2f} | "
                     f"{row['peak_rss_mib']:.0f} |")
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
