"""The score job: option checks, the predictions-or-segmenter rule, model defaults and a small scoring run."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from segqc.detectors.image import ImageQC
from segqc.errors import ConfigError, OutputError
from segqc.jobs.score import FAILED_QC_EXIT_CODE, ScoreOptions, resolved_options, score_predictions
from segqc.jobs.segment import SegmenterRequest
from segqc.synthetic import phantoms

SPEC = "python:segmenter_fixtures:threshold_segmenter"


@pytest.mark.parametrize(("options", "says"), [
    ({"incremental": True}, "--incremental needs --history"),
    ({"top_k": 0}, "--top-k 0: expected at least 1"),
    ({"top_k": -3}, "--top-k -3: expected at least 1"),
    ({"dice_threshold": 0.0}, "--dice-threshold 0.0: expected a Dice in (0, 1]"),
    ({"dice_threshold": 1.5}, "--dice-threshold 1.5: expected a Dice in (0, 1]"),
    ({"dice_threshold": -0.2}, "--dice-threshold -0.2: expected a Dice in (0, 1]"),
    ({"fail_on": -1}, "--fail-on -1: expected a number of cases >= 0"),
    ({"verdicts": "qualty"}, "--verdicts 'qualty': expected one of quality, score"),
])
def test_each_bad_option_is_a_config_error_naming_it(options: dict, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ScoreOptions(**options)
    assert str(caught.value).startswith(says)


def test_values_at_the_edges_of_their_ranges_are_accepted(tmp_path) -> None:
    options = ScoreOptions(top_k=1, dice_threshold=1.0, fail_on=0, verdicts="score", history=tmp_path / "h.db",
                           incremental=True)
    assert options.top_k == 1 and options.dice_threshold == 1.0 and options.fail_on == 0


@pytest.mark.parametrize("given", ["both", "neither"])
def test_score_predictions_needs_predictions_or_a_segmenter_not_both(given: str, tmp_path) -> None:
    kwargs = {"predictions": tmp_path / "predictions", "segmenter": SegmenterRequest(SPEC)} if given == "both" else {}
    with pytest.raises(ConfigError, match="either a PREDICTIONS folder or --segmenter"):
        score_predictions(tmp_path / "no-model", tmp_path / "images", tmp_path / "report", ScoreOptions(), **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def qc(image_model) -> ImageQC:
    return ImageQC.load(image_model[1], device="cpu")


def test_options_not_given_come_from_the_model(qc) -> None:
    assert qc.quality_ is None  # the tiny test model has too few held-out sources for a predicted-Dice estimator
    resolved = resolved_options(qc, ScoreOptions())
    assert resolved.verdicts == "score" and resolved.dice_threshold == qc.model.dice_threshold
    assert resolved_options(qc, ScoreOptions(dice_threshold=0.6)).dice_threshold == 0.6
    with pytest.raises(ConfigError, match="--verdicts quality: this model has no predicted-Dice estimator"):
        resolved_options(qc, ScoreOptions(verdicts="quality"))


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("score-job")
    phantoms.write_cases(phantoms.make_prediction_set(5, (32, 32), seed=4, failure_fraction=0.4), root, fmt="png")
    (root / "three.yaml").write_text("class_names: [background, organ, lesion]\n")
    (root / "four.yaml").write_text("class_names: [background, organ, lesion, other]\n")
    return root


def test_score_predictions_scores_a_folder_and_writes_the_report(image_model, cases, tmp_path) -> None:
    progress = []
    run = score_predictions(image_model[1], cases / "images", tmp_path / "report",
                            ScoreOptions(ground_truth=cases / "masks", top_k=2, fail_on=0),
                            predictions=cases / "predictions", device="cpu",
                            on_case=lambda done, total: progress.append((done, total)))
    assert run.is_writer and run.segmented is None and progress[-1] == (5, 5)
    assert len(run.table) == 5 and (run.table["status"] == "ok").all() and list(run.table["rank"]) == [1, 2, 3, 4, 5]
    written = pd.read_csv(tmp_path / "report" / "scores.csv")
    assert list(written["case_id"]) == list(run.table["case_id"]) and "dice_mean" in written
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary == json.loads(json.dumps(run.summary))
    assert (tmp_path / "report" / "report.html").is_file()
    failed = summary["verdicts"]["fail"]
    assert run.exit_code == (FAILED_QC_EXIT_CODE if failed > 0 else 0) == summary["exit"]["code"]


def test_score_predictions_refuses_a_report_inside_an_input_before_any_work(image_model, cases) -> None:
    with pytest.raises(OutputError, match="input"):
        score_predictions(image_model[1], cases / "images", cases / "predictions" / "report", ScoreOptions(),
                          predictions=cases / "predictions", device="cpu")
    assert not (cases / "predictions" / "report").exists()


def test_score_predictions_with_a_segmenter_scores_its_masks(image_model, cases, tmp_path) -> None:
    run = score_predictions(image_model[1], cases / "images", tmp_path / "report", ScoreOptions(),
                            segmenter=SegmenterRequest(SPEC, options=cases / "three.yaml"), device="cpu")
    assert run.segmented is not None and len(run.segmented.written) == 5
    assert all(path.parent == tmp_path / "report.predictions" for path in run.segmented.written)
    assert len(run.table) == 5 and (run.table["status"] == "ok").all()


def test_a_segmenter_with_more_classes_than_the_model_is_refused_before_writing(image_model, cases, tmp_path) -> None:
    with pytest.raises(ConfigError, match="--class-map"):
        score_predictions(image_model[1], cases / "images", tmp_path / "report", ScoreOptions(),
                          segmenter=SegmenterRequest(SPEC, options=cases / "four.yaml"), device="cpu")
    assert list(tmp_path.iterdir()) == []
