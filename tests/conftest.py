"""Shared fixtures: small tables with planted anomalies and tiny, fast configs."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from segqc.config import TabularModelConfig, TrainingConfig
from segqc.synthetic import phantoms

# Tiny models are faster on one thread, and the suite must not oversubscribe 2 cores.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")  # commands run by the tests compute on one thread too


def chained_table(n: int, seed: int = 0, anomalies: int = 0, noise: float = 0.05) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows whose columns follow each other; anomalous rows break the chain.

    Args:
        n: Rows.
        seed: Seed.
        anomalies: Anomalous rows (at random positions).
        noise: Share of typical rows whose ``b`` is one step off ``a`` (rare but not anomalous).

    Returns:
        The table (4 categorical columns, 1 continuous, an id) and the anomaly mask.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, n)
    b = (a + (rng.random(n) < noise)) % 4
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


def joint_table(n: int, seed: int = 0, anomalies: int = 0,
                kind: str = "joint") -> tuple[pd.DataFrame, np.ndarray]:
    """A mixed table whose anomalies look normal column by column.

    Inliers: ``a`` uniform on 0..3; ``b`` equals ``a`` (10 % random); ``c`` is
    ``low`` / ``high`` from ``a`` (5 % flipped); ``d`` independent;
    ``value ~ N(2a, 0.3)``.

    Args:
        n: Rows.
        seed: Seed.
        anomalies: Anomalous rows (at random positions).
        kind: ``joint``: every column of an anomaly is copied from a different
            random inlier (exact marginals, no dependencies); ``continuous``:
            only ``value`` changes, to ``2a + 4`` for rows with ``a`` in 0..1
            (another category's typical value, so its marginal is plausible).

    Returns:
        The table and the anomaly mask.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, n)
    b = np.where(rng.random(n) < 0.9, a, rng.integers(0, 4, n))
    c = np.where((a >= 2) ^ (rng.random(n) < 0.05), "high", "low")
    d = rng.choice(["x", "y", "z"], n)
    frame = pd.DataFrame({"a": a, "b": b.astype(str), "c": c, "d": d, "value": 2.0 * a + rng.normal(0, 0.3, n)})
    is_anomaly = np.zeros(n, dtype=bool)
    if kind == "continuous":
        rows = rng.choice(np.flatnonzero(a <= 1), anomalies, replace=False)
        frame.loc[rows, "value"] = 2.0 * a[rows] + 4 + rng.normal(0, 0.3, anomalies)
    else:
        rows = rng.choice(n, anomalies, replace=False)
        inliers = np.setdiff1d(np.arange(n), rows)
        for column in frame.columns:
            frame.loc[rows, column] = frame[column].to_numpy()[rng.choice(inliers, anomalies)]
    is_anomaly[rows] = True
    return frame, is_anomaly


@pytest.fixture
def tiny_model() -> TabularModelConfig:
    return TabularModelConfig(levels=5, width=48, depth=2, embedding_size=16)


@pytest.fixture
def tiny_training() -> TrainingConfig:
    return TrainingConfig(steps=400, batch_size=128, lr=1e-2, val_every=50, checkpoint_every=100, device="cpu")


@pytest.fixture
def train_frame() -> pd.DataFrame:
    return chained_table(600, seed=0)[0]


TINY_IMAGE_CONFIG = """
data: {spatial_dims: 2, spatial_size: [32, 32]}
model:
  levels: 3
  max_components: 1
  network: {nf: 8, ch_mult: [1, 2], num_res_blocks: 1}
training: {steps: 40, batch_size: 8, val_every: 20, checkpoint_every: 0, device: cpu}
"""


@pytest.fixture(scope="session")
def image_model(tmp_path_factory):
    """A tiny 2D QC model (labels 0, 1, 2) trained with `segqc train` on 24 phantom PNGs: (root, bundle)."""
    from typer.testing import CliRunner

    from segqc.cli import app
    from segqc.synthetic import phantoms

    root = tmp_path_factory.mktemp("image-model")
    phantoms.write_cases(phantoms.make_training_set(24, (32, 32), seed=0), root / "train", fmt="png")
    (root / "config.yaml").write_text(TINY_IMAGE_CONFIG)
    result = CliRunner().invoke(app, ["train", "--images", str(root / "train/images"), "--masks",
                                      str(root / "train/masks"), "--out", str(root / "model"), "--config",
                                      str(root / "config.yaml")])
    assert result.exit_code == 0, result.output
    return root, root / "model"


def masks_like(spatial: tuple[int, ...], count: int, seed: int) -> np.ndarray:
    """Phantom ground-truth masks (classes 0, 1, 2), ``(count, *spatial)``."""
    return np.stack([case.mask for case in phantoms.make_training_set(count, spatial, seed=seed)]).astype(np.int64)
