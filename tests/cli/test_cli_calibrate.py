"""`segqc calibrate`: a new bundle whose intervals hold on the labelled cases' kind; bad input changes nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_IMAGE_CONFIG
from PIL import Image
from typer.testing import CliRunner

from segqc.cli import app
from segqc.data.cases import prepare_case
from segqc.data.pairing import pair_cases
from segqc.detectors.image import ImageQC
from segqc.synthetic import phantoms

runner = CliRunner()


def snapshot(*folders: Path) -> dict[str, str]:
    """SHA-256 of every file below ``folders``."""
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for folder in folders
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A tiny model with a predicted-Dice estimator and 40 labelled phantom predictions (half failed)."""
    root = tmp_path_factory.mktemp("calibrate")
    phantoms.write_cases(phantoms.make_training_set(40, (32, 32), seed=0), root / "train", fmt="png")
    (root / "config.yaml").write_text(TINY_IMAGE_CONFIG.replace("device: cpu}", "device: cpu, val_fraction: 0.3}")
                                      .replace("model:\n", "model:\n  degradations_per_case: 8\n"))
    model = root / "model"
    result = runner.invoke(app, ["train", "--images", str(root / "train/images"), "--masks",
                                 str(root / "train/masks"), "--out", str(model), "--config", str(root / "config.yaml")])
    assert result.exit_code == 0 and "predicted Dice" in result.output, result.output
    phantoms.write_cases(phantoms.make_prediction_set(40, (32, 32), seed=7, failure_fraction=0.5), root / "val",
                         fmt="png")
    return root, model


def calibrate_args(root: Path, model: Path, out: str, *extra: str) -> list[str]:
    return ["calibrate", str(root / "val/predictions"), "--images", str(root / "val/images"), "--ground-truth",
            str(root / "val/masks"), "--model", str(model), "--out", str(root / out), *extra]


def test_calibrate_writes_a_new_model_whose_intervals_say_where_they_come_from(labelled) -> None:
    root, model = labelled
    before = snapshot(model)
    result = runner.invoke(app, calibrate_args(root, model, "calibrated", "--coverage", "0.9"))
    assert result.exit_code == 0, result.output
    assert "40 labelled cases" in result.output and snapshot(model) == before
    result = runner.invoke(app, ["score", str(root / "val/predictions"), "--images", str(root / "val/images"),
                                 "--model", str(root / "calibrated"), "--out", str(root / "report"),
                                 "--ground-truth", str(root / "val/masks")])
    assert result.exit_code == 0, result.output
    assert "40 labelled cases of your segmenter" in " ".join(result.output.split())
    summary = json.loads((root / "report/summary.json").read_text())
    assert summary["interval"]["source"] == "labelled" and summary["interval"]["coverage"] == 0.9
    table = pd.read_csv(root / "report/scores.csv")
    assert {"predicted_dice_1_low", "predicted_dice_2_high", "verdict_1", "verdict_2"} <= set(table.columns)
    assert summary["predicted_dice"]["coverage"] >= 0.8  # in-sample: the calibration cases themselves
    page = " ".join((root / "report/report.html").read_text().split())
    assert "Intervals from <b>40 labelled cases of your segmenter" in page and "Mean interval width" in page
    assert "by structure:" in page and 'class="structure' in page and "label 2" in page


@pytest.mark.parametrize("verdict_by", ["mean", "worst"])
def test_verdict_by_picks_the_mean_or_the_worst_structure(labelled, verdict_by) -> None:
    root, model = labelled
    out = f"report-{verdict_by}"
    result = runner.invoke(app, ["score", str(root / "val/predictions"), "--images", str(root / "val/images"),
                                 "--model", str(model), "--out", str(root / out), "--verdict-by", verdict_by,
                                 "--interval-coverage", "0.6"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(root / out / "scores.csv").set_index("case_id")
    summary = json.loads((root / out / "summary.json").read_text())
    assert summary["verdict_rule"]["by"] == verdict_by and summary["verdict_rule"]["coverage"] == 0.6
    severity = {"pass": 0, "review": 1, "fail": 2}
    worst = table[["verdict_1", "verdict_2"]].apply(lambda row: max(row, key=severity.get), axis=1)
    if verdict_by == "worst":
        assert (table["verdict"] == worst).all()
    else:
        assert (table["verdict"].map(severity) <= worst.map(severity)).all()


def break_labels(folder: Path) -> None:
    first = sorted(folder.glob("*.png"))[0]
    pixels = np.asarray(Image.open(first)).copy()
    pixels[:3, :3] = 9
    Image.fromarray(pixels).save(first)


@pytest.mark.parametrize("problem", ["missing ground truth", "unknown label", "too few cases", "out exists",
                                     "bad coverage"])
def test_bad_input_exits_2_and_writes_nothing(labelled, tmp_path, problem) -> None:
    root, model = labelled
    for part in ("images", "predictions", "masks"):
        (tmp_path / "val" / part).mkdir(parents=True)
        for source in sorted((root / "val" / part).glob("*.png"))[:12 if problem != "too few cases" else 4]:
            (tmp_path / "val" / part / source.name).write_bytes(source.read_bytes())
    extra: list[str] = []
    if problem == "missing ground truth":
        sorted((tmp_path / "val/masks").glob("*.png"))[3].unlink()
    elif problem == "unknown label":
        break_labels(tmp_path / "val/masks")
    elif problem == "out exists":
        (tmp_path / "calibrated").mkdir()
        (tmp_path / "calibrated" / "notes.txt").write_text("mine")
    elif problem == "bad coverage":
        extra = ["--coverage", "1.5"]
    before = snapshot(tmp_path, model)
    result = runner.invoke(app, calibrate_args(tmp_path, model, "calibrated", *extra))
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert snapshot(tmp_path, model) == before
    expected = {"missing ground truth": "no ground truth for case", "unknown label": "unexpected label value",
                "too few cases": "need at least 5", "out exists": "exists", "bad coverage": "--coverage"}[problem]
    assert expected in " ".join(result.output.split())


def test_a_calibrated_model_covers_its_nominal_share_of_exchangeable_cases(labelled, tmp_path) -> None:
    """Calibrate on half of 120 cases of one kind, evaluate on the other half, over several splits."""
    _, model = labelled
    phantoms.write_cases(phantoms.make_prediction_set(120, (32, 32), seed=11, failure_fraction=0.5), tmp_path,
                         fmt="png")
    qc = ImageQC.load(model)
    truths = [prepare_case(c, qc.preprocess, qc.labels_)[0] for c in pair_cases(tmp_path / "images", tmp_path / "masks")]
    cases = [prepare_case(c, qc.preprocess, qc.labels_)[0]
             for c in pair_cases(tmp_path / "images", tmp_path / "predictions")]
    images = np.stack([c.image for c in cases])
    masks, truth = np.stack([c.mask for c in cases]), np.stack([c.mask for c in truths])
    from segqc.metrics import dice_per_class, mean_dice
    true = mean_dice(dice_per_class(masks, truth, 3), masks, truth)
    achieved, widths = [], []
    for split in range(6):
        order = np.random.default_rng(split).permutation(len(cases))
        calibration, evaluation = order[:60], order[60:]
        calibrated = ImageQC.load(model)
        calibrated.calibrate(images[calibration], masks[calibration], truth[calibration], coverage=0.8)
        estimate = calibrated.assess(images[evaluation], masks[evaluation]).quality
        achieved.append(((true[evaluation] >= estimate.low) & (true[evaluation] <= estimate.high)).mean())
        widths.append((estimate.high - estimate.low).mean())
    # nominal 0.8 (at most 0.8 + 2/61 in expectation); 6 x 60 evaluations: sampling error about 0.03
    assert 0.72 <= np.mean(achieved) <= 0.93, achieved
    assert np.mean(widths) < 0.6, widths  # informative intervals, not [0, 1]
