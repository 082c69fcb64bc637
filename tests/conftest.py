"""Shared fixtures: small tables with planted anomalies and tiny, fast configs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from segqc.config import TabularModelConfig, TrainingConfig

# Tiny models are faster on one thread, and the suite must not oversubscribe 2 cores.
torch.set_num_threads(1)


def chained_table(n: int, seed: int = 0, anomalies: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows whose columns follow each other; anomalous rows break the chain.

    Returns:
        The table (4 categorical columns, 1 continuous, an id) and the anomaly mask.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, n)
    b = (a + (rng.random(n) < 0.05)) % 4
    c = np.where(b < 2, "low", "high")
    d = rng.choice(["x", "y", "z"], n)
    value = a * 2.0 + rng.normal(0, 0.3, n)
    is_anomaly = np.zeros(n, dtype=bool)
    if anomalies:
        rows = rng.choice(n, anomalies, replace=False)
        b[rows] = (a[rows] + 2) % 4
        value[rows] = (3 - a[rows]) * 2.0
        is_anomaly[rows] = True
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "a": a, "b": b.astype(str), "c": c, "d": d,
                          "value": value})
    return frame, is_anomaly


@pytest.fixture
def tiny_model() -> TabularModelConfig:
    return TabularModelConfig(levels=5, width=48, depth=2, embedding_size=16, max_components=3)


@pytest.fixture
def tiny_training() -> TrainingConfig:
    return TrainingConfig(steps=400, batch_size=128, lr=1e-2, val_every=50, checkpoint_every=100, device="cpu")


@pytest.fixture
def train_frame() -> pd.DataFrame:
    return chained_table(600, seed=0)[0]
