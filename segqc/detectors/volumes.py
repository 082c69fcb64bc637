"""Scoring a whole region of a volume with sliding windows (the 3D patch route).

The region (:mod:`segqc.data.regions`) is larger than the model's input, so
MONAI's ``sliding_window_inference`` runs the score model over it in windows of
the patch size and stitches, for every voxel, its squared score norm at each
level and segqc's reconstruction. The region is a whole number of patches and
the windows do not overlap by default, so every window is scored exactly as
the training patches were (and a region of one patch exactly as a whole
case); an overlap blends windows (MONAI's constant averaging) at more cost.

The stitched maps are then cut into the tiles of the grid: each tile is one
unit of evidence with its own anomaly score and predicted Dice, which
:mod:`segqc.quality.volumes` aggregates into the volume's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from segqc.data.cases import PreparedCase
from segqc.data.regions import cut, tile_boxes
from segqc.detectors.image import Assessment, ImageQC


@dataclass
class VolumeAssessment:
    """What the model says about one region.

    Attributes:
        tiles: The tiles as prepared cases (``<case>#tile:<i>.<j>.<k>``, grid indices).
        boxes: Each tile's position in the region, a tuple of slices.
        assessment: Scores, norms, heat, reconstruction and predicted Dice of each tile.
        heat: Heat map of the whole region ``(*region)``.
        reconstruction: segqc's reconstruction of the whole region ``(*region)`` (class indices).
    """

    tiles: list[PreparedCase]
    boxes: list[tuple[slice, ...]]
    assessment: Assessment
    heat: np.ndarray
    reconstruction: np.ndarray


def sliding_maps(qc: ImageQC, image: np.ndarray, mask: np.ndarray, overlap: float = 0.0) -> tuple[np.ndarray,
                                                                                                 np.ndarray]:
    """Level maps and reconstruction probabilities of a region, stitched from sliding windows.

    Args:
        qc: A fitted detector of the patch route (its ``spatial_size`` is the window).
        image: ``(C, *region)`` image.
        mask: ``(*region)`` class indices.
        overlap: Overlap of neighbouring windows (MONAI's ``overlap``), in ``[0, 1)``.

    Returns:
        ``(L, *region)`` squared score norms per level and ``(K, *region)`` class probabilities.
    """
    from monai.inferers import sliding_window_inference

    levels = qc.model_.num_levels
    inputs = torch.cat([torch.as_tensor(image, dtype=torch.float32),
                        torch.as_tensor(mask, dtype=torch.float32)[None]])[None]

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        images, masks = windows[:, :-1], windows[:, -1].round().long()
        return torch.cat([torch.from_numpy(qc.level_maps(images, masks)),
                          torch.from_numpy(qc.reconstruction(images))], 1)

    with torch.inference_mode():
        stitched = sliding_window_inference(inputs, tuple(qc.preprocess.spatial_size),
                                            qc.model.score_batch_size if qc.model else 1, predictor,
                                            overlap=overlap, mode="constant")[0]
    stitched = np.asarray(stitched, dtype=np.float32)
    return stitched[:levels], stitched[levels:]


def assess_volume(qc: ImageQC, case: PreparedCase, overlap: float = 0.0) -> VolumeAssessment:
    """Score a region with sliding windows and judge each tile of its grid.

    Args:
        qc: A fitted detector of the patch route.
        case: A prepared region (``case.region`` set) with its predicted mask.
        overlap: Window overlap (see :func:`sliding_maps`).

    Returns:
        The tiles and their assessment, with the region's heat map and reconstruction.
    """
    maps, probabilities = sliding_maps(qc, case.image, case.mask, overlap)
    patch = qc.preprocess.spatial_size
    boxes = tile_boxes(case.image.shape[1:], patch)
    images, masks = cut(case.image, boxes, leading=1), cut(case.mask, boxes)
    assessment = qc.assess_maps(images, masks, cut(maps, boxes, leading=1), cut(probabilities, boxes, leading=1))
    tiles = [PreparedCase(f"{case.case_id}#tile:{'.'.join(str(s.start // p) for s, p in zip(box, patch))}",
                          images[index], masks[index], case.source, case.original_shape, case.affine, case.region)
             for index, box in enumerate(boxes)]
    heat = qc.model_.summarise(torch.from_numpy(maps)[None])[1][0].numpy()
    return VolumeAssessment(tiles, boxes, assessment, heat, probabilities.argmax(0))
