"""What every segqc detector shares: thresholds, verdicts and ``predict``.

Contract (scikit-learn / PyOD): ``__init__`` stores its arguments only; ``fit``
returns ``self``; fitted attributes end in ``_``; ``decision_function`` gives
anomaly scores where higher means more anomalous; ``predict`` gives 1 for an
anomaly (score above ``threshold_``) and 0 otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segqc.density import Calibration
from segqc.errors import NotFittedError


class BaseDetector:
    """Shared behaviour; subclasses implement ``fit`` and ``decision_function``."""

    calibration_: Calibration

    def _check_fitted(self) -> None:
        if not hasattr(self, "calibration_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted; call fit() or load() first")

    def decision_function(self, data: Any) -> np.ndarray:  # pragma: no cover - abstract
        """Anomaly score per sample (higher = more anomalous)."""
        raise NotImplementedError

    @property
    def threshold_(self) -> float:
        """Score above which a sample is an anomaly (the ``review`` threshold)."""
        self._check_fitted()
        return self.calibration_.review

    def predict(self, data: Any) -> np.ndarray:
        """1 for anomalies (score above ``threshold_``), 0 for inliers."""
        return (self.decision_function(data) > self.threshold_).astype(np.int64)

    def verdicts(self, scores: np.ndarray) -> np.ndarray:
        """``pass`` / ``review`` / ``fail`` for precomputed scores."""
        self._check_fitted()
        return self.calibration_.verdicts(scores)
