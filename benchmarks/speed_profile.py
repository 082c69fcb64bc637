"""Where the time of ``train`` and ``score`` goes (issue 31), for this checkout and, optionally, an earlier one.

Two runs per checkout, each in a fresh subprocess with 2 torch threads:

* **score**: :func:`benchmarks.scoring.profile_one`, ``--cases`` phantom predictions at 64 x 64 with ground
  truth and the full report, split by part under cProfile (the model: the ``image2d-small`` preset trained for
  20 steps by this checkout, :func:`benchmarks.scoring.make_model`; both checkouts score this one bundle);
* **train**: ``ImageQC.fit_folders`` with the ``image2d-small`` preset at ``--steps`` steps on ``--pairs`` phantom
  pairs of ``--size`` pixels (what ``segqc train`` runs), timed by phase: reading, network training, the
  density's embedding, the reconstruction choice, the quality estimator's teaching set, saving. Everything but
  the network training is independent of the step count, so the preset's full run costs about
  ``phases + network training * preset steps / --steps``.

``--before DIR`` profiles the checkout in DIR too (``git worktree add DIR COMMIT``) and puts both side by side.

Usage::

    python benchmarks/speed_profile.py --before /tmp/before --out docs/benchmarks-speed.md

Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

TRAINING_PHASES = {
    "read + preprocess": ("segqc.detectors.image", None, "prepare_dataset"),
    "network training": ("segqc.detectors.image", "ImageQC", "_train"),
    "embedding of every pair (density)": ("segqc.detectors.image", "ImageQC", "embed"),
    "density + thresholds": ("segqc.detectors.image", "ImageQC", "_fit_density"),
    "reconstruction choice (both ways)": ("segqc.detectors.image", "ImageQC", "_choose_reconstruction"),
    "quality estimator (teaching set)": ("segqc.detectors.image", "ImageQC", "_fit_quality"),
    "save": ("segqc.detectors.image", "ImageQC", "save"),
}
"""Phase name -> (module, class or None, function). Phases nested in another phase count in the outer one."""


def _timed_phases() -> dict[str, float]:
    """Wrap :data:`TRAINING_PHASES` with timers; returns the dict they add their seconds to."""
    import importlib

    seconds: dict[str, float] = {}
    depth = [0]

    def timed(name: str, function: Any) -> Any:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
        return wrapper

    for name, (module_name, class_name, attribute) in TRAINING_PHASES.items():
        module = importlib.import_module(module_name)
        if class_name is None:
            setattr(module, attribute, timed(name, getattr(module, attribute)))
            continue
        owner = getattr(module, class_name)
        raw = next(c.__dict__[attribute] for c in owner.__mro__ if attribute in c.__dict__)
        setattr(owner, attribute, staticmethod(timed(name, raw.__func__)) if isinstance(raw, staticmethod)
                else timed(name, raw))
    return seconds


def profile_training(work: Path, steps: int, pairs: int, size: int) -> dict[str, Any]:
    """Seconds per training phase of the ``image2d-small`` preset at ``steps`` steps (this process)."""
    import yaml

    from segqc.config import ImageModelConfig, TrainingConfig, from_mapping
    from segqc.data.preprocess import PreprocessConfig
    from segqc.detectors.image import ImageQC
    from segqc.synthetic import phantoms

    folder = work / "pairs"
    phantoms.write_cases(phantoms.make_training_set(pairs, (size, size), seed=0), folder, fmt="png")
    preset = yaml.safe_load((Path(sys.modules["segqc"].__file__).parent / "presets" / "image2d-small.yaml")
                            .read_text())
    seconds = _timed_phases()
    qc = ImageQC(from_mapping(ImageModelConfig, preset["model"], "model"),
                 from_mapping(TrainingConfig, {**preset["training"], "steps": steps, "device": "cpu"}, "training"),
                 preprocess=from_mapping(PreprocessConfig, preset["data"], "data"))
    started = time.perf_counter()
    qc.fit_folders(folder / "images", folder / "masks")
    qc.save(work / "model")
    total = time.perf_counter() - started
    return {"steps": steps, "preset_steps": preset["training"]["steps"], "total": total,
            "parts": {**seconds, "everything else": total - sum(seconds.values())}}


def child(code: Path, kind: str, work: Path, options: dict[str, Any]) -> None:
    """In a subprocess: import segqc from ``code``, run one profile, print its JSON."""
    sys.path.insert(0, str(code))
    import torch

    import segqc

    assert Path(segqc.__file__).is_relative_to(code), segqc.__file__
    torch.set_num_threads(2)
    sys.path.insert(1, str(ROOT))
    from benchmarks import scoring  # segqc is already imported from ``code``

    if kind == "model":
        result = {"model": str(scoring.make_model("image2d-small", work))}
    elif kind == "score":
        result = scoring.profile_one(Path(options["model"]), options["cases"], work)
        result["machine_gflops"] = scoring.machine_flops(2) / 1e9
    else:
        result = profile_training(work, options["steps"], options["pairs"], options["size"])
    git = ["git", "-C", str(code)]
    changed = subprocess.run([*git, "status", "--porcelain", "--", "segqc"], capture_output=True, text=True,
                             check=False).stdout.strip()
    result["commit"] = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                      check=False).stdout.strip() + (" + uncommitted changes" if changed else "")
    print("RESULT " + json.dumps(result))


def run_checkout(code: Path, kind: str, work: Path, options: dict[str, Any]) -> dict[str, Any]:
    """One profile of the checkout ``code`` in a fresh subprocess."""
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--code", str(code), "--work", str(work),
                          "--options", json.dumps(options)], capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{kind} profile of {code} failed:\n{out.stderr[-3000:]}")
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])


def _table(title: str, runs: dict[str, dict[str, Any]], unit: str) -> list[str]:
    names = list(runs)
    lines = [f"## {title}", "", "| part | " + " | ".join(f"{n} (s)" for n in names) + " | share (last) |",
             "|---|" + "---|" * (len(names) + 1)]
    last = runs[names[-1]]
    parts = list(last["parts"])
    for part in parts:
        cells = [f"{runs[n]['parts'].get(part, float('nan')):.2f}" for n in names]
        lines.append(f"| {part} | " + " | ".join(cells) + f" | {last['parts'][part] / last['total']:.0%} |")
    lines.append("| **total** | " + " | ".join(f"**{runs[n]['total']:.2f}**" for n in names) + " | |")
    lines.append("")
    lines.append(unit)
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="an earlier checkout to profile beside this one")
    parser.add_argument("--cases", type=int, default=200, help="phantom predictions scored")
    parser.add_argument("--steps", type=int, default=150, help="training steps profiled")
    parser.add_argument("--pairs", type=int, default=300, help="training pairs")
    parser.add_argument("--size", type=int, default=96, help="side of the training pairs in pixels")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-speed.md")
    parser.add_argument("--child", choices=("model", "score", "train"), help=argparse.SUPPRESS)
    parser.add_argument("--code", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.code, args.child, args.work, json.loads(args.options))
        return
    options = {"cases": args.cases, "steps": args.steps, "pairs": args.pairs, "size": args.size}
    checkouts = {"before": args.before.resolve()} if args.before else {}
    checkouts["now"] = ROOT
    score, train = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        options["model"] = run_checkout(ROOT, "model", Path(tmp), options)["model"]
        for name, code in checkouts.items():
            score[name] = run_checkout(code, "score", Path(tmp) / f"score-{name}", options)
            train[name] = run_checkout(code, "train", Path(tmp) / f"train-{name}", options)
            print(name, score[name]["total"], train[name]["total"], flush=True)
    labels = {name: f"{name} ({score[name]['commit']})" for name in checkouts}
    score = {labels[n]: r for n, r in score.items()}
    train = {labels[n]: r for n, r in train.items()}
    command = "python benchmarks/speed_profile.py" + (f" --before {args.before}" if args.before else "") + (
        f" --cases {args.cases} --steps {args.steps} --pairs {args.pairs} --size {args.size}")
    gflops = ", ".join(f"{n}: {r['machine_gflops']:.0f}" for n, r in score.items())
    lines = ["# Where the time of `train` and `score` goes (CPU)", "",
             f"Command: `{command}`  ",
             (f"Date: {datetime.date.today()}; machine: {platform.machine()}, 2 cores, 2 torch threads; float32 "
              f"matrix-product speed measured in each scoring run (GFLOP/s): {gflops}."), ""]
    lines += _table(f"score: {args.cases} phantom predictions at 64 x 64 with ground truth and the report",
                    score, "cases/s: " + ", ".join(f"{n}: {args.cases / r['total']:.2f}" for n, r in score.items())
                    + ". Parts are cProfile's cumulative times (the profiler slows the run a little).")
    steps = next(iter(train.values()))["preset_steps"]
    lines += _table(f"train: `image2d-small` preset at {args.steps} steps, {args.pairs} pairs of {args.size} x "
                    f"{args.size}", train,
                    f"Estimated full run ({steps} steps, the network training scaled): " + ", ".join(
                        f"{n}: {r['total'] + r['parts']['network training'] * (steps / r['steps'] - 1):.0f} s"
                        for n, r in train.items()) + ".")
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
