"""BaseDetector: the predict / threshold_ / verdicts contract and how bundle contents errors are reported."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from conftest import chained_table
from sklearn.metrics import roc_auc_score

from segqc.config import TrainingConfig
from segqc.detectors.base import BaseDetector
from segqc.detectors.tabular import TabularQC
from segqc.errors import BundleError, NotFittedError
from segqc.verdicts import Calibration


class FixedScores(BaseDetector):
    """A detector whose scores are its input: the contract without any training."""

    def __init__(self, training: TrainingConfig | None = None) -> None:
        self.training = training

    def decision_function(self, data) -> np.ndarray:
        self._check_fitted()
        return np.asarray(data, dtype=np.float64)


def fitted(review: float = 1.0, fail: float = 2.0) -> FixedScores:
    detector = FixedScores()
    detector.calibration_ = Calibration(review, fail, 0.95, 0.99, 100)
    return detector


def test_an_unfitted_detector_refuses_thresholds_predictions_and_verdicts() -> None:
    detector = FixedScores()
    for use in (lambda: detector.threshold_, lambda: detector.predict([0.5]), lambda: detector.verdicts([0.5])):
        with pytest.raises(NotFittedError, match="FixedScores is not fitted"):
            use()


def test_predict_flags_scores_strictly_above_the_review_threshold() -> None:
    detector = fitted(review=1.0, fail=2.0)
    assert detector.threshold_ == 1.0
    predictions = detector.predict([-3.0, 0.99, 1.0, 1.01, 2.5])
    assert predictions.dtype == np.int64
    np.testing.assert_array_equal(predictions, [0, 0, 0, 1, 1])


def test_verdicts_grade_scores_by_both_thresholds() -> None:
    verdicts = fitted(review=1.0, fail=2.0).verdicts(np.array([0.0, 1.0, 1.5, 2.0, 2.1, np.nan, np.inf]))
    assert list(verdicts) == ["pass", "pass", "review", "review", "fail", "fail", "fail"]


@pytest.mark.parametrize(("device", "expected"), [("cpu", "cpu"), ("auto", "cuda" if torch.cuda.is_available()
                                                                      else "cpu")])
def test_the_scoring_device_is_the_training_configs(device: str, expected: str) -> None:
    assert FixedScores(TrainingConfig(device=device)).scoring_device.type == expected
    assert FixedScores().scoring_device == FixedScores(TrainingConfig()).scoring_device


def test_calibration_uses_held_out_scores_and_falls_back_to_training_rows_with_a_warning(caplog) -> None:
    detector = FixedScores()
    scores = np.concatenate([np.arange(100.0), 1000.0 + np.arange(100.0)])
    detector._calibrate(scores, np.arange(100), np.arange(100, 200), 0.5, 0.9)
    assert detector.calibration_.review >= 1000.0 and detector.calibration_.num_samples == 100
    assert detector.decision_scores_ is scores
    with caplog.at_level(logging.WARNING, logger="segqc"):
        detector._calibrate(scores, np.arange(100), np.array([], dtype=int), 0.5, 0.9)
    assert detector.calibration_.review < 100.0 and "no validation samples" in caplog.text


@pytest.mark.parametrize("error", [ValueError("calibration thresholds are not finite\nsecond line"),
                                   KeyError("calibration"), TypeError("unexpected keyword 'x'"),
                                   RuntimeError("size mismatch for stem.weight")],
                         ids=lambda error: type(error).__name__)
def test_inconsistent_contents_become_a_bundle_error_naming_the_bundle(error: Exception, tmp_path) -> None:
    bundle = tmp_path / "model"
    with pytest.raises(BundleError) as caught, BaseDetector._bundle_errors(bundle):
        raise error
    message = str(caught.value)
    assert message.startswith(f"{bundle}: inconsistent bundle contents ({type(error).__name__}: ")
    assert "\n" not in message and "second line" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_other_errors_pass_through_and_clean_blocks_are_untouched(tmp_path) -> None:
    with pytest.raises(OSError), BaseDetector._bundle_errors(tmp_path):
        raise OSError("disk full")
    with BaseDetector._bundle_errors(tmp_path):
        value = 1
    assert value == 1


def test_the_saved_training_config_keeps_its_device_unless_one_is_given() -> None:
    metadata = {"training": dataclasses.asdict(TrainingConfig(steps=7, device="cuda"))}
    assert BaseDetector._saved_training(metadata, None) == TrainingConfig(steps=7, device="cuda")
    assert BaseDetector._saved_training(metadata, "cpu") == TrainingConfig(steps=7, device="cpu")


@pytest.fixture(scope="module")
def tabular() -> TabularQC:
    from segqc.config import TabularModelConfig

    model = TabularModelConfig(levels=5, width=32, depth=2, embedding_size=16)
    training = TrainingConfig(steps=150, batch_size=128, lr=1e-2, val_every=50, checkpoint_every=0, device="cpu")
    return TabularQC(model, training, id_column="id").fit(chained_table(500, seed=0)[0])


def test_a_fitted_tabular_detector_predicts_by_its_review_threshold(tabular: TabularQC) -> None:
    test, is_anomaly = chained_table(300, seed=1, anomalies=30)
    scores = tabular.decision_function(test)
    assert tabular.threshold_ == tabular.calibration_.review
    predictions = tabular.predict(test)
    np.testing.assert_array_equal(predictions, (scores > tabular.threshold_).astype(np.int64))
    assert roc_auc_score(is_anomaly, scores) >= 0.85
    assert predictions[is_anomaly].mean() > 0.5 > predictions[~is_anomaly].mean()
    np.testing.assert_array_equal(tabular.verdicts(scores) != "pass", predictions.astype(bool))
