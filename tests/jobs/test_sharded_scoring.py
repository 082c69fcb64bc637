"""Sharded scoring: `torchrun --nproc_per_node 2 segqc score` (gloo) gives the single-process report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd

from segqc.synthetic import phantoms


def test_two_ranks_write_the_single_process_report(image_model, tmp_path) -> None:
    _, model = image_model
    phantoms.write_cases(phantoms.make_prediction_set(9, (32, 32), seed=3, failure_fraction=0.5), tmp_path / "test",
                         fmt="png")
    (tmp_path / "test/predictions/broken.png").write_bytes(b"not a png")  # an error row on one of the ranks
    (tmp_path / "test/images/broken.png").write_bytes((tmp_path / "test/images/pred_0000.png").read_bytes())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def score(out: str, launcher: list[str]) -> pd.DataFrame:
        command = [*launcher, "-m", "segqc", "score", str(tmp_path / "test/predictions"), "--images",
                   str(tmp_path / "test/images"), "--model", str(model), "--out", str(tmp_path / out),
                   "--ground-truth", str(tmp_path / "test/masks"), "--history", str(tmp_path / f"{out}.sqlite")]
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert completed.returncode == 0, completed.stderr[-3000:]
        return pd.read_csv(tmp_path / out / "scores.csv", keep_default_na=False)

    single = score("single", [sys.executable])
    sharded = score("sharded", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                "--standalone"])
    assert list(sharded["case_id"]) == list(single["case_id"]) and len(single) == 10
    for column in ("rank", "verdict", "status", "message", "heatmap", "gallery"):
        assert list(sharded[column]) == list(single[column]), column
    ok = single["status"] == "ok"
    np.testing.assert_allclose(sharded.loc[ok, "score"].astype(float), single.loc[ok, "score"].astype(float),
                               rtol=1e-5)
    np.testing.assert_allclose(sharded.loc[ok, "dice_mean"].astype(float), single.loc[ok, "dice_mean"].astype(float))
    summary = json.loads((tmp_path / "sharded/summary.json").read_text())
    assert summary["run"]["cases"] == 10 and summary["run"]["errors"] == 1
    from segqc.history import RunHistory

    with RunHistory(tmp_path / "sharded.sqlite") as history:
        assert len(history.runs()) == 1
    assert (tmp_path / "sharded/report.html").is_file()
