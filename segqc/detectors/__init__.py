"""Anomaly detectors with the scikit-learn / PyOD estimator contract."""
