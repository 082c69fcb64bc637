"""Speed and memory of scoring whole CT volumes (issue 29): clinical size, 5 and 25 structures, both routes.

A synthetic abdomen-like CT of 512 x 512 x 200 voxels (0.8 x 0.8 x 1.5 mm: 410 x 410 x 300 mm) with ellipsoid
structures of distinct intensities is written as NIfTI with a prediction (the labels, eroded here and there).
A model of each route is trained briefly on smaller volumes of the same kind (training cost is not what is
measured: scoring cost depends on the network and the preset, not on the training budget), then
``segqc score`` runs in a fresh process per folder, on 2 threads, and its wall time and peak resident memory
(``ru_maxrss`` of the child) are recorded. A folder of 3 volumes shows that memory does not grow with the number
of volumes (they stream one at a time).

    flock /tmp/segqc-heavy.lock python -m benchmarks.volume_speed --out /tmp/volume-speed

writes ``docs/benchmarks-volumes-speed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml

from segqc.presets import preset_path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks-volumes-speed.md"
SPACING = (0.8, 0.8, 1.5)


def synthetic_ct(shape: tuple[int, int, int], spacing: tuple[float, ...], structures: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like volume (HU, int16) with ``structures`` ellipsoids inside a body, and their labels (uint8).

    Sizes are in mm, so volumes of other voxel sizes show the same anatomy.
    """
    rng = np.random.default_rng(seed)
    axes = [(np.arange(n) - n / 2) * s for n, s in zip(shape, spacing)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    image = np.full(shape, -1000.0, np.float32)
    body = (x / 180) ** 2 + (y / 130) ** 2 <= 1
    image[np.broadcast_to(body, shape)] = -80.0
    labels = np.zeros(shape, np.uint8)
    radius = 60.0 / structures ** (1 / 3)
    for label in range(1, structures + 1):
        centre = rng.uniform([-110, -70, -110], [110, 70, 110])
        radii = radius * rng.uniform(0.7, 1.4, 3)
        inside = ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 \
            + ((z - centre[2]) / radii[2]) ** 2 <= 1
        labels[inside] = label
        image[inside] = 20.0 + 180.0 * label / structures
    image += rng.normal(0, 12, shape).astype(np.float32)
    return np.round(image).astype(np.int16), labels


def _prediction(labels: np.ndarray, seed: int) -> np.ndarray:
    """The labels with a slab of one structure removed (a plausible partial failure)."""
    rng = np.random.default_rng(seed)
    prediction = labels.copy()
    label = int(rng.integers(1, labels.max() + 1))
    slab = np.zeros(labels.shape, bool)
    first = int(rng.integers(0, labels.shape[2] - 20))
    slab[:, :, first:first + 20] = True
    prediction[(prediction == label) & slab] = 0
    return prediction


def _save(array: np.ndarray, path: Path, spacing: tuple[float, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), path)


def write_sets(out: Path, structures: int, volumes: int, seed: int = 0) -> Path:
    """Training volumes (128 x 128 x 50 at 3.2 x 3.2 x 6 mm, the same anatomy) and ``volumes`` clinical-size test
    volumes with predictions."""
    root = out / f"k{structures}"
    if (root / "test" / "truth" / f"ct{volumes - 1:02d}.nii.gz").is_file():  # written by an earlier run
        return root
    for index in range(12):
        image, labels = synthetic_ct((128, 128, 50), (3.2, 3.2, 6.0), structures, seed + index)
        _save(image, root / "train/images" / f"train{index:02d}.nii.gz", (3.2, 3.2, 6.0))
        _save(labels, root / "train/masks" / f"train{index:02d}.nii.gz", (3.2, 3.2, 6.0))
    for index in range(volumes):
        image, labels = synthetic_ct((512, 512, 200), SPACING, structures, seed + 100 + index)
        for folder, array in (("images", image), ("predictions", _prediction(labels, index)), ("truth", labels)):
            _save(array, root / "test" / folder / f"ct{index:02d}.nii.gz", SPACING)
    return root


def _run(arguments: list[str], threads: int) -> tuple[float, float]:
    """Run ``python -m segqc ARGS`` on ``threads`` threads; wall seconds and the child's peak RSS in GiB."""
    command = [sys.executable, "-c", ("import resource, runpy, sys; sys.argv = ['segqc'] + sys.argv[1:];"
               "code = 0\ntry:\n    runpy.run_module('segqc', run_name='__main__')\nexcept SystemExit as e:\n"
               "    code = e.code or 0\nprint('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
               "file=sys.stderr)\nsys.exit(code)"), *arguments, "--threads", str(threads)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            check=False)
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 3):
        raise SystemExit(f"segqc {' '.join(arguments)} failed:\n{result.stdout}\n{result.stderr}")
    peak = next(int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("MAXRSS"))
    return seconds, peak / 2**20


def _quick_config(root: Path, preset: str, dims: int) -> Path:
    """The preset with a small teaching set: training is not what is measured, the network and preset are."""
    sections = yaml.safe_load(preset_path(preset, dims).read_text())
    sections["model"].update(degradations_per_case=2, quality_examples=256, atlas_size=32)
    path = root / f"{preset}-quick.yaml"
    path.write_text(yaml.safe_dump(sections))
    return path


def measure(root: Path, route: str, preset: str, threads: int, steps: int, counts: tuple[int, ...]) -> list[dict]:
    """Train a model of ``route`` briefly, then score folders of ``counts`` clinical-size volumes."""
    model = root / f"model-{route}"
    route_options = ["--slice-axis", "2"] if route == "slices" else []
    config = _quick_config(root, preset, 2 if route == "slices" else 3)
    if not (model / "segqc.json").is_file():  # a model of an earlier run in the same folder is reused
        _run(["train", "--images", str(root / "train/images"), "--masks", str(root / "train/masks"), "--out",
              str(model), "--config", str(config), "--steps", str(steps), *route_options], threads)
    results = []
    for count in counts:
        folder = root / f"test{count}"
        for kind in ("images", "predictions"):
            (folder / kind).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                target = folder / kind / f"ct{index:02d}.nii.gz"
                if not target.exists():
                    target.symlink_to(root / "test" / kind / f"ct{index:02d}.nii.gz")
        seconds, peak = _run(["score", str(folder / "predictions"), "--images", str(folder / "images"), "--model",
                              str(model), "--out", str(root / f"report-{route}-{count}")], threads)
        summary = json.loads((root / f"report-{route}-{count}" / "summary.json").read_text())
        results.append({"route": route, "volumes": count, "seconds": seconds, "per_volume": seconds / count,
                        "scoring_seconds": summary["run"]["seconds"], "peak_gib": peak})
    return results


def write_doc(rows: list[dict], threads: int, steps: int) -> None:
    """Write the measured rows to :data:`DOC`."""
    lines = ["# Whole volumes: speed and memory of `segqc score` (issue 29)", "",
             "Regenerate (about 30 minutes on 2 cores):", "",
             "    flock /tmp/segqc-heavy.lock python -m benchmarks.volume_speed --out /tmp/segqc-volume-speed", "",
             (f"Synthetic CT volumes of 512 x 512 x 200 voxels ({' x '.join(map(str, SPACING))} mm), int16 NIfTI, with "
             "5 or 25 ellipsoid structures, and a prediction each. `segqc score` runs in a fresh process on "
             f"{threads} threads (`--threads {threads}`), CPU only: no GPU was available to this run, so the "
             "GPU target (<= 3 s) is not measured here. Wall time includes starting Python, loading the model, "
             "reading and resampling the volume, scoring, the ground-truth-free report (cards, heat volumes, "
             "report.html); peak memory is the process's maximum resident set. Models: the `patches` preset "
             "(3D route: 4 mm, 32^3 windows) and the `small` preset with `--slice-axis 2` (2D route: every "
             f"axial slice at 64 x 64), each trained {steps} steps on 12 smaller volumes of the same kind "
             "(the scoring cost does not depend on the training budget; the teaching set is cut to 2 degradations per held-out case to keep training short)."), "",
             (f"Machine: {platform.processor() or platform.machine()}, {platform.system()}; other jobs may "
             "have shared the 2 cores (docs/benchmarks.md says what ran beside it)."), "",
             ("| structures | route | volumes in the folder | wall s | wall s per volume | scoring s (summary.json) | "
             "peak memory GiB |"), "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['structures']} | {row['route']} | {row['volumes']} | {row['seconds']:.1f} | "
                     f"{row['per_volume']:.1f} | {row['scoring_seconds']:.1f} | {row['peak_gib']:.2f} |")
    DOC.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/segqc-volume-speed"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60, help="training steps of the models (not what is measured)")
    args = parser.parse_args()
    rows = []
    for structures, counts in ((5, (1, 3)), (25, (1,))):
        root = write_sets(args.out, structures, max(counts))
        for route, preset in (("patches", "patches"), ("slices", "small")):
            for result in measure(root, route, preset, args.threads, args.steps, counts):
                rows.append({"structures": structures, **result})
                print(rows[-1], flush=True)
                write_doc(rows, args.threads, args.steps)  # after every row: a late failure keeps the rest
    print(f"written {DOC}")


if __name__ == "__main__":
    main()
