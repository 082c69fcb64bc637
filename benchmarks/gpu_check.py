"""GPU check: train on CUDA with bf16 autocast, score on CUDA and on CPU from the same bundle, time both.

What it does (issue 12, item 4), on phantom PNGs (:mod:`segqc.synthetic.phantoms`):

1. trains the ``small`` preset's 2D model on CUDA with bf16 autocast
   (``training.amp``) for ``--steps`` steps through :meth:`ImageQC.fit` and saves the bundle;
2. times short training runs of the same network in fp32 on CUDA and on the CPU
   (:class:`segqc.fitting.trainer.Trainer`, steps/s only);
3. loads that one bundle on CPU and on CUDA and scores the prediction set:
   model only (:meth:`ImageQC.score_pairs` on prepared arrays) on the CPU (fp32),
   on CUDA as the library runs it (fp32 weights, PyTorch's TF32 defaults), on CUDA
   with TF32 off, and on CUDA under a bf16 autocast; then end to end
   (:func:`segqc.jobs.score.score_folder`, report included) on CPU and CUDA;
4. compares every CUDA score vector with the CPU one (max |difference|, Spearman,
   verdict agreement) and checks NCCL (one-process ``nccl`` group, all_reduce
   and a DDP step; two ranks cannot share one GPU under NCCL).

It never runs in the test suite. Without CUDA it exits with status 2 and one line,
unless ``--device cpu`` asks for a dry run of the script on the CPU.

Usage::

    python benchmarks/gpu_check.py --out /tmp/gpu-check [--steps 300] [--cases 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segqc.config import TrainingConfig  # noqa: E402
from segqc.data.cases import (
    prepare_dataset,
    stack,  # noqa: E402
)
from segqc.data.images import pair_cases  # noqa: E402
from segqc.detectors.image import ImageQC  # noqa: E402
from segqc.fitting.trainer import StepInfo, Trainer  # noqa: E402
from segqc.jobs.score import ScoreOptions, score_folder  # noqa: E402
from segqc.presets import preset_path  # noqa: E402
from segqc.synthetic import phantoms  # noqa: E402

WARMUP_STEPS = 5


def log(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def environment(device: str) -> dict[str, Any]:
    """Versions, the device and the numeric defaults that decide CUDA results."""
    info: dict[str, Any] = {
        "python": platform.python_version(), "machine": platform.machine(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "nccl_available": bool(torch.distributed.is_available() and torch.distributed.is_nccl_available()),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info.update({
            "device": torch.cuda.get_device_name(0),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "multiprocessors": props.multi_processor_count, "memory_gib": round(props.total_memory / 2**30, 1),
            "cudnn": torch.backends.cudnn.version(), "bf16_supported": torch.cuda.is_bf16_supported(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        })
        with contextlib.suppress(Exception):
            info["nccl_version"] = ".".join(map(str, torch.cuda.nccl.version()))
    else:
        info["device"] = f"CPU ({platform.processor() or platform.machine()}), dry run"
    return info


class StepClock:
    """``on_step`` callback keeping the time of every step (validation steps marked)."""

    def __init__(self) -> None:
        self.elapsed: list[float] = []
        self.validated: list[bool] = []
        self.losses: list[float] = []

    def __call__(self, info: StepInfo) -> None:
        self.elapsed.append(info.elapsed)
        self.validated.append(info.val_loss is not None)
        self.losses.append(info.loss)

    def figures(self) -> dict[str, float]:
        """Steps/s overall and in the steady state (median step, warm-up and validation steps left out)."""
        times = np.diff(np.array([0.0] + self.elapsed))
        steady = [t for i, t in enumerate(times) if i >= WARMUP_STEPS and not self.validated[i]]
        total = self.elapsed[-1] if self.elapsed else float("nan")
        return {"steps": len(self.elapsed), "loop_seconds": total, "steps_per_s": len(self.elapsed) / total,
                "steady_steps_per_s": 1.0 / float(np.median(steady)) if steady else float("nan"),
                "final_running_loss": self.losses[-1] if self.losses else float("nan")}


def time_trainer(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, base: TrainingConfig,
                 steps: int, device: str, amp: bool) -> dict[str, float]:
    """Steps/s of a short training run (no validation data, no checkpoints)."""
    clock = StepClock()
    config = TrainingConfig(steps=steps, batch_size=base.batch_size, lr=base.lr, lr_min=base.lr_min,
                            weight_decay=base.weight_decay, val_every=10**9, checkpoint_every=0, seed=base.seed,
                            device=device, amp=amp)
    sync(device)
    started = time.perf_counter()
    Trainer(model, config, on_step=clock).fit((images, masks))
    sync(device)
    return {**clock.figures(), "wall_seconds": time.perf_counter() - started, "device": device, "amp": amp}


@contextlib.contextmanager
def numerics(variant: str) -> Iterator[None]:
    """Context of one CUDA scoring variant: ``default``, ``no_tf32`` or ``bf16``."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        if variant == "no_tf32":
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        context = torch.autocast("cuda", dtype=torch.bfloat16) if variant == "bf16" else contextlib.nullcontext()
        with context:
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def timed(function: Callable[[], Any], device: str, repeats: int) -> tuple[Any, list[float]]:
    """Result of ``function`` and the wall times of ``repeats`` calls (after one warm-up call)."""
    result = function()
    seconds = []
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        result = function()
        sync(device)
        seconds.append(time.perf_counter() - started)
    return result, seconds


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def agreement(reference: dict[str, np.ndarray], other: dict[str, np.ndarray], qc: ImageQC) -> dict[str, float]:
    """How far ``other``'s scores and norms lie from ``reference``'s (the CPU fp32 run)."""
    ref, got = reference["scores"], other["scores"]
    diff = np.abs(got - ref)
    norm_rel = np.abs(other["norms"] - reference["norms"]) / np.maximum(np.abs(reference["norms"]), 1e-12)
    spread = float(np.subtract(*np.percentile(ref, [75, 25])))
    return {"max_abs_score_diff": float(diff.max()), "mean_abs_score_diff": float(diff.mean()),
            "max_rel_score_diff": float((diff / np.maximum(np.abs(ref), 1e-12)).max()),
            "max_abs_diff_over_score_iqr": float(diff.max() / spread) if spread > 0 else float("nan"),
            "max_rel_norm_diff": float(norm_rel.max()), "spearman": spearman(ref, got),
            "verdicts_equal": int((qc.verdicts(ref) == qc.verdicts(got)).sum()), "cases": len(ref)}


def auroc(scores: np.ndarray, failed: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(failed, scores)) if 0 < failed.sum() < len(failed) else float("nan")


def nccl_smoke(timeout: float = 180.0) -> dict[str, Any]:
    """One-process NCCL group: all_reduce and one DDP training step, in a subprocess (a hang cannot stall us)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = textwrap.dedent(f"""
        import torch, torch.distributed as dist
        torch.cuda.set_device(0)
        dist.init_process_group("nccl", init_method="tcp://127.0.0.1:{port}", rank=0, world_size=1)
        x = torch.ones(4, device="cuda")
        dist.all_reduce(x)
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 1).cuda(), device_ids=[0])
        model(torch.randn(16, 8, device="cuda")).square().mean().backward()
        torch.cuda.synchronize()
        print("nccl ok", float(x.sum()), dist.get_backend())
        dist.destroy_process_group()
    """)
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "detail": f"timed out after {timeout:.0f} s"}
    output = (done.stdout + done.stderr).strip().splitlines()
    return {"ok": done.returncode == 0 and any(line.startswith("nccl ok") for line in output),
            "seconds": round(time.perf_counter() - started, 1), "detail": " | ".join(output[-3:])[-600:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="work directory (data, bundle, reports)")
    parser.add_argument("--json", type=Path, help="figures as JSON (default: OUT/gpu_check.json)")
    parser.add_argument("--config", type=Path, default=preset_path("small", 2))
    parser.add_argument("--steps", type=int, default=300, help="bf16 training steps on the GPU")
    parser.add_argument("--train-cases", type=int, default=200)
    parser.add_argument("--cases", type=int, default=200, help="prediction cases scored")
    parser.add_argument("--cpu-steps", type=int, default=20, help="CPU training steps (speed only)")
    parser.add_argument("--fp32-steps", type=int, default=100, help="fp32 GPU training steps (speed only; 0 skips)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of model-only scoring")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run of this script")
    parser.add_argument("--no-nccl", action="store_true", help="skip the NCCL smoke run")
    args = parser.parse_args()
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
              "nothing measured", file=sys.stderr)
        return 2
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "environment": environment(device)}
    log(f"device: {result['environment']['device']}; torch {torch.__version__} (CUDA {torch.version.cuda})")

    # Data: phantom PNGs, as `segqc demo` writes them.
    qc = ImageQC.from_config(args.config, training={"steps": args.steps, "device": device, "amp": True,
                                                    "checkpoint_every": 0, "seed": args.seed})
    size = tuple(qc.preprocess.spatial_size)
    started = time.perf_counter()
    training = phantoms.make_training_set(args.train_cases, size, seed=args.seed)
    predictions = phantoms.make_prediction_set(args.cases, size, seed=args.seed + 1)
    phantoms.write_cases(training, out / "data" / "train", fmt="png")
    phantoms.write_cases(predictions, out / "data" / "test", fmt="png")
    train_prepared, labels = prepare_dataset(pair_cases(out / "data" / "train" / "images",
                                                        out / "data" / "train" / "masks"), qc.preprocess)
    images, masks = stack(train_prepared)
    result["data"] = {"spatial_size": list(size), "train_cases": args.train_cases, "prediction_cases": args.cases,
                      "labels": labels, "seconds": round(time.perf_counter() - started, 2)}
    log(f"data: {args.train_cases} training pairs, {args.cases} predictions, {result['data']['seconds']} s")

    # 1. bf16 training on the GPU through the library's own path, then the bundle.
    clock = StepClock()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    started = time.perf_counter()
    qc.fit(images, masks, labels, on_step=clock)
    sync(device)
    fit_seconds = time.perf_counter() - started
    bundle = qc.save(out / "model")
    result["train_bf16"] = {**clock.figures(), "fit_seconds_with_embedding_and_density": fit_seconds,
                            "batch_size": qc.training.batch_size, "best_step": qc.training_["best_step"],
                            "best_val_loss": qc.training_["best_val_loss"], "device": device, "amp": True,
                            "history": qc.training_["history"]}
    if device.startswith("cuda"):
        result["train_bf16"]["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    log(f"bf16 training: {result['train_bf16']['steady_steps_per_s']:.1f} steps/s steady, "
        f"best val loss {qc.training_['best_val_loss']:.4f} at step {qc.training_['best_step']}")

    # 2. Speed-only training runs of the same network: fp32 on the GPU, fp32 on the CPU.
    if args.fp32_steps and device.startswith("cuda"):
        result["train_fp32_gpu"] = time_trainer(copy.deepcopy(qc.model_), images, masks, qc.training,
                                                args.fp32_steps, device, amp=False)
        log(f"fp32 GPU training: {result['train_fp32_gpu']['steady_steps_per_s']:.1f} steps/s steady")
    result["train_cpu"] = time_trainer(copy.deepcopy(qc.model_), images, masks, qc.training, args.cpu_steps,
                                       "cpu", amp=False)
    log(f"CPU training: {result['train_cpu']['steady_steps_per_s']:.2f} steps/s steady")

    # 3. Model-only scoring of the prediction set from the one saved bundle.
    test = out / "data" / "test"
    cpu_qc = ImageQC.load(bundle, device="cpu")
    prepared, _ = prepare_dataset(pair_cases(test / "images", test / "predictions"), cpu_qc.preprocess,
                                  cpu_qc.labels_)
    pred_images, pred_masks = stack(prepared)
    truth = {case.case_id: case.failure_mode != "good" for case in predictions}
    failed = np.array([truth[case.case_id] for case in prepared])
    runs: dict[str, dict[str, np.ndarray]] = {}
    timing: dict[str, dict[str, float]] = {}
    variants = [("cpu_fp32", "cpu", "default")]
    if device.startswith("cuda"):
        variants += [("gpu_default", device, "default"), ("gpu_no_tf32", device, "no_tf32"),
                     ("gpu_bf16_autocast", device, "bf16")]
    for name, where, variant in variants:
        scorer = cpu_qc if where == "cpu" else ImageQC.load(bundle, device=where)

        def score(scorer: ImageQC = scorer, variant: str = variant) -> tuple[np.ndarray, ...]:
            with numerics(variant) if variant != "default" else contextlib.nullcontext():
                return scorer.score_pairs(pred_images, pred_masks)

        (scores, norms, heat), seconds = timed(score, where, args.repeats)
        runs[name] = {"scores": scores, "norms": norms, "heat": heat}
        best = min(seconds)
        timing[name] = {"seconds_best": best, "seconds_all": seconds, "cases_per_s": len(scores) / best,
                        "auroc_failed_vs_good": auroc(scores, failed), "finite": bool(np.isfinite(scores).all())}
        log(f"score_pairs {name}: {timing[name]['cases_per_s']:.1f} cases/s, AUROC "
            f"{timing[name]['auroc_failed_vs_good']:.3f}")
    result["score_pairs"] = timing
    result["agreement_vs_cpu_fp32"] = {}
    for name in runs:
        if name != "cpu_fp32":
            figures = agreement(runs["cpu_fp32"], runs[name], cpu_qc)
            heat_diff = np.abs(runs[name]["heat"] - runs["cpu_fp32"]["heat"])
            figures["max_rel_heat_diff"] = float(heat_diff.max() / max(np.abs(runs["cpu_fp32"]["heat"]).max(), 1e-12))
            result["agreement_vs_cpu_fp32"][name] = figures
            log(f"{name} vs cpu_fp32: max |d score| {figures['max_abs_score_diff']:.3g}, "
                f"Spearman {figures['spearman']:.6f}, verdicts equal {figures['verdicts_equal']}/{figures['cases']}")

    # 4. End to end: `segqc score` (read, preprocess, score, metrics, heat maps, gallery, report) on CPU and GPU.
    end_to_end: dict[str, Any] = {}
    tables = {}
    for name, where in [("cpu", "cpu")] + ([("gpu", device)] if device.startswith("cuda") else []):
        scorer = ImageQC.load(bundle, device=where)
        sync(where)
        started = time.perf_counter()
        run = score_folder(scorer, test / "predictions", test / "images", out / f"report-{name}",
                           ScoreOptions(ground_truth=test / "masks"))
        sync(where)
        seconds = time.perf_counter() - started
        tables[name] = run.table.set_index("case_id")["score"]
        end_to_end[name] = {"seconds": seconds, "cases_per_s": args.cases / seconds,
                            "scored": run.summary["run"]["scored"], "errors": run.summary["run"]["errors"],
                            "verdicts": run.summary["verdicts"]}
        log(f"score_folder {name}: {end_to_end[name]['cases_per_s']:.1f} cases/s end to end")
    if "gpu" in tables:
        gpu = tables["gpu"].reindex(tables["cpu"].index).to_numpy()
        cpu = tables["cpu"].to_numpy()
        end_to_end["max_abs_score_diff_gpu_vs_cpu"] = float(np.abs(gpu - cpu).max())
        end_to_end["spearman_gpu_vs_cpu"] = spearman(cpu, gpu)
    result["score_folder"] = end_to_end

    # 5. NCCL.
    if device.startswith("cuda") and not args.no_nccl and result["environment"]["nccl_available"]:
        result["nccl_smoke"] = nccl_smoke()
        log(f"nccl smoke: {'ok' if result['nccl_smoke']['ok'] else 'FAILED'} ({result['nccl_smoke']['detail']})")

    bf16, cpu_train = result["train_bf16"], result["train_cpu"]
    result["speedups"] = {
        "train_bf16_gpu_over_cpu": bf16["steady_steps_per_s"] / cpu_train["steady_steps_per_s"],
        "score_pairs_gpu_over_cpu": timing.get("gpu_default", timing["cpu_fp32"])["cases_per_s"]
        / timing["cpu_fp32"]["cases_per_s"],
    }
    if "train_fp32_gpu" in result:
        result["speedups"]["train_bf16_over_fp32_gpu"] = (bf16["steady_steps_per_s"]
                                                          / result["train_fp32_gpu"]["steady_steps_per_s"])
    if "gpu" in end_to_end:
        result["speedups"]["score_folder_gpu_over_cpu"] = (end_to_end["gpu"]["cases_per_s"]
                                                           / end_to_end["cpu"]["cases_per_s"])
    path = args.json or out / "gpu_check.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "train_bf16"} | {
        "train_bf16": {k: v for k, v in bf16.items() if k != "history"}}, indent=2, default=float))
    log(f"figures written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
