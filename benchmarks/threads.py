"""Training on a shared machine: thread oversubscription with and without ``--threads``.

Several ``segqc train`` processes run at once on the same machine (as nightly
jobs of several teams do). Each process left alone uses one thread per core, so
``P`` processes ask for ``P x cores`` threads and PyTorch's OpenMP pools spin
against each other; ``--threads N`` (or ``OMP_NUM_THREADS``) caps each process.
For each scenario the benchmark starts the processes together and reports each
one's training speed (steps / training seconds, from the bundle) and the wall
time of the whole scenario.

Usage::

    python benchmarks/threads.py --out docs/benchmarks-threads.md [--processes 3] [--steps 60]

Run it alone on the machine: anything else running changes the figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segqc.synthetic import phantoms  # noqa: E402


def run_scenario(data: Path, work: Path, processes: int, steps: int, threads: int | None) -> dict:
    """Start ``processes`` trainings together; steps/s of each and the scenario's wall time."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    commands = []
    for index in range(processes):
        out = work / f"model-{threads}-{processes}-{index}"
        command = [sys.executable, "-m", "segqc", "train", "--images", str(data / "images"), "--masks",
                   str(data / "masks"), "--out", str(out), "--config", "small", "--steps", str(steps),
                   "--seed", str(index), "--device", "cpu"]
        if threads is not None:
            command += ["--threads", str(threads)]
        commands.append((out, command))
    started = time.perf_counter()
    running = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for _, command in commands]
    for process in running:
        _, stderr = process.communicate()
        if process.returncode:
            raise SystemExit(f"training failed: {stderr.decode()[-500:]}")
    wall = time.perf_counter() - started
    rates = []
    for out, _ in commands:
        summary = json.loads((out / "segqc.json").read_text())["training_summary"]
        rates.append(steps / summary["seconds"])
    return {"processes": processes, "threads": threads, "rates": rates, "wall": wall,
            "command": shlex.join(commands[0][1][1:]).replace(str(work), "WORK").replace(str(data), "DATA")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-threads.md")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--cases", type=int, default=60)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    per_process = max(cores // args.processes, 1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        phantoms.write_cases(phantoms.make_training_set(args.cases, (64, 64), seed=0), data, fmt="png")
        scenarios = [run_scenario(data, work, 1, args.steps, None),
                     run_scenario(data, work, args.processes, args.steps, None),
                     run_scenario(data, work, args.processes, args.steps, per_process)]
    lines = [
        "# Training on a shared machine: `--threads`",
        "",
        f"Command: `python benchmarks/threads.py --processes {args.processes} --steps {args.steps} "
        f"--cases {args.cases}`  ",
        f"Date: {datetime.date.today()}; machine: {platform.machine()}, {cores} cores, torch {torch.__version__}; "
        "nothing else running.",
        "",
        f"Each process runs `segqc train` with the `small` preset (2D 64 x 64, batch 16) for {args.steps} "
        "steps on phantom pairs; all processes of a scenario start together. Steps/s is steps / training seconds "
        "of each process (from its bundle); wall time covers the whole scenario (reading, training, density, "
        "saving).",
        "",
        "| scenario | threads per process | steps/s per process (min / max) | wall time (s) |",
        "|---|---|---|---|",
    ]
    for scenario in scenarios:
        name = "alone" if scenario["processes"] == 1 else f"{scenario['processes']} processes at once"
        threads = scenario["threads"] or f"default ({torch.get_num_threads()})"
        lines.append(f"| {name} | {threads} | {min(scenario['rates']):.2f} / {max(scenario['rates']):.2f} | "
                     f"{scenario['wall']:.1f} |")
    default, capped = scenarios[1], scenarios[2]
    lines += ["", f"With `--threads {per_process}` the slowest process trains "
              f"{min(capped['rates']) / min(default['rates']):.1f}x as fast as without it, and the scenario takes "
              f"{capped['wall'] / default['wall']:.2f}x the wall time.", "",
              "Rule of thumb for cron jobs: `--threads` = cores / concurrent segqc processes (or export "
              "`OMP_NUM_THREADS`).", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
