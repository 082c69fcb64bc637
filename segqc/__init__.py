"""segqc: find failed segmentations (and anomalous table rows) without ground truth.

Python API (imported lazily, so the command line starts fast)::

    from segqc import ImageQC, ScoreOptions, score_folder
    qc = ImageQC.load("qc-model")
    run = score_folder(qc, "predictions/", "images/", "report/", ScoreOptions(ground_truth="labels/"))
    run.summary["verdicts"], run.table.head(), run.exit_code

    from segqc import TabularQC
    scores = TabularQC.load("model/").decision_function("new.csv")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ImageQC": "segqc.detectors.image",
    "TabularQC": "segqc.detectors.tabular",
    "ImageModelConfig": "segqc.config",
    "TabularModelConfig": "segqc.config",
    "TrainingConfig": "segqc.config",
    "PreprocessConfig": "segqc.data.preprocess",
    "ScoreOptions": "segqc.jobs.score",
    "score_folder": "segqc.jobs.score",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'segqc' has no attribute {name!r}")
