"""Image-mode training benchmark on the built-in phantoms.

Measures, on this machine's CPU:

* training steps/s and peak resident memory for the ``small`` preset in 2D
  (64 x 64, batch 16) and 3D (32^3, batch 4), each in
  a fresh subprocess so the peak memory is its own;
* a full ``image2d-small`` run (its configured steps) on 300 training phantoms:
  wall time, time per 1,000 steps, and how well the scores separate failed
  predictions (AUROC for Dice < 0.8, and for gross failures — empty, missing,
  shift, class swap at severity >= 0.8 — against good predictions).

Usage::

    python benchmarks/image_training.py --out docs/benchmarks-image-training.md [--speed-steps 30] [--skip-full]
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
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segqc.config import ImageModelConfig, TrainingConfig, from_mapping  # noqa: E402
from segqc.detectors.image import ImageQC  # noqa: E402
from segqc.metrics import dice_per_class, mean_dice  # noqa: E402
from segqc.synthetic import phantoms  # noqa: E402

GROSS_MODES = ("empty", "missing", "shift", "class_swap")


def load_config(name: str) -> tuple[dict, ImageModelConfig, TrainingConfig]:
    """Sections of a packaged preset file (``segqc/presets/<name>.yaml``)."""
    data = yaml.safe_load((ROOT / "segqc" / "presets" / f"{name}.yaml").read_text())
    return (data["data"], from_mapping(ImageModelConfig, data["model"], "model"),
            from_mapping(TrainingConfig, data["training"], "training"))


def phantom_arrays(cases: list, predicted: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Stacked images ``(N, 1, *spatial)`` and masks ``(N, *spatial)``."""
    images = np.stack([c.image for c in cases])
    masks = np.stack([c.prediction if predicted else c.mask for c in cases]).astype(np.int64)
    return images, masks


def speed(name: str, steps: int) -> dict:
    """Steps/s of one config's training loop (runs in this process; call it in a subprocess)."""
    data, model_cfg, train_cfg = load_config(name)
    size = tuple(data["spatial_size"])
    images, masks = phantom_arrays(phantoms.make_training_set(4 * train_cfg.batch_size, size, seed=0))
    warmup = 3
    training = TrainingConfig(**{**train_cfg.__dict__, "steps": warmup + steps, "val_every": 10**9,
                                 "checkpoint_every": 0, "val_fraction": 0.0, "device": "cpu"})
    times: list[float] = []
    last = [time.perf_counter()]

    def on_step(info) -> None:
        now = time.perf_counter()
        if info.step > warmup:
            times.append(now - last[0])
        last[0] = now

    ImageQC(model_cfg, training, labels=[0, 1, 2]).fit(images, masks, on_step=on_step)
    return {"config": name, "spatial_size": list(size), "batch_size": train_cfg.batch_size,
            "steps_per_s": 1.0 / float(np.mean(times)),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def full_run(name: str) -> dict:
    """Train a config on 300 phantoms, then score 200 predictions with graded failures."""
    data, model_cfg, train_cfg = load_config(name)
    size = tuple(data["spatial_size"])
    images, masks = phantom_arrays(phantoms.make_training_set(300, size, seed=0))
    training = TrainingConfig(**{**train_cfg.__dict__, "device": "cpu"})
    started = time.perf_counter()
    qc = ImageQC(model_cfg, training, labels=[0, 1, 2]).fit(images, masks)
    train_seconds = time.perf_counter() - started
    cases = phantoms.make_prediction_set(200, size, seed=1, failure_fraction=0.4)
    started = time.perf_counter()
    scores = qc.decision_function(phantom_arrays(cases, predicted=True))
    score_seconds = time.perf_counter() - started
    predictions, truths = np.stack([c.prediction for c in cases]), np.stack([c.mask for c in cases])
    dice = mean_dice(dice_per_class(predictions, truths, 3), predictions, truths)
    gross = np.array([c.failure_mode in GROSS_MODES and (c.severity or 0) >= 0.8 for c in cases])
    good = np.array([not c.is_failure for c in cases])
    keep = gross | good
    return {"config": name, "steps": training.steps, "train_seconds": train_seconds,
            "seconds_per_1000_steps": 1000 * train_seconds / training.steps, "score_seconds_200_cases": score_seconds,
            "auroc_dice_below_0.8": float(roc_auc_score(dice < 0.8, scores)),
            "auroc_gross_vs_good": float(roc_auc_score(gross[keep], scores[keep])),
            "cases_dice_below_0.8": int((dice < 0.8).sum()), "gross_cases": int(gross.sum())}


def write_report(out: Path, speeds: list[dict], full: dict | None, command: str) -> None:
    """Markdown tables of the measurements."""
    lines = ["# Image-mode training benchmark", "", f"Command: `{command}`", "",
             f"- date: {datetime.date.today()}", f"- machine: {platform.machine()} CPU, 2 cores, no GPU; "
             f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)", "",
             "## Training speed", "", "| config | input | batch | steps/s | peak RSS (MiB) |", "|---|---|---|---|---|"]
    for row in speeds:
        lines.append(f"| {row['config']} | {'x'.join(map(str, row['spatial_size']))} | {row['batch_size']} | "
                     f"{row['steps_per_s']:.2f} | {row['peak_rss_mib']:.0f} |")
    if full:
        lines += ["", "## Full image2d-small run on 300 phantoms", "",
                  "| steps | train time (s) | s / 1,000 steps | score 200 cases (s) | AUROC Dice<0.8 | "
                  "AUROC gross failures vs good |", "|---|---|---|---|---|---|",
                  f"| {full['steps']} | {full['train_seconds']:.0f} | {full['seconds_per_1000_steps']:.0f} | "
                  f"{full['score_seconds_200_cases']:.1f} | {full['auroc_dice_below_0.8']:.3f} "
                  f"({full['cases_dice_below_0.8']} of 200) | {full['auroc_gross_vs_good']:.3f} "
                  f"({full['gross_cases']} gross) |"]
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-image-training.md")
    parser.add_argument("--speed-steps", type=int, default=30)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--speed-only", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.speed_only:
        print(json.dumps(speed(args.speed_only, args.speed_steps)))
        return
    speeds = []
    for name in ("image2d-small", "image3d-small"):
        print(f"speed: {name}", file=sys.stderr, flush=True)
        result = subprocess.run([sys.executable, __file__, "--speed-only", name, "--speed-steps",
                                 str(args.speed_steps)], capture_output=True, text=True, check=True)
        speeds.append(json.loads(result.stdout.strip().splitlines()[-1]))
    full = None
    if not args.skip_full:
        print("full run: image2d-small", file=sys.stderr, flush=True)
        full = full_run("image2d-small")
    write_report(args.out, speeds, full, "python " + shlex.join(sys.argv))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
