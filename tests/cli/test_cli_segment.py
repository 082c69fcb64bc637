"""`segqc segment` and `segqc score --segmenter`: segment -> score -> report with every kind of segmenter."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from segqc.cli import app
from segqc.synthetic import phantoms

runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("segment")
    phantoms.write_cases(phantoms.make_training_set(6, (32, 32), seed=5), root / "cases", fmt="png")
    return root


def deeplab_files(root):
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    torch.manual_seed(0)
    weights = root / "deeplab.pth"
    torch.save(deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21).state_dict(), weights)
    class_map = root / "voc-to-qc.yaml"
    class_map.write_text("map: {background: 0, person: 1, cat: 2}\ndefault: 1\n")
    return ["--segmenter", "deeplabv3_mobilenet_v3_large", "--weights", str(weights), "--class-map", str(class_map)]


def torchscript_files(root):
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1))
    path = root / "net.pt"
    torch.jit.script(network).save(str(path))
    return ["--segmenter", f"torchscript:{path}"]


def monai_files(root):
    from monai.networks.nets import UNet

    args = {"spatial_dims": 2, "in_channels": 1, "out_channels": 3, "channels": [4, 8], "strides": [2]}
    torch.manual_seed(0)
    weights = root / "unet.pt"
    torch.save(UNet(**args).state_dict(), weights)
    options = root / "unet.json"
    options.write_text(json.dumps({"args": args, "class_names": ["background", "organ", "lesion"]}))
    return ["--segmenter", "monai:UNet", "--weights", str(weights), "--segmenter-options", str(options)]


def python_files(root):
    options = root / "python.yaml"
    options.write_text("class_names: [background, organ, lesion]\n")
    return ["--segmenter", "python:segmenter_fixtures:threshold_segmenter", "--segmenter-options", str(options)]


@pytest.mark.parametrize("kind", [deeplab_files, pytest.param(torchscript_files, marks=pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:FutureWarning")), monai_files, python_files])
def test_segment_then_score_then_report(images, image_model, kind) -> None:
    _, model = image_model
    work = images / kind.__name__
    work.mkdir()
    spec = kind(work)
    segmented = runner.invoke(app, ["segment", "--images", str(images / "cases/images"), "--out",
                                    str(work / "masks"), *spec, "--device", "cpu"])
    assert segmented.exit_code == 0, segmented.output
    assert len(list((work / "masks").glob("*.png"))) == 6
    scored = runner.invoke(app, ["score", "--images", str(images / "cases/images"), "--model", str(model), "--out",
                                 str(work / "report"), *spec, "--device", "cpu"])
    assert scored.exit_code == 0, scored.output
    table = pd.read_csv(work / "report" / "scores.csv")
    assert len(table) == 6 and (table["status"] == "ok").all(), table[["case_id", "message"]]
    assert (work / "report" / "report.html").is_file() and (work / "report.predictions").is_dir()


def test_errors_for_names_weights_and_class_counts(images, image_model, tmp_path) -> None:
    _, model = image_model
    result = runner.invoke(app, ["segment", "--images", str(images / "cases/images"), "--out", str(tmp_path / "m"),
                                 "--segmenter", "deeplabv3_mobilenet_v3_larg"])
    assert result.exit_code == 2 and "did you mean 'deeplabv3_mobilenet_v3_large'" in result.output
    result = runner.invoke(app, ["segment", "--images", str(images / "cases/images"), "--out", str(tmp_path / "m"),
                                 "--segmenter", "deeplabv3_mobilenet_v3_large"])
    assert result.exit_code == 2 and "--weights" in result.output
    torch.save(torch.nn.Conv2d(1, 1, 1).state_dict(), tmp_path / "wrong.pth")
    result = runner.invoke(app, ["segment", "--images", str(images / "cases/images"), "--out", str(tmp_path / "m"),
                                 "--segmenter", "deeplabv3_mobilenet_v3_large", "--weights", str(tmp_path / "wrong.pth")])
    assert result.exit_code == 2 and "wrong.pth" in result.output
    spec = deeplab_files(tmp_path)[:4]  # without a class map: 21 VOC classes cannot match labels 0, 1, 2
    result = runner.invoke(app, ["score", "--images", str(images / "cases/images"), "--model", str(model), "--out",
                                 str(tmp_path / "r"), *spec, "--device", "cpu"])
    assert result.exit_code == 2 and "--class-map" in result.output
