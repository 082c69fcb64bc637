"""Whole volumes through the CLI: train then score NIfTI volumes on the 2D-slice and the 3D-patch routes."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from segqc.cli import app
from segqc.data.routes import volume_route
from segqc.synthetic import phantoms

CONFIGS = {
    "slices": """
data: {spatial_dims: 2, spatial_size: [32, 32], slice_axis: 2}
model: {levels: 3, max_components: 1, degradations_per_case: 4, network: {nf: 8, ch_mult: [1, 2], num_res_blocks: 1}}
training: {steps: 20, batch_size: 8, val_every: 10, checkpoint_every: 0, device: cpu, val_fraction: 0.3}
""",
    "patches": """
data: {spatial_dims: 3, spatial_size: [16, 16, 16], patches: true, crop_margin: 4}
model: {levels: 3, max_components: 1, degradations_per_case: 4, network: {nf: 8, ch_mult: [1, 2], num_res_blocks: 1}}
training: {steps: 20, batch_size: 4, val_every: 10, checkpoint_every: 0, device: cpu, val_fraction: 0.3}
""",
}


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> Path:
    """12 labelled training volumes and 3 predictions with ground truth (40 x 40 x 24, labels 0, 1, 2)."""
    root = tmp_path_factory.mktemp("volumes")
    phantoms.write_cases(phantoms.make_training_set(12, (40, 40, 24), seed=0), root / "train", fmt="nii.gz")
    phantoms.write_cases(phantoms.make_prediction_set(3, (40, 40, 24), seed=1), root / "test", fmt="nii.gz")
    return root


@pytest.mark.parametrize("route", ["slices", "patches"])
def test_volume_rows_on_both_routes(volumes: Path, route: str) -> None:
    runner = CliRunner()
    (volumes / f"{route}.yaml").write_text(CONFIGS[route])
    trained = runner.invoke(app, ["train", "--images", str(volumes / "train/images"), "--masks",
                                  str(volumes / "train/masks"), "--out", str(volumes / f"model-{route}"), "--config",
                                  str(volumes / f"{route}.yaml")])
    assert trained.exit_code == 0, trained.output
    report = volumes / f"report-{route}"
    scored = runner.invoke(app, ["score", str(volumes / "test/predictions"), "--images", str(volumes / "test/images"),
                                 "--model", str(volumes / f"model-{route}"), "--out", str(report),
                                 "--ground-truth", str(volumes / "test/masks")])
    assert scored.exit_code == 0, scored.output
    table = pd.read_csv(report / "scores.csv")
    assert sorted(table["case_id"]) == ["pred_0000", "pred_0001", "pred_0002"]  # one row per volume
    for column in ("predicted_dice", "predicted_dice_low", "predicted_dice_high", "predicted_dice_1",
                   "predicted_dice_2_low", "verdict_1", "worst_slices_2", "dice_mean", "dice_1", "hd95", "msd_2",
                   "hd95_1", "card"):
        assert column in table, column
    assert table["verdict"].isin(["pass", "review", "fail"]).all()
    assert ((table["predicted_dice_low"] <= table["predicted_dice"])
            & (table["predicted_dice"] <= table["predicted_dice_high"])).all()
    truth = nib.load(volumes / "test/masks/pred_0001.nii.gz").get_fdata()
    prediction = nib.load(volumes / "test/predictions/pred_0001.nii.gz").get_fdata()
    both = 2 * ((truth == 1) & (prediction == 1)).sum() / ((truth == 1).sum() + (prediction == 1).sum())
    assert table.set_index("case_id").loc["pred_0001", "dice_1"] == pytest.approx(both)  # 3D Dice in the file grid
    units = pd.read_csv(report / "slices.csv")
    assert set(units["volume"]) == set(table["case_id"])
    assert units.groupby("volume").size().to_dict() == table.set_index("case_id")["units"].to_dict()
    assert all((report / card).is_file() for card in table["card"])
    assert 'id="volumes"' in (report / "report.html").read_text()


def _nifti(path: Path, zooms: tuple[float, float, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), np.diag([*zooms, 1.0])), path)


@pytest.mark.parametrize(("zooms", "route", "axis"), [((0.8, 0.8, 5.0), "slices", 2), ((1.0, 1.0, 1.5), "patches",
                                                                                    None)])
def test_train_picks_the_route_from_the_voxel_size(tmp_path: Path, zooms, route: str, axis: int | None) -> None:
    for folder in ("images", "masks"):
        _nifti(tmp_path / folder / "case.nii.gz", zooms)
    chosen = volume_route(tmp_path / "images", tmp_path / "masks")
    assert (chosen.name, chosen.slice_axis) == (route, axis)
    assert ("thicker" in chosen.reason) == (route == "slices")
