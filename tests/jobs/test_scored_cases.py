"""From prepared cases to scores.csv rows: score_cases, error rows and rank_table."""

from __future__ import annotations

import copy
import dataclasses

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segqc.data.cases import prepare_case
from segqc.data.pairing import CaseFiles
from segqc.detectors.image import ImageQC
from segqc.jobs import scored_cases
from segqc.jobs.scored_cases import FIRST_COLUMNS, error_row, rank_table, score_cases
from segqc.metrics import dice_per_class, mean_dice
from segqc.synthetic import phantoms


@pytest.fixture(scope="module")
def qc(image_model) -> ImageQC:
    return ImageQC.load(image_model[1], device="cpu")


@pytest.fixture(scope="module")
def cases_2d(tmp_path_factory):
    root = tmp_path_factory.mktemp("scored-cases")
    phantoms.write_cases(phantoms.make_prediction_set(4, (32, 32), seed=3, failure_fraction=0.5), root, fmt="png")
    return root


def files_of(root, case_id: str, suffix: str = ".png") -> CaseFiles:
    return CaseFiles(case_id, [root / "images" / f"{case_id}{suffix}"], root / "predictions" / f"{case_id}{suffix}")


def prepared_of(qc: ImageQC, files: list[CaseFiles]):
    return [case for one in files for case in prepare_case(one, qc.preprocess, qc.labels_)]


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int64)


def dice_of(prediction: np.ndarray, truth: np.ndarray, classes: int) -> float:
    return float(mean_dice(dice_per_class(prediction[None], truth[None], classes), prediction[None], truth[None])[0])


def test_rows_follow_the_cases_with_scores_norms_and_ground_truth_metrics(qc, cases_2d) -> None:
    ids = [f"pred_{i:04d}" for i in range(4)]
    prepared = prepared_of(qc, [files_of(cases_2d, case_id) for case_id in ids])
    truths = {case_id: cases_2d / "masks" / f"{case_id}.png" for case_id in ids[:3]}  # the last has none
    scored = score_cases(qc, prepared, truths)
    assert [row["case_id"] for row in scored.rows] == ids
    assert scored.heat.shape == (4, 32, 32) and scored.reconstruction.shape == (4, 32, 32)
    assert set(scored.truths) == set(ids[:3])
    direct = qc.assess(np.stack([c.image for c in prepared]), np.stack([c.mask for c in prepared])).scores
    for index, row in enumerate(scored.rows):
        assert row["status"] == "ok" and row["message"] == ""
        assert row["score"] == pytest.approx(float(direct[index]), rel=1e-6)
        assert row["prediction"] == str(cases_2d / "predictions" / f"{ids[index]}.png")
        assert [key for key in row if key.startswith("norm_")] == [f"norm_{k + 1}" for k in range(3)]
        assert 0 <= row["reconstruction_dice"] <= 1
    for row in scored.rows[:3]:
        truth = read_png(cases_2d / "masks" / f"{row['case_id']}.png")
        prediction = read_png(cases_2d / "predictions" / f"{row['case_id']}.png")
        assert row["dice_mean"] == pytest.approx(dice_of(prediction, truth, 3))
        assert row["ground_truth"].endswith(f"{row['case_id']}.png") and row["hd95"] >= 0
    assert "dice_mean" not in scored.rows[3] and "ground_truth" not in scored.rows[3]


def test_unusable_ground_truth_is_noted_and_the_case_still_scored(qc, cases_2d, tmp_path) -> None:
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(tmp_path / "labels.png")
    prepared = prepared_of(qc, [files_of(cases_2d, "pred_0000"), files_of(cases_2d, "pred_0001")])
    rows = score_cases(qc, prepared, {"pred_0000": tmp_path / "small.png",
                                      "pred_0001": tmp_path / "labels.png"}).rows
    assert [row["status"] for row in rows] == ["ok", "ok"] and all(np.isfinite(row["score"]) for row in rows)
    assert rows[0]["message"].startswith("ground truth not used:") and "small.png" in rows[0]["message"]
    assert rows[1]["message"].startswith("ground truth not used:") and "labels.png" in rows[1]["message"]
    assert "dice_mean" not in rows[0] and "dice_mean" not in rows[1]


def test_no_cases_give_an_empty_chunk(qc) -> None:
    scored = score_cases(qc, [], {})
    assert scored.rows == [] and scored.truths == {} and scored.heat.size == 0


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """Two 3-slice NIfTI volumes stacked from 2D phantoms, with predictions and ground truth."""
    root = tmp_path_factory.mktemp("volumes")
    for folder in ("images", "predictions", "masks"):
        (root / folder).mkdir()
    for index, case_id in enumerate(["vol_a", "vol_b"]):
        cases = phantoms.make_prediction_set(3, (32, 32), seed=10 + index, failure_fraction=0.7)
        arrays = {"images": np.stack([c.image[0] for c in cases]).astype(np.float32),
                  "predictions": np.stack([c.prediction for c in cases]).astype(np.uint8),
                  "masks": np.stack([c.mask for c in cases]).astype(np.uint8)}
        for folder, array in arrays.items():
            nib.save(nib.Nifti1Image(array, np.eye(4)), root / folder / f"{case_id}.nii.gz")
    return root


def test_slices_get_ground_truth_metrics_from_truth_prepared_once_per_volume(qc, volumes, monkeypatch) -> None:
    sliced = copy.copy(qc)
    sliced.preprocess = dataclasses.replace(qc.preprocess, slice_axis=0)
    files = [files_of(volumes, case_id, ".nii.gz") for case_id in ("vol_a", "vol_b")]
    prepared = prepared_of(sliced, files)
    assert [c.case_id for c in prepared] == [f"{v}#0:{k}" for v in ("vol_a", "vol_b") for k in range(3)]
    truths = {case_id: volumes / "masks" / f"{case_id}.nii.gz" for case_id in ("vol_a", "vol_b")}
    calls = []

    def counting(case_files, *args, **kwargs):
        calls.append(case_files.mask)
        return prepare_case(case_files, *args, **kwargs)

    monkeypatch.setattr(scored_cases, "prepare_case", counting)
    scored = score_cases(sliced, prepared, truths)
    assert sorted(calls) == sorted(truths.values())  # once per source file, not once per slice
    assert set(scored.truths) == {c.case_id for c in prepared}
    for row in scored.rows:
        volume, index = row["case_id"].split("#0:")
        truth = np.asarray(nib.load(volumes / "masks" / f"{volume}.nii.gz").dataobj)[int(index)].astype(np.int64)
        prediction = np.asarray(nib.load(volumes / "predictions" / f"{volume}.nii.gz").dataobj)[int(index)]
        assert row["message"] == ""
        assert row["dice_mean"] == pytest.approx(dice_of(prediction.astype(np.int64), truth, 3))
        np.testing.assert_array_equal(scored.truths[row["case_id"]], truth)
    assert len({row["dice_mean"] for row in scored.rows}) > 1


def test_an_error_row_names_the_case_its_files_and_why() -> None:
    from pathlib import Path

    row = error_row("case_7", CaseFiles("case_7", [Path("/in/case_7.png")], Path("/pred/case_7.png")), "unreadable")
    assert row["status"] == row["verdict"] == "error" and row["message"] == "unreadable" and np.isnan(row["score"])
    assert row["image"] == "/in/case_7.png" and row["prediction"] == "/pred/case_7.png"
    bare = error_row("case_8", CaseFiles("case_8", [], None), "no image")
    assert bare["image"] == "" and bare["prediction"] == ""


def table_of_rows() -> pd.DataFrame:
    from pathlib import Path

    ok = [{"case_id": name, "status": "ok", "message": "", "score": score, "extra": 1.0,
           "predicted_dice_low": low, "predicted_dice_high": high}
          for name, score, low, high in [("b", 0.5, 0.9, 0.95), ("a", 3.0, 0.2, 0.5), ("d", 1.0, 0.7, 0.9),
                                         ("c", 1.0, 0.85, 0.99)]]
    errors = [error_row(name, CaseFiles(name, [Path(f"{name}.png")], None), "bad") for name in ("z", "e")]
    return pd.DataFrame(ok[:2] + errors[:1] + ok[2:] + errors[1:])


def test_rank_table_puts_ranked_cases_first_then_errors(qc) -> None:
    table = rank_table(table_of_rows(), qc, "score", 0.8)
    assert list(table["case_id"]) == ["a", "d", "c", "b", "e", "z"]  # equal scores keep input order
    assert list(table["rank"][:4]) == [1, 2, 3, 4] and table["rank"][4:].isna().all()
    assert list(table["status"]) == ["ok"] * 4 + ["error"] * 2 and list(table.index) == list(range(6))
    assert list(table["verdict"][:4]) == list(qc.verdicts(np.array([3.0, 1.0, 1.0, 0.5])))
    assert list(table["verdict"][4:]) == ["error", "error"]
    leading = [c for c in FIRST_COLUMNS if c in table.columns]
    assert list(table.columns[:len(leading)]) == leading and "extra" in table.columns


def test_rank_table_with_the_quality_rule_judges_the_predicted_dice_interval(qc) -> None:
    rows = table_of_rows()
    rows.loc[rows["status"] == "ok", "verdict"] = "pass"  # as reused from an earlier run: judged again
    table = rank_table(rows, qc, "quality", 0.8).set_index("case_id")
    assert table.loc[["a", "b", "c", "d"], "verdict"].tolist() == ["fail", "pass", "pass", "review"]
    assert table.loc[["e", "z"], "verdict"].tolist() == ["error", "error"]


def test_rank_table_of_errors_only(qc) -> None:
    table = rank_table(table_of_rows().query("status == 'error'").reset_index(drop=True), qc, "score", 0.8)
    assert list(table["case_id"]) == ["e", "z"] and table["rank"].isna().all()
