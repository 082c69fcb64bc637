"""The job behind ``segqc train``: learn what correct (image, mask) pairs look like and write a model bundle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from segqc.data.pairing import data_spatial_dims
from segqc.data.routes import volume_route
from segqc.detectors.image import ImageQC
from segqc.fitting.checkpoints import checkpoints_for
from segqc.fitting.device import distributed_context, distributed_session, resolve_device
from segqc.fitting.trainer import StepInfo
from segqc.manifests import OutputKind
from segqc.outputs import check_output_dir
from segqc.presets import preset_path, resolve_config


@dataclass
class TrainOptions:
    """Options of ``segqc train`` (``None``: the config's or the preset's value).

    Attributes:
        config: A preset name (``small``, ``gpu``, ``paper``) or a YAML / JSON file; ``None``: chosen from the
            data and the device.
        steps: Training steps.
        batch_size: Cases per step and process.
        labels: Label values of the classes (default: learned from the masks).
        slice_axis: Train a 2D model on slices of 3D volumes cut along this axis.
        contaminated: Some training masks may be wrong (EMA-teacher filtering).
        group_pattern: Regular expression naming each case's source in its case id.
        resume: Continue an interrupted run from the checkpoint beside the output.
        seed: Seed of every random choice.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    config: str | None = None
    steps: int | None = None
    batch_size: int | None = None
    labels: list[int] | None = None
    slice_axis: int | None = None
    contaminated: bool = False
    group_pattern: str | None = None
    resume: bool = False
    seed: int | None = None
    device: str | None = None


@dataclass
class TrainRun:
    """Outcome of :func:`train_model`.

    Attributes:
        detector: The fitted detector.
        preset: The preset or config file it was trained with, as the user should read it.
        is_writer: Whether this process wrote the bundle (rank 0, or the only process).
    """

    detector: ImageQC
    preset: str
    is_writer: bool


def train_model(images: Path, masks: Path, out: Path, options: TrainOptions,
                on_case: Callable[[int, int], None] | None = None,
                on_step: Callable[[StepInfo], None] | None = None,
                on_preset: Callable[[str], None] | None = None) -> TrainRun:
    """Check the output, choose the config, fit on the folders and write the bundle (rank 0).

    Under ``torchrun`` every rank trains (DDP) and rank 0 writes the bundle.

    Args:
        images: Folder of images.
        masks: Folder of correct masks, paired with the images by case id.
        out: Model bundle directory.
        options: Run options.
        on_case: Progress callback ``(done, total)`` while files are prepared.
        on_step: Progress callback after each training step.
        on_preset: Told the chosen preset before training starts.

    Returns:
        The fitted detector and the preset it was trained with.
    """
    check_output_dir(out, OutputKind.MODEL, [images, masks, Path(options.config) if options.config else None],
                     mode="image")
    on_gpu = resolve_device(options.device or "auto").type == "cuda"
    path, chosen, slice_axis = _config(images, masks, options, on_gpu)
    detector = ImageQC.from_config(path, options.labels, data={"slice_axis": slice_axis},
                                   training={"steps": options.steps, "batch_size": options.batch_size,
                                             "seed": options.seed, "device": options.device,
                                             "contaminated": options.contaminated or None})
    if on_preset is not None:
        on_preset(chosen)
    with distributed_session(detector.scoring_device):
        is_writer = distributed_context()[0] == 0
        with checkpoints_for(out, "image", is_writer) as checkpoints:
            detector.fit_folders(images, masks, on_case=on_case, on_step=on_step, checkpoint_dir=checkpoints,
                                 resume=options.resume, group_pattern=options.group_pattern)
            if is_writer:
                detector.save(out)
    return TrainRun(detector, chosen, is_writer)


def _config(images: Path, masks: Path, options: TrainOptions, on_gpu: bool) -> tuple[Path, str, int | None]:
    """The config file, a line saying which one and why, and the slice axis.

    Without ``--config`` and ``--slice-axis``, 3D volumes take the route :func:`volume_route` chooses: 2D
    slices with the 2D preset, or 3D patches with the ``patches`` (CPU) / ``patches-gpu`` preset.
    """
    if options.config is None and options.slice_axis is None and data_spatial_dims(images, masks) == 3:
        route = volume_route(images, masks)
        device = "GPU" if on_gpu else "CPU"
        if route.name == "patches":
            name = "patches-gpu" if on_gpu else "patches"
            return preset_path(name, 3), f"preset '{name}' for 3D volumes on a {device} ({route.reason})", None
        path, chosen = resolve_config(None, lambda: 2, on_gpu)
        return path, f"{chosen} ({route.reason})", route.slice_axis
    path, chosen = resolve_config(options.config, lambda: 2 if options.slice_axis is not None
                                  else data_spatial_dims(images, masks), on_gpu)
    return path, chosen, options.slice_axis
