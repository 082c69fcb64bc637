"""From score-norm embeddings to anomaly scores, thresholds and verdicts (MSMA).

The multiscale embedding ``eta(x)`` of every inlier (one squared score norm per
noise level) is log-transformed, standardised and modelled with a scikit-learn
``GaussianMixture`` whose number of components is chosen by BIC. The anomaly
score of a point is ``-log p(eta(x))``: higher = more anomalous. Calibration
turns quantiles of held-out inlier scores into review / fail thresholds.

The tabular mode uses :class:`VariableNormDensity` instead: one squared score
norm per variable and level, each compared with the inliers' median on a log
scale, and only norms *above* the inlier median add to the score.

Everything fitted is kept as plain arrays (see :meth:`EmbeddingDensity.to_arrays`)
so a model bundle never needs pickle.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from segqc.errors import NotFittedError

logger = logging.getLogger(__name__)

def log_embedding(norms: np.ndarray) -> np.ndarray:
    """``log(eta + eps)``: squared norms span orders of magnitude across levels."""
    return np.log(np.asarray(norms, dtype=np.float64) + 1e-12)


class EmbeddingDensity:
    """StandardScaler + GaussianMixture on log score-norm embeddings.

    Args:
        max_components: Largest number of mixture components tried; BIC picks
            the number among ``1..max_components`` (fewer when data are scarce).
        covariance_type: GaussianMixture covariance type.
        reg_covar: Added to the covariance diagonals for stability.
        seed: Seed of the mixture's initialisation.
    """

    def __init__(self, max_components: int = 8, covariance_type: str = "full", reg_covar: float = 1e-4,
                 seed: int = 0) -> None:
        self.max_components = max_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.seed = seed

    def fit(self, norms: np.ndarray) -> EmbeddingDensity:
        """Fit the density to inlier embeddings.

        Args:
            norms: Squared score norms, shape ``(N, L)``.

        Returns:
            self
        """
        features = log_embedding(norms)
        self.scaler_ = StandardScaler().fit(features)
        self.scaler_.scale_ = np.where(self.scaler_.scale_ > 1e-8, self.scaler_.scale_, 1.0)
        scaled = self.scaler_.transform(features)
        # At least ~10 points per component and per dimension, so BIC is meaningful.
        limit = max(1, min(self.max_components, len(scaled) // (10 * max(1, min(scaled.shape[1], 5)))))
        best, best_bic = None, np.inf
        # Small (N, L) matrices: BLAS threads cost more than they save, badly so on busy machines.
        with threadpool_limits(limits=1):
            for k in range(1, limit + 1):
                mixture = GaussianMixture(k, covariance_type=self.covariance_type, reg_covar=self.reg_covar,
                                          random_state=self.seed, n_init=1).fit(scaled)
                bic = mixture.bic(scaled)
                if bic < best_bic:
                    best, best_bic = mixture, bic
        self.mixture_ = best
        logger.info("density: %d mixture components (BIC %.1f)", best.n_components, best_bic)
        return self

    @property
    def n_components_(self) -> int:
        """Number of mixture components chosen."""
        return int(self.mixture_.n_components)

    def score(self, norms: np.ndarray) -> np.ndarray:
        """Anomaly scores ``-log p(eta)`` of embeddings ``(N, L)`` -> ``(N,)``."""
        if not hasattr(self, "mixture_"):
            raise NotFittedError("the density model is not fitted")
        scaled = self.scaler_.transform(log_embedding(norms))
        return -self.mixture_.score_samples(scaled)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Fitted parameters as named arrays (for an ``.npz`` file)."""
        m = self.mixture_
        return {"scaler_mean": self.scaler_.mean_, "scaler_scale": self.scaler_.scale_,
                "weights": m.weights_, "means": m.means_, "covariances": m.covariances_,
                "precisions_cholesky": m.precisions_cholesky_}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], covariance_type: str = "full") -> EmbeddingDensity:
        """Rebuild a fitted density from :meth:`to_arrays` output."""
        density = cls(max_components=len(arrays["weights"]), covariance_type=covariance_type)
        density.scaler_ = StandardScaler()
        density.scaler_.mean_ = np.asarray(arrays["scaler_mean"], dtype=np.float64)
        density.scaler_.scale_ = np.asarray(arrays["scaler_scale"], dtype=np.float64)
        density.scaler_.var_ = density.scaler_.scale_**2
        density.scaler_.n_features_in_ = density.scaler_.mean_.shape[0]
        mixture = GaussianMixture(len(arrays["weights"]), covariance_type=covariance_type)
        mixture.weights_ = np.asarray(arrays["weights"])
        mixture.means_ = np.asarray(arrays["means"])
        mixture.covariances_ = np.asarray(arrays["covariances"])
        mixture.precisions_cholesky_ = np.asarray(arrays["precisions_cholesky"])
        mixture.n_features_in_ = mixture.means_.shape[1]
        density.mixture_ = mixture
        return density


class VariableNormDensity:
    """One-sided robust model of per-variable, per-level score norms (tabular head).

    For every level ``l`` and variable ``v`` the log squared score norm of
    inlier rows has median ``m_lv`` and scaled median absolute deviation
    ``d_lv`` (at least ``min_scale``). A row's standardised norm is
    ``z_lv = (log n_lv - m_lv) / d_lv`` and its anomaly score is
    ``sum_lv max(z_lv, 0) / L``: every variable counts on the same scale,
    whatever its type or number of categories, and a norm below the inlier
    median (a row sitting on a mode of the learned density) never counts
    against the row.

    Args:
        min_scale: Floor of ``d_lv`` (log units), for variables whose inlier
            norms barely vary.
    """

    def __init__(self, min_scale: float = 0.05) -> None:
        self.min_scale = min_scale

    def fit(self, norms: np.ndarray) -> VariableNormDensity:
        """Robust location and scale of inlier norms.

        Args:
            norms: Squared score norms, shape ``(N, L, V)``.

        Returns:
            self
        """
        logs = log_embedding(norms)
        self.median_ = np.median(logs, axis=0)
        self.scale_ = np.maximum(1.4826 * np.median(np.abs(logs - self.median_), axis=0), self.min_scale)
        return self

    def contributions(self, norms: np.ndarray) -> np.ndarray:
        """Each variable's share of the score, ``(N, L, V)`` -> ``(N, V)`` (sums to the score)."""
        if not hasattr(self, "median_"):
            raise NotFittedError("the density model is not fitted")
        z = (log_embedding(norms) - self.median_) / self.scale_
        return np.clip(z, 0.0, None).mean(axis=1)

    def score(self, norms: np.ndarray) -> np.ndarray:
        """Anomaly scores of norms ``(N, L, V)`` -> ``(N,)`` (higher = more anomalous)."""
        return self.contributions(norms).sum(axis=1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Fitted parameters as named arrays (for an ``.npz`` file)."""
        return {"median": self.median_, "scale": self.scale_}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> VariableNormDensity:
        """Rebuild a fitted density from :meth:`to_arrays` output."""
        density = cls()
        density.median_ = np.asarray(arrays["median"], dtype=np.float64)
        density.scale_ = np.asarray(arrays["scale"], dtype=np.float64)
        if density.median_.ndim != 2 or density.median_.shape != density.scale_.shape:
            raise ValueError(f"median {density.median_.shape} and scale {density.scale_.shape} must be (L, V)")
        return density
