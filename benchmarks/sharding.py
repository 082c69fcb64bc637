"""Scoring sharded over ``torchrun`` processes against one process: wall time, speed-up, same output.

One folder of phantom predictions (with ground truth) is scored by ``segqc score``
three ways, each in a fresh process tree, one after the other:

* one process with ``--threads 1``,
* one process with ``--threads T`` (every usable core),
* ``torchrun --nproc_per_node P`` processes with ``--threads T/P`` each (gloo on CPUs).

Every run writes the full report (heat maps, gallery, report.html). The table
gives wall times, cases/s and the speed-up of the sharded run over the
one-process run with every core, and checks that the sharded run's scores.csv
equals the one-process run's (to 6 significant digits: a different thread count
may change the last bits of float sums).

Usage::

    python benchmarks/sharding.py --cases 1000 --processes 2 --out docs/benchmarks-sharding.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scoring import FORMATS, make_model  # noqa: E402
from segqc.detectors.image import ImageQC  # noqa: E402
from segqc.synthetic import phantoms  # noqa: E402

CONFIG = "image2d-small"


def score_command(model: Path, cases: Path, out: Path, threads: int, processes: int) -> list[str]:
    """``segqc score`` of ``cases`` with ground truth, under ``torchrun`` when ``processes > 1``."""
    segqc = shutil.which("segqc") or "segqc"
    command = [segqc, "score", str(cases / "predictions"), "--images", str(cases / "images"), "--model", str(model),
               "--out", str(out), "--ground-truth", str(cases / "masks"), "--threads", str(threads)]
    if processes > 1:
        torchrun = shutil.which("torchrun") or "torchrun"
        return [torchrun, "--standalone", "--nproc_per_node", str(processes), *command]
    return command


def timed_run(command: list[str]) -> float:
    """Wall seconds of ``command`` (its output discarded; a failure raises)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    return time.perf_counter() - started


def same_scores(first: Path, second: Path) -> bool:
    """Whether two scores.csv hold the same cases with the same numbers (6 significant digits)."""
    a, b = (pd.read_csv(path / "scores.csv").sort_values("case_id").reset_index(drop=True) for path in (first, second))
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    numeric = a.select_dtypes("number").columns
    equal_text = a.drop(columns=numeric).astype(str).equals(b.drop(columns=numeric).astype(str))
    return equal_text and np.allclose(a[numeric], b[numeric], rtol=1e-6, atol=1e-9, equal_nan=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads of the one-process run (the sharded run splits them)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-sharding.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = [("1 process", 1, 1), (f"1 process, {args.threads} threads", args.threads, 1),
            (f"torchrun, {args.processes} processes x {max(1, args.threads // args.processes)} thread(s)",
             max(1, args.threads // args.processes), args.processes)]
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        model = make_model(CONFIG, work)
        size = tuple(ImageQC.load(model, device="cpu").preprocess.spatial_size)
        cases = work / "cases"
        phantoms.write_cases(phantoms.make_prediction_set(args.cases, size, seed=1), cases, fmt=FORMATS[len(size)])
        outputs = []
        for label, threads, processes in runs:
            out = work / f"report-{len(outputs)}"
            print(f"{label} ...", file=sys.stderr, flush=True)
            seconds = timed_run(score_command(model, cases, out, threads, processes))
            outputs.append(out)
            rows.append((label, seconds))
        identical = same_scores(outputs[1], outputs[2])
    baseline = rows[1][1]
    lines = [
        "# Scoring sharded over `torchrun` processes",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/sharding.py', *sys.argv[1:]])}`",
        "",
        (f"- date: {datetime.date.today().isoformat()}; machine: {platform.machine()}, "
         f"{len(os.sched_getaffinity(0))} usable cores, no GPU; torch {torch.__version__}"),
        (f"- {args.cases} phantom predictions at {size[0]} x {size[1]} with ground truth, preset `{CONFIG}` "
         "(trained 20 steps: throughput does not depend on training); every run writes the full report"),
        "",
        "| run | wall time (s) | cases/s | speed-up over one process with every core |",
        "|---|---|---|---|",
        *(f"| {label} | {seconds:.1f} | {args.cases / seconds:.1f} | {baseline / seconds:.2f}x |"
          for label, seconds in rows),
        "",
        (f"The sharded run's scores.csv {'equals' if identical else 'DIFFERS FROM'} the one-process run's "
         "(every column, numbers to 6 significant digits)."),
        "",
    ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
