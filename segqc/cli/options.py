"""Options shared by several commands, and the settings every computing command applies first."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segqc.cli.terminal import console
from segqc.config import TabularModelConfig, TrainingConfig
from segqc.data.images import (
    DEFAULT_MAX_VOXELS,
    MAX_LABEL,
    MAX_VOXELS_ENV,
    MIN_LABEL,
    env_max_voxels,
    set_max_voxels,
)
from segqc.errors import ConfigError
from segqc.threads import THREADS_ENV, limit_threads

# Defaults shown in --help come from the config dataclasses, so they cannot drift.
MODEL_DEFAULTS = TabularModelConfig()
TRAINING_DEFAULTS = TrainingConfig()

DeviceOption = Annotated[str | None, typer.Option(help=f"auto, cpu or cuda. (default: {TRAINING_DEFAULTS.device})")]
SeedOption = Annotated[int | None, typer.Option(help="Seed of every random choice (CPU runs are reproducible). "
                                                     f"(default: {TRAINING_DEFAULTS.seed})")]
ThreadsOption = Annotated[int | None, typer.Option(help="CPU threads to compute with (PyTorch and BLAS); on a machine "
                                                        "shared with other jobs, cores / jobs. (default: "
                                                        f"${THREADS_ENV} when set, else all cores)")]
MaxVoxelsOption = Annotated[int | None, typer.Option(help="Refuse image / mask files holding more values than this "
                                                          "(checked before decoding). (default: "
                                                          f"${MAX_VOXELS_ENV} when set, else "
                                                          f"{DEFAULT_MAX_VOXELS[2]:,} for 2D and "
                                                          f"{DEFAULT_MAX_VOXELS[3]:,} for 3D files)")]


SegmenterOption = Annotated[str | None, typer.Option(
    "--segmenter", help="deeplabv3_mobilenet_v3_large | deeplabv3_resnet50 | deeplabv3_resnet101 | torchscript:PATH | "
                        "monai:NAME (e.g. monai:UNet) | python:module:callable | an installed plugin name.")]
WeightsOption = Annotated[Path | None, typer.Option(help="Segmenter weights: a state_dict file (read with "
                                                         "weights_only=True; nothing is downloaded).")]
SegmenterOptionsOption = Annotated[Path | None, typer.Option(
    "--segmenter-options", help="JSON/YAML with the segmenter's settings: MONAI network 'args', 'class_names', "
                                "'roi_size' for sliding-window inference...")]
ClassMapOption = Annotated[Path | None, typer.Option(help="JSON/YAML mapping segmenter classes (index or name) to "
                                                          "label values, e.g. {map: {background: 0, person: 1}, "
                                                          "default: 0}.")]


def computing(threads: int | None, max_voxels: int | None = None, reads_images: bool = True) -> None:
    """Settings every computing command applies first: the file-size limit and the thread cap (said on a terminal).

    Args:
        threads: ``--threads`` (``None``: ``OMP_NUM_THREADS`` or a fair share of the cores).
        max_voxels: ``--max-voxels`` (``None``: ``SEGQC_MAX_VOXELS`` or the default).
        reads_images: Whether the command reads image / mask files: then a ``SEGQC_MAX_VOXELS`` that is not a
            positive whole number is refused here, before any work (the tabular commands ignore it).

    Raises:
        ConfigError: ``--max-voxels`` < 1, an invalid ``SEGQC_MAX_VOXELS``, or an invalid thread cap.
    """
    if max_voxels is not None and max_voxels < 1:
        raise ConfigError(f"--max-voxels {max_voxels}: expected at least 1")
    if reads_images and max_voxels is None:
        env_max_voxels()
    choice = limit_threads(threads)
    if console.is_terminal:
        console.print(f"[dim]{choice.describe()}[/]", highlight=False)
    set_max_voxels(max_voxels)


def split_names(values: list[str] | None) -> list[str]:
    """``--opt a,b --opt c`` -> ``["a", "b", "c"]``."""
    return [name.strip() for value in values or [] for name in value.split(",") if name.strip()]


def parse_labels(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``, with a clear error for anything else."""
    try:
        values = [int(v) for v in split_names([text])]
    except ValueError:
        raise ConfigError(f"--labels {text!r}: expected comma-separated integer label values, e.g. 0,1,2") from None
    outside = [value for value in values if not MIN_LABEL <= value <= MAX_LABEL]
    if outside:
        raise ConfigError(f"--labels {text!r}: {', '.join(map(str, outside))} outside {MIN_LABEL}..{MAX_LABEL}; "
                          "expected label values that fit a 64-bit integer, as masks are read")
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise ConfigError(f"--labels {text!r}: {', '.join(map(str, repeated))} given more than once; expected "
                          "each label value once")
    if len(values) < 2:
        raise ConfigError(f"--labels {text!r}: expected at least two label values (background and a structure)")
    return values
