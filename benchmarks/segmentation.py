"""Segmentation-QC benchmark: how well does each QC score rank failed predictions?

On the same cases, every method scores each predicted mask (higher = more
suspicious) without ground truth. Against ground truth we then report
Spearman(score, Dice) (more negative is better), Spearman(score, HD95) (more
positive is better), AUROC and average precision for Dice < 0.8, AURC
(risk = 1 - Dice; lower is better) and Pearson(score, Dice) over the top-50.

Methods:
* ``segqc``: GNSM multiscale score norms + Gaussian mixture (the product);
* ``segqc single-scale``: the squared score norm at the smallest noise level only;
* ``features + IsolationForest``: radiomics-style shape / intensity features of each
  (image, mask) pair, IsolationForest fitted on the correct training pairs;
* ``mask-area z-score``: sum over classes of |z| of the class area against the training masks;
* ``random``.

Sets: ``phantoms`` (built-in, 64 x 64, graded failure modes). Real-data sets
(LiTS CT slices, stardist nuclei) are not included yet.

Usage::

    python benchmarks/segmentation.py --out docs/benchmarks-segmentation.md [--steps 500] [--seeds 3]
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from sklearn.ensemble import IsolationForest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segqc import evaluation, phantoms  # noqa: E402
from segqc.config import ImageModelConfig, TrainingConfig  # noqa: E402
from segqc.detectors.image import ImageQC  # noqa: E402
from segqc.metrics import case_metrics  # noqa: E402

LABELS = [0, 1, 2]


def features(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Shape and intensity features of one pair: per class area, perimeter, compactness,
    centroid, mean / std intensity inside; plus the number of connected components."""
    values = []
    channel = image[0]
    for label in (1, 2):
        region = mask == label
        area = float(region.sum())
        perimeter = float((region & ~ndimage.binary_erosion(region)).sum())
        centre = np.argwhere(region).mean(0) if area else np.full(mask.ndim, -1.0)
        inside = channel[region] if area else np.zeros(1)
        values += [area, perimeter, perimeter**2 / (area + 1.0), *centre, inside.mean(), inside.std(),
                   float(ndimage.label(region)[1])]
    return np.asarray(values)


def area_z_scores(train_masks: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Sum over classes of |z| of each mask's class area against the training masks."""
    def areas(stack: np.ndarray) -> np.ndarray:
        return np.stack([(stack == label).reshape(len(stack), -1).sum(1) for label in (1, 2)], 1).astype(float)

    reference = areas(train_masks)
    return np.abs((areas(masks) - reference.mean(0)) / (reference.std(0) + 1e-6)).sum(1)


def evaluate(scores: np.ndarray, dice: np.ndarray, hd95: np.ndarray, top_k: int) -> dict[str, float | None]:
    """The benchmark's figures for one method."""
    by_dice = evaluation.correlations(scores, dice, top_k)
    detection = evaluation.failure_detection(scores, dice, 0.8)
    return {"spearman_dice": by_dice["spearman"], "spearman_hd95": evaluation.correlations(scores, hd95, top_k)["spearman"],
            "auroc": detection["auroc"], "ap": detection["average_precision"], "aurc": detection["aurc"],
            "pearson_dice_top_k": by_dice["pearson_top_k"]}


def run_phantoms(seed: int, steps: int) -> dict[str, dict]:
    """All methods on one phantom split."""
    size = (64, 64)
    train = phantoms.make_training_set(200, size, seed=seed)
    test = phantoms.make_prediction_set(200, size, seed=seed + 100, failure_fraction=0.4)
    train_images = np.stack([c.image for c in train])
    train_masks = np.stack([c.mask for c in train]).astype(np.int64)
    images = np.stack([c.image for c in test])
    predictions = np.stack([c.prediction for c in test]).astype(np.int64)
    truth = [case_metrics(c.prediction, c.mask, LABELS, (1.0, 1.0)) for c in test]
    dice = np.array([m["dice_mean"] for m in truth])
    hd95 = np.array([m["hd95"] for m in truth])
    qc = ImageQC(ImageModelConfig(), TrainingConfig(steps=steps, batch_size=16, lr=2e-3, val_every=100,
                                                    checkpoint_every=0, seed=seed, device="cpu"), labels=LABELS)
    qc.fit(train_images, train_masks)
    scores, norms, _ = qc.score_pairs(images, predictions)
    forest = IsolationForest(random_state=seed).fit(np.stack([features(i, m) for i, m in zip(train_images, train_masks)]))
    methods = {
        "segqc": scores,
        "segqc single-scale": norms[:, -1],
        "features + IsolationForest": -forest.score_samples(np.stack([features(i, m) for i, m in zip(images, predictions)])),
        "mask-area z-score": area_z_scores(train_masks, predictions),
        "random": np.random.default_rng(seed).random(len(test)),
    }
    return {name: evaluate(values, dice, hd95, top_k=50) for name, values in methods.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-segmentation.md")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    runs = []
    for seed in range(args.seeds):
        print(f"phantoms, seed {seed}", file=sys.stderr, flush=True)
        runs.append(run_phantoms(seed, args.steps))
    columns = ["spearman_dice", "spearman_hd95", "auroc", "ap", "aurc", "pearson_dice_top_k"]
    lines = ["# Segmentation-QC benchmark", "", f"Command: `python {shlex.join(sys.argv)}`", "",
             f"- date: {datetime.date.today()}; 2-core CPU; segqc trained {args.steps} steps (image2d-small network) "
             f"on 200 phantom pairs per seed; 200 test predictions per seed (40% failed, graded modes); "
             f"mean ± std over {args.seeds} seeds",
             "- better: Spearman(score, Dice) more negative, Spearman(score, HD95) more positive, AUROC / AP "
             "higher (Dice < 0.8 = failure), AURC lower, Pearson(score, Dice) over the top-50 more negative", "",
             "## phantoms", "",
             "| method | Spearman Dice | Spearman HD95 | AUROC | AP | AURC | Pearson Dice top-50 |",
             "|---|---|---|---|---|---|---|"]
    for name in runs[0]:
        cells = []
        for column in columns:
            values = np.array([run[name][column] for run in runs if run[name][column] is not None], dtype=float)
            cells.append(f"{values.mean():.3f} ± {values.std():.3f}" if len(values) else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
