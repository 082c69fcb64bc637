"""Whole volumes from a real CT (issue 29): predicted Dice per volume against 3D Dice, on both routes.

**Data, and its limit.** The only real 3D CT with labels shipped by a package reachable here is the LiTS case
of ``liver-ct-segmentation-package`` (``examples/realdata.py``: one patient, 128^3, liver and tumour, voxel
size not stored; 1.5 mm is assumed). One patient cannot give independent volumes, so the benchmark cuts it
into 32 disjoint sub-volumes of 16 x 64 x 64 voxels (8 slabs of 16 slices along the first axis x 4 in-plane
quadrants). Sub-volumes of even slabs are the labelled set (training the segmenters and segqc); those of odd
slabs are the test volumes: no voxel is shared, but every figure below is **within one patient**, and
neighbouring slabs are alike. Read them as a check that the volume machinery works on real anatomy, not as a
measure of how segqc generalises across patients.

**Predictions** of each test volume (10 per volume, 160 in all):

* a 3D MONAI UNet trained on the labelled sub-volumes, after 15, 40 and 150 steps;
* a 2D MONAI UNet trained on their slices (first axis), after 25, 75 and 250 steps;
* both final UNets on a degraded copy of the test image (Gaussian noise of 80 HU, then a 1-voxel blur);
* two graded corruptions of the ground truth (``segqc.synthetic.corruptions``; modes cycled, severity in
  [0.05, 0.8]).

**Methods**, per predicted volume: segqc on the 2D-slice route and on the 3D-patch route (predicted Dice of the
volume, aggregated as overlap volumes, with its interval and verdict); a per-volume **atlas** baseline (Dice of
the prediction with the mask of the labelled sub-volume whose image correlates best with the test image); a
feature **IsolationForest** (per-structure volume fraction, connected components, surface-to-volume ratio,
mean and spread of HU inside; fitted on the labelled masks and their flips; its anomaly score ranks, it
predicts no Dice).

    flock /tmp/segqc-heavy.lock python -m benchmarks.volumes --out /tmp/segqc-volumes

writes ``docs/benchmarks-volumes.md`` (about 25 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from examples.realdata import LIVER_WINDOW, load_lits, train_snapshots, unet_predictions
from segqc.metrics import dice_per_class, failure_detection, mean_dice, spearman
from segqc.synthetic import corruptions

ROOT = Path(__file__).resolve().parents[1]

DOC = ROOT / "docs" / "benchmarks-volumes.md"
SPACING = (1.5, 1.5, 1.5)
SLAB, QUADRANT = 16, 64
BUDGETS_3D, BUDGETS_2D = (15, 40, 150), (25, 75, 250)
DICE_THRESHOLD = 0.8
CONFIGS = {
    "2D slices": """
data: {spatial_dims: 2, spatial_size: [64, 64], slice_axis: 0, intensity: window, window: [-150, 250]}
model: {levels: 8, network: {nf: 16, ch_mult: [1, 2, 2], num_res_blocks: 1}, quality_snapshots: [0.3],
        degradations_per_case: 8, quality_examples: 2048}
training: {steps: STEPS, batch_size: 16, lr: 2.0e-3, val_fraction: 0.25, val_every: 200, checkpoint_every: 0}
""",
    "3D patches": """
data: {spatial_dims: 3, spatial_size: [16, 32, 32], patches: true, crop_margin: 6, intensity: window,
       window: [-150, 250]}
model: {levels: 6, score_batch_size: 8, reconstruction: anneal,
        network: {nf: 12, ch_mult: [1, 2, 2], num_res_blocks: 1}, quality_snapshots: [0.3],
        degradations_per_case: 8, quality_examples: 2048}
training: {steps: STEPS, batch_size: 4, lr: 2.0e-3, val_fraction: 0.25, val_every: 200, checkpoint_every: 0}
""",
}


def sub_volumes(image: np.ndarray, labels: np.ndarray) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """``(name, slab, image, labels)`` of the 32 disjoint 16 x 64 x 64 sub-volumes."""
    out = []
    for slab in range(image.shape[0] // SLAB):
        for row in range(2):
            for column in range(2):
                box = (slice(slab * SLAB, (slab + 1) * SLAB), slice(row * QUADRANT, (row + 1) * QUADRANT),
                       slice(column * QUADRANT, (column + 1) * QUADRANT))
                out.append((f"s{slab}q{2 * row + column}", slab, image[box], labels[box]))
    return out


def _windowed(images: np.ndarray) -> torch.Tensor:
    return ((torch.as_tensor(images, dtype=torch.float32) - LIVER_WINDOW[0])
            / (LIVER_WINDOW[1] - LIVER_WINDOW[0])).clamp(0, 1)[:, None]


def unet3d_predictions(train_images: np.ndarray, train_masks: np.ndarray, tests: dict[str, np.ndarray],
                       seed: int) -> dict[str, dict[int, np.ndarray]]:
    """A 3D MONAI UNet trained on the labelled sub-volumes; predictions of each test set after each budget."""
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    network = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(8, 16, 32), strides=(2, 2),
                   num_res_units=1)
    return train_snapshots(network, _windowed(train_images), torch.as_tensor(train_masks, dtype=torch.long)[:, None],
                           {name: _windowed(images) for name, images in tests.items()}, BUDGETS_3D, seed,
                           batch_size=4)


def degrade(images: np.ndarray, seed: int) -> np.ndarray:
    """Gaussian noise of 80 HU, then a 1-voxel blur (a poorer scan of the same anatomy)."""
    from scipy import ndimage

    noisy = images + np.random.default_rng(seed).normal(0, 80, images.shape)
    return ndimage.uniform_filter(noisy, size=(1, 3, 3, 3)).astype(np.float32)


def predictions(seed: int) -> tuple[list[tuple], list[dict]]:
    """Labelled sub-volumes and the 160 predicted test volumes with provenance."""
    image, labels = load_lits()
    parts = sub_volumes(image, labels)
    train = [p for p in parts if p[1] % 2 == 0]
    test = [p for p in parts if p[1] % 2 == 1]
    train_images, train_masks = np.stack([p[2] for p in train]), np.stack([p[3] for p in train])
    test_images = np.stack([p[2] for p in test])
    degraded = degrade(test_images, seed)
    nets3d = unet3d_predictions(train_images, train_masks, {"clean": test_images, "degraded": degraded}, seed)
    nets2d = {name: {budget: masks.reshape(len(test), SLAB, QUADRANT, QUADRANT) for budget, masks in
                     unet_predictions(_slices(train_images), _slices(train_masks), _slices(images), 3, BUDGETS_2D,
                                      seed, LIVER_WINDOW).items()}
              for name, images in (("clean", test_images), ("degraded", degraded))}
    rng = np.random.default_rng(seed)
    modes = list(corruptions.FAILURE_MODES)
    cases = []
    for index, (name, _, volume, truth) in enumerate(test):
        made = [(f"unet3d_{b}", f"3D UNet, {b} steps", nets3d["clean"][b][index], volume) for b in BUDGETS_3D]
        made += [(f"unet2d_{b}", f"2D UNet, {b} steps", nets2d["clean"][b][index], volume) for b in BUDGETS_2D]
        made += [("unet3d_degraded", "3D UNet, degraded scan", nets3d["degraded"][max(BUDGETS_3D)][index],
                  degraded[index]),
                 ("unet2d_degraded", "2D UNet, degraded scan", nets2d["degraded"][max(BUDGETS_2D)][index],
                  degraded[index])]
        for copy in range(2):
            mode, severity = modes[(2 * index + copy) % len(modes)], float(rng.uniform(0.05, 0.8))
            made.append((f"corrupt{copy}", f"{mode} {severity:.2f}", corruptions.corrupt(truth, mode, severity, rng),
                         volume))
        cases += [{"case_id": f"{name}_{kind}", "volume": name, "source": kind.split("_")[0], "detail": detail,
                   "image": scan, "truth": truth, "prediction": prediction}
                  for kind, detail, prediction, scan in made]
    return train, cases


def _slices(volumes: np.ndarray) -> np.ndarray:
    """``(N, D, H, W)`` volumes as ``(N D, H, W)`` slices along their first axis."""
    return volumes.reshape(-1, *volumes.shape[2:])


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(array), np.diag([*SPACING, 1.0])), path)


def write(train: list[tuple], cases: list[dict], out: Path) -> None:
    """segqc folders: ``train/images``, ``train/masks``, ``test/images``, ``test/predictions``, ``test/truth``."""
    for name, _, image, mask in train:
        _save(image.astype(np.float32), out / "train/images" / f"{name}.nii.gz")
        _save(mask.astype(np.uint8), out / "train/masks" / f"{name}.nii.gz")
    for case in cases:
        for folder, key, dtype in (("images", "image", np.float32), ("predictions", "prediction", np.uint8),
                                   ("truth", "truth", np.uint8)):
            _save(case[key].astype(dtype), out / "test" / folder / f"{case['case_id']}.nii.gz")


def _run(arguments: list[str], threads: int) -> float:
    """``python -m segqc ARGS`` in a fresh process; its peak resident memory in GiB."""
    code = ("import resource, runpy, sys\nsys.argv = ['segqc'] + sys.argv[1:]\ncode = 0\ntry:\n"
            "    runpy.run_module('segqc', run_name='__main__')\nexcept SystemExit as e:\n    code = e.code or 0\n"
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code, *arguments, "--threads", str(threads)], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    if result.returncode not in (0, 3):
        raise SystemExit(f"segqc {' '.join(arguments)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    print(result.stdout[-600:], flush=True)
    return next(int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("MAXRSS")) / 2**20


def run_segqc(out: Path, route: str, steps: int, threads: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """Train (or reuse the model of an earlier run with the same ``out``) and score one route; the volume rows and
    the timing / memory figures (training: the fit loop's seconds from the model's training summary)."""
    config = out / f"{route.split()[0]}.yaml"
    config.write_text(CONFIGS[route].replace("STEPS", str(steps)))
    model, report = out / f"model-{route.split()[0]}", out / f"report-{route.split()[0]}"
    if not (model / "segqc.json").is_file():
        _run(["train", "--images", str(out / "train/images"), "--masks", str(out / "train/masks"), "--out",
              str(model), "--config", str(config), "--seed", str(seed)], threads)
    trained = json.loads((model / "segqc.json").read_text())["training_summary"]["seconds"]
    peak = _run(["score", str(out / "test/predictions"), "--images", str(out / "test/images"), "--model", str(model),
                 "--out", str(report), "--ground-truth", str(out / "test/truth")], threads)
    summary = json.loads((report / "summary.json").read_text())
    table = pd.read_csv(report / "scores.csv")
    return table, {"train_s": trained, "score_s_per_volume": summary["run"]["seconds"] / len(table),
                   "peak_gib": peak, "units": int(table["units"].median())}


def atlas_baseline(train: list[tuple], case: dict) -> float:
    """Dice of the prediction with the mask of the labelled sub-volume whose image correlates best."""
    image = case["image"].ravel() - case["image"].mean()
    correlation = [float(np.dot(image, t[2].ravel() - t[2].mean())
                         / (np.linalg.norm(image) * np.linalg.norm(t[2].ravel() - t[2].mean()) + 1e-9)) for t in train]
    reference = train[int(np.argmax(correlation))][3]
    per_class = dice_per_class(case["prediction"][None], reference[None], 3)
    return float(mean_dice(per_class, case["prediction"][None], reference[None])[0])


def shape_features(image: np.ndarray, mask: np.ndarray) -> list[float]:
    """Per structure: volume fraction, components, surface-to-volume ratio, mean and spread of HU inside."""
    from scipy import ndimage

    features = []
    for label in (1, 2):
        region = mask == label
        count = int(region.sum())
        surface = int((region & ~ndimage.binary_erosion(region)).sum())
        inside = image[region] if count else np.zeros(1)
        features += [count / region.size, float(ndimage.label(region)[1]), surface / max(count, 1),
                     float(inside.mean()), float(inside.std())]
    return features


def isolation_forest_scores(train: list[tuple], cases: list[dict], seed: int) -> np.ndarray:
    """Anomaly scores (higher = more anomalous) of a feature IsolationForest fitted on the labelled masks."""
    from sklearn.ensemble import IsolationForest

    reference = [shape_features(np.flip(image, axis), np.flip(mask, axis)) for _, _, image, mask in train
                 for axis in (0, 1, 2)] + [shape_features(image, mask) for _, _, image, mask in train]
    forest = IsolationForest(n_estimators=300, random_state=seed).fit(np.asarray(reference))
    return -forest.score_samples(np.asarray([shape_features(c["image"], c["prediction"]) for c in cases]))


def figures(predicted: np.ndarray | None, score: np.ndarray, dice: np.ndarray, low: np.ndarray | None = None,
            high: np.ndarray | None = None, verdicts: np.ndarray | None = None) -> dict[str, float | None]:
    """Spearman, AUROC for Dice < 0.8, MAE, interval coverage, misses and false alarms of one method."""
    ranked = spearman(-score, dice)
    row: dict[str, float | None] = {
        "spearman": spearman(predicted, dice) if predicted is not None else ranked,
        "auroc": failure_detection(score, dice, DICE_THRESHOLD)["auroc"],
        "mae": float(np.mean(np.abs(predicted - dice))) if predicted is not None else None,
        "coverage": float(np.mean((low <= dice) & (dice <= high))) if low is not None else None,
        "misses": None, "false_alarms": None}
    if verdicts is not None:
        failed, good = dice < DICE_THRESHOLD, dice >= 0.9
        row["misses"] = float(np.mean(verdicts[failed] == "pass")) if failed.any() else None
        row["false_alarms"] = float(np.mean(verdicts[good] != "pass")) if good.any() else None
    return row


def _cell(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/segqc-volumes"))
    parser.add_argument("--steps", type=int, default=1000, help="segqc training steps per route")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train, cases = predictions(args.seed)
    write(train, cases, args.out)
    print(f"{len(cases)} predicted volumes written in {time.perf_counter() - started:.0f} s", flush=True)
    truth = pd.DataFrame([{"case_id": c["case_id"], "source": c["source"], "detail": c["detail"]} for c in cases])
    rows, costs = [], {}
    for route in CONFIGS:
        table, costs[route] = run_segqc(args.out, route, args.steps, args.threads, args.seed)
        table = truth.merge(table, on="case_id")
        rows.append((f"segqc, {route}", figures(table["predicted_dice"].to_numpy(float),
                                                 -table["predicted_dice"].to_numpy(float),
                                                 table["dice_mean"].to_numpy(float),
                                                 table["predicted_dice_low"].to_numpy(float),
                                                 table["predicted_dice_high"].to_numpy(float),
                                                 table["verdict"].to_numpy())))
        table.to_csv(args.out / f"volumes-{route.split()[0]}.csv", index=False)
    dice = np.array([float(mean_dice(dice_per_class(c["prediction"][None], c["truth"][None], 3),
                                     c["prediction"][None], c["truth"][None])[0]) for c in cases])
    atlas = np.array([atlas_baseline(train, case) for case in cases])
    rows.append(("atlas (nearest labelled sub-volume)", figures(atlas, -atlas, dice)))
    rows.append(("feature IsolationForest", figures(None, isolation_forest_scores(train, cases, args.seed), dice)))
    lines = ["# Whole volumes from a real CT: predicted Dice per volume (issue 29)", "",
             __doc__.split("\n\n", 1)[1].split("    flock")[0].strip(), "",
             "Regenerate:", "",
             f"    flock /tmp/segqc-heavy.lock python -m benchmarks.volumes --out /tmp/segqc-volumes --steps {args.steps}",
             "", (f"{len(cases)} predicted volumes from {len(cases) // 10} test sub-volumes; true Dice (3D, mean over "
             f"liver and tumour) from {dice.min():.2f} to {dice.max():.2f}, {int((dice < DICE_THRESHOLD).sum())} below "
             f"{DICE_THRESHOLD}. segqc trained {args.steps} steps per route on the 16 labelled sub-volumes "
             "(their held-out quarter teaches predicted Dice). Spearman is between predicted Dice (IsolationForest: "
             "minus its anomaly score) and true Dice; AUROC ranks Dice < 0.8 by low predicted Dice (high anomaly "
             "score); misses: share of volumes with Dice < 0.8 given `pass`; false alarms: share with Dice >= 0.9 "
             "not given `pass`; coverage: share of true Dice inside the 80 % interval."), "",
             "| method | Spearman | AUROC (Dice < 0.8) | MAE | coverage | misses | false alarms |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | " + " | ".join(_cell(row[key]) for key in ("spearman", "auroc", "mae", "coverage", "misses",
                                                                       "false_alarms")) + " |" for name, row in rows]
    lines += ["", f"Cost ({args.threads} torch thread(s); other jobs may have shared the cores):",
              "", ("| route | units per volume | training s (fit loop) | scoring s per volume | "
                   "peak memory GiB (score) |"),
              "|---|---|---|---|---|"]
    lines += [f"| {route} | {c['units']} | {c['train_s']:.0f} | {c['score_s_per_volume']:.2f} | {c['peak_gib']:.2f} |"
              for route, c in costs.items()]
    DOC.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
