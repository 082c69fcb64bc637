"""Scoring throughput of ``segqc score`` on phantom files (the nightly job, end to end).

For each config and case count, a fresh subprocess scores a folder of predicted
masks with ground truth (reading, preprocessing, scoring at every noise level,
predicted Dice, Dice / MSD / HD95, heat maps, gallery, HTML report) and reports
wall time, cases/s and peak resident memory (flat when scoring streams). The
model is trained for a few steps only: throughput does not depend on how well it
is trained.

Next to each figure: the **arithmetic limit**, the cases/s the machine could
reach if it did nothing but the network passes (network FLOPs per case x the
passes per case, the scoring levels plus the reconstruction's, divided by the
FLOP/s this machine measures on a float32 matrix product with the same threads),
and a **profile** (cProfile) of one run split by part.

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

from segqc.config import ImageModelConfig, TrainingConfig, from_mapping  # noqa: E402
from segqc.data.preprocess import PreprocessConfig  # noqa: E402
from segqc.detectors.image import ImageQC  # noqa: E402
from segqc.jobs.score import ScoreOptions, score_folder  # noqa: E402
from segqc.synthetic import phantoms  # noqa: E402

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


# Parts of a scoring run, by the function whose cumulative time they are (cProfile).
PROFILE_PARTS = {
    "network: score norms at every level": ("detectors/image.py", "embed"),
    "network: reconstruction": ("detectors/image.py", "_reconstruct"),
    "atlas agreement": ("quality/atlas.py", "features"),
    "quality regressor": ("quality/estimator.py", "predict"),
    "reading + preprocessing": ("data/cases.py", "prepare_case"),
    "ground-truth metrics (Dice, MSD, HD95)": ("jobs/scored_cases.py", "_ground_truth_metrics"),
    "heat-map files": ("report/heatmaps.py", "overlay_png"),
    "heat-map volumes (NIfTI)": ("report/heatmaps.py", "heat_volume_nifti"),
    "gallery panels": ("report/heatmaps.py", "gallery_png"),
    "report.html": ("report/html.py", "render_report"),
}


def profile_one(model: Path, count: int, work: Path) -> dict:
    """Seconds per part (:data:`PROFILE_PARTS`) of one scoring run, and the total."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    result = run_one(model, count, work)
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    parts = {}
    for part, (file, function) in PROFILE_PARTS.items():
        parts[part] = sum(entry[3] for (path, _, name), entry in stats.items()
                          if name == function and path.replace("\\", "/").endswith(file.split("/")[-1])
                          and file.split("/")[0] in path)
    return {"total": result["seconds"], "parts": parts, "model": result["model"], "cases": count}


def network_flops(model: Path) -> tuple[float, int]:
    """FLOPs of one case through the network once, and the network passes per case when scoring."""
    from torch.utils.flop_counter import FlopCounterMode

    qc = ImageQC.load(model, device="cpu")
    arch = qc.architecture_
    size = (arch["input_size"],) * arch["spatial_dims"]
    images = torch.zeros(1, arch["image_channels"], *size)
    masks = torch.zeros(1, *size, dtype=torch.long)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        qc.model_.scores(images, masks, torch.zeros(1, dtype=torch.long))
    levels = qc.model_.num_levels
    return float(counter.get_total_flops()), levels + max(1, (levels + 1) // 2)


def machine_flops(threads: int) -> float:
    """Float32 FLOP/s of a 1024 x 1024 matrix product with ``threads`` torch threads (best of 5)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(10):
            a @ b
        best = min(best, (time.perf_counter() - started) / 10)
    return 2 * 1024 ** 3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-scoring.md")
    parser.add_argument("--counts", default="10,100,1000", help="2D case counts")
    parser.add_argument("--counts-3d", default="10,100", help="3D case counts")
    parser.add_argument("--profile-count", type=int, default=200, help="cases of the profiled run per model")
    parser.add_argument("--one", nargs=4, metavar=("MODEL", "COUNT", "WORK", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.one:
        run = profile_one if args.one[3] == "profile" else run_one
        print(json.dumps(run(Path(args.one[0]), int(args.one[1]), Path(args.one[2]))))
        return
    rows, profiles, limits = [], [], {}
    flops_per_second = machine_flops(2)
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        for config, counts in (("image2d-small", args.counts), ("image3d-small", args.counts_3d)):
            model = make_model(config, work)
            flops, passes = network_flops(model)
            limits[config] = (flops, passes, flops_per_second / (flops * passes))
            for count, mode in [(int(c), "time") for c in counts.split(",") if c] + [(args.profile_count, "profile")]:
                print(f"{config}: {count} cases ({mode})", file=sys.stderr, flush=True)
                result = subprocess.run([sys.executable, __file__, "--one", str(model), str(count), str(work), mode],
                                        capture_output=True, text=True, check=True)
                (rows if mode == "time" else profiles).append(json.loads(result.stdout.strip().splitlines()[-1]))
    lines = ["# Scoring throughput (`segqc score`, end to end)", "",
             f"Command: `python {shlex.join(sys.argv)}`", "",
             f"- date: {datetime.date.today()}; machine: {platform.machine()} CPU, 2 cores, no GPU; "
             f"torch {torch.__version__}, 2 threads; measured float32 matrix-product speed "
             f"{flops_per_second / 1e9:.1f} GFLOP/s",
             "- each run: read + preprocess, score at every noise level, predicted Dice (reconstruction, atlas, "
             "regressor), Dice/MSD/HD95 against ground truth, heat maps, gallery (top-50 and 25 nearest the fail "
             "line), report.html; cases stream through in chunks of 256", "",
             "| model | cases | wall time (s) | cases/s | arithmetic limit (cases/s) | peak RSS (MiB) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['cases']} | {row['seconds']:.1f} | {row['cases_per_s']:.2f} | "
                     f"{limits[row['model']][2]:.1f} | {row['peak_rss_mib']:.0f} |")
    lines += ["", "Arithmetic limit: network GFLOPs per case and pass x passes per case (scoring levels + "
              "reconstruction levels) / measured GFLOP/s:", ""]
    lines += [f"- {config}: {flops / 1e9:.3f} GFLOP x {passes} passes = {flops * passes / 1e9:.2f} GFLOP per case "
              f"-> {limit:.1f} cases/s" for config, (flops, passes, limit) in limits.items()]
    for profile in profiles:
        total = profile["total"]
        lines += ["", f"## Where the time goes: {profile['model']}, {profile['cases']} cases "
                  f"({total:.1f} s under cProfile, {profile['cases'] / total:.2f} cases/s)", "",
                  "| part | seconds | share |", "|---|---|---|"]
        lines += [f"| {part} | {seconds:.2f} | {seconds / total:.0%} |" for part, seconds in profile["parts"].items()
                  if seconds > 0]
        rest = total - sum(profile["parts"].values())
        lines.append(f"| everything else (pairing, ranking, summary, writing) | {rest:.2f} | {rest / total:.0%} |")
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
