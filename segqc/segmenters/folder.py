"""Segment every image of a folder and write one mask per image."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from segqc.data.images import Volume, read_image
from segqc.data.pairing import CaseFiles, pair_cases
from segqc.errors import ConfigError, SchemaError, SegQCError, case_error
from segqc.manifests import OutputKind
from segqc.outputs import check_output_dir, owned_directory
from segqc.segmenters.base import Segmenter
from segqc.segmenters.class_map import ClassMap
from segqc.segmenters.writer import write_mask

logger = logging.getLogger(__name__)

_PENDING_BATCHES = 4
"""At most this many batches' worth of images wait for equal-shaped partners before the oldest group runs."""


@dataclass
class SegmentRun:
    """What :func:`segment_folder` did.

    Attributes:
        written: The mask files written, in case-id order.
        failures: ``(case_id, message)`` of the images that were skipped, in case-id order.
    """

    written: list[Path] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Job:
    """State shared by the steps of one :func:`segment_folder` call."""

    segmenter: Segmenter
    out_dir: Path
    device: torch.device
    class_map: ClassMap | None
    palette: Sequence[tuple[int, int, int]] | None
    total: int
    on_case: Callable[[str, int, int], None] | None
    run: SegmentRun = field(default_factory=SegmentRun)
    done: int = 0

    def finish(self, case_id: str, written: Path | None = None, error: str | None = None) -> None:
        """Record one case as written or failed and report progress."""
        if written is not None:
            self.run.written.append(written)
        else:
            logger.warning("%s: skipped (%s)", case_id, error)
            self.run.failures.append((case_id, str(error)))
        self.done += 1
        if self.on_case is not None:
            self.on_case(case_id, self.done, self.total)

    def segment(self, group: list[tuple[str, Volume]]) -> None:
        """Segment images of equal shape in one batch and write their masks."""
        batch = torch.from_numpy(np.stack([volume.array for _, volume in group])).to(self.device)
        name = getattr(self.segmenter, "name", type(self.segmenter).__name__)
        try:
            labels = self.segmenter.segment(batch)
            if tuple(labels.shape) != (batch.shape[0], *batch.shape[2:]) or labels.is_floating_point():
                raise SchemaError(f"segmenter {name} returned {labels.dtype} {tuple(labels.shape)}; expected "
                                 f"integer labels {(batch.shape[0], *batch.shape[2:])}")
        except Exception as err:  # noqa: BLE001 - a segmenter is the user's code: whatever it raises fails its cases
            for case_id, volume in group:
                self.finish(case_id, error=f"{volume.path}: {' '.join(str(err).split()) or type(err).__name__}")
            return
        for (case_id, volume), case_labels in zip(group, labels.cpu().numpy(), strict=True):
            try:
                mapped = case_labels if self.class_map is None else self.class_map.apply(case_labels)
                written = write_mask(mapped, volume, self.out_dir / case_id, self.palette)
            except SegQCError as err:
                self.finish(case_id, error=f"{volume.path}: {err}")
                continue
            self.finish(case_id, written)


def segment_folder(segmenter: Segmenter, images_dir: Path, out_dir: Path, batch_size: int = 4,
                   device: str | torch.device = "cpu", class_map: ClassMap | None = None,
                   on_case: Callable[[str, int, int], None] | None = None,
                   palette: Sequence[tuple[int, int, int]] | None = None) -> SegmentRun:
    """Segment each image of ``images_dir`` and write its mask to ``out_dir`` under the same case id.

    The masks are written to a staging folder beside ``out_dir``, which
    replaces ``out_dir`` (segqc's earlier masks, see :mod:`segqc.outputs`)
    once every image is done; an interrupted run leaves the earlier folder.

    Images of equal shape run together in batches of up to ``batch_size``
    (``(B, C, H, W)``); volumes run one at a time (``(1, C, D, H, W)``).
    nnU-Net channel files (``case_0000``, ``case_0001``) form one image. A case
    that cannot be read or segmented is skipped with a logged warning.

    Args:
        segmenter: The segmenter; moved to ``device``.
        images_dir: Folder of images (NIfTI, PNG, TIFF, JPEG, .npy).
        out_dir: Where the masks go (created; must differ from ``images_dir``).
        batch_size: Images per forward pass.
        device: Where the segmenter runs.
        class_map: Maps class indices to the QC model's label values.
        on_case: Called after each case as ``on_case(case_id, done, total)``.
        palette: Colours of palette PNG masks (default: Pascal VOC).

    Returns:
        The masks written and the skipped cases.

    Raises:
        InputError: ``images_dir`` is missing or holds no images.
        ConfigError: ``batch_size`` < 1.
        OutputError: ``out_dir`` overlaps ``images_dir``, or is a folder segqc
            did not write as masks (see :mod:`segqc.outputs`).
    """
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    check_output_dir(out_dir, OutputKind.MASKS, [images_dir])
    if batch_size < 1:
        raise ConfigError(f"batch size is {batch_size}; expected at least 1")
    cases = pair_cases(images_dir, None, require_masks=False)
    segmenter.to(device)
    with owned_directory(out_dir, OutputKind.MASKS) as staging:
        run = _segment_cases(_Job(segmenter, staging, torch.device(device), class_map, palette, len(cases), on_case),
                             cases, batch_size)
    run.written = sorted(out_dir / path.relative_to(staging) for path in run.written)
    run.failures.sort()
    return run


def _segment_cases(job: _Job, cases: Sequence[CaseFiles], batch_size: int) -> SegmentRun:
    """Read, batch and segment every case, writing masks into ``job.out_dir``."""
    segmenter = job.segmenter
    pending: dict[tuple[int, ...], list[tuple[str, Volume]]] = {}
    for case in cases:
        try:
            volume = read_image(case.images)
        except Exception as err:  # noqa: BLE001 - whatever breaks one image skips that image only
            job.finish(case.case_id, error=case_error(err))
            continue
        if volume.array.ndim - 1 != segmenter.spatial_dims:
            job.finish(case.case_id, error=f"{volume.path}: image is {volume.array.ndim - 1}D {volume.spatial_shape}; "
                                           f"the segmenter takes {segmenter.spatial_dims}D images")
            continue
        group = pending.setdefault(volume.array.shape, [])
        group.append((case.case_id, volume))
        if len(group) >= (batch_size if volume.array.ndim == 3 else 1):
            job.segment(pending.pop(volume.array.shape))
        elif sum(map(len, pending.values())) > _PENDING_BATCHES * batch_size:
            job.segment(pending.pop(next(iter(pending))))
    for group in pending.values():
        job.segment(group)
    return job.run
