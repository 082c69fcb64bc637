"""The job behind ``segqc segment`` (and ``segqc score --segmenter``): run a pretrained segmenter over a folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from segqc.errors import ConfigError, InputError
from segqc.fitting.device import resolve_device
from segqc.manifests import OutputKind
from segqc.outputs import check_output_dir
from segqc.segmenters import SegmentRun, load_class_map, load_segmenter, segment_folder


@dataclass
class SegmenterRequest:
    """Which segmenter to run and how.

    Attributes:
        spec: ``deeplabv3_*``, ``torchscript:PATH``, ``monai:NAME``, ``python:module:callable`` or a plugin name.
        weights: State-dict file of the segmenter's weights, or ``None``.
        options: JSON / YAML file of the segmenter's settings, or ``None``.
        class_map: JSON / YAML file mapping segmenter classes to label values, or ``None``.
        batch_size: Images per forward pass.
    """

    spec: str
    weights: Path | None = None
    options: Path | None = None
    class_map: Path | None = None
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size}: expected at least 1")

    @property
    def inputs(self) -> list[Path | None]:
        """The files the segmenter reads (an output may not overlap them)."""
        return [self.weights, self.options, self.class_map]


def segment_images(request: SegmenterRequest, images: Path, out: Path, device: str | None = None,
                   model_labels: list[int] | None = None,
                   on_case: Callable[[int, int], None] | None = None) -> SegmentRun:
    """Load a segmenter and write its mask of every image of ``images`` into ``out``.

    Args:
        request: The segmenter.
        images: Folder of images.
        out: Folder for the masks (checked by the caller with :func:`segqc.outputs.check_output_dir`).
        device: ``auto``, ``cpu`` or ``cuda``.
        model_labels: Label values of the QC model that will score the masks, to refuse a segmenter with more
            classes than it knows unless a class map is given.
        on_case: Progress callback ``(done, total)``.

    Returns:
        The masks written and the images skipped, with why.

    Raises:
        InputError: No mask could be written.
    """
    torch_device = resolve_device(device or "auto")
    segmenter = load_segmenter(request.spec, request.weights, request.options, torch_device)
    mapping = load_class_map(request.class_map, segmenter.class_names) if request.class_map else None
    if mapping is None and model_labels is not None and len(segmenter.class_names) > len(model_labels):
        raise ConfigError(f"--segmenter {request.spec} has {len(segmenter.class_names)} classes but the QC model "
                          f"knows labels {model_labels}; give --class-map FILE mapping segmenter classes to those "
                          "labels")
    run = segment_folder(segmenter, images, out, request.batch_size, torch_device, mapping,
                         on_case=(lambda _case, done, total: on_case(done, total)) if on_case else None)
    if not run.written:
        raise InputError(f"{images}: the segmenter produced no mask ({len(run.failures)} image(s) failed)")
    return run


def segment(request: SegmenterRequest, images: Path, out: Path, device: str | None = None,
            on_case: Callable[[int, int], None] | None = None) -> SegmentRun:
    """``segqc segment``: check ``out``, then :func:`segment_images`."""
    check_output_dir(out, OutputKind.MASKS, [images, *request.inputs])
    return segment_images(request, images, out, device, on_case=on_case)
