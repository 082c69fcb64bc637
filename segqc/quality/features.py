"""What the score model, the reconstruction and the image say about a case: the quality estimator's features.

* :func:`case_features`: per-level score norms per pixel, the anomaly score,
  heat-map statistics (overall, inside the predicted foreground, where
  prediction and reconstruction disagree), and **agreement with segqc's own
  reconstruction**: the mask the denoiser infers from the image alone at the
  highest noise level (the location mixed towards uniform hides the mask, so
  the network must read the image). Hard and soft Dice between prediction and
  reconstruction, per class, and the area of each;
* :func:`boundary_features`: the **image evidence along each predicted
  boundary**: a correct boundary sits on an intensity edge and a quiet heat
  map, so small structures are judged by local evidence rather than by their
  size alone.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from segqc.metrics import dice_per_class, mean_dice
from segqc.quality.atlas import Atlas

_EPS = 1e-6
_BAND = 3


def case_features(norms: np.ndarray, scores: np.ndarray, heat: np.ndarray, masks: np.ndarray,
                  reconstruction: np.ndarray) -> np.ndarray:
    """Features of each case for the quality regressor.

    Args:
        norms: Squared score norms per level, ``(N, L)``.
        scores: Anomaly scores, ``(N,)``.
        heat: Heat maps, ``(N, *spatial)``.
        masks: Predicted class indices, ``(N, *spatial)``.
        reconstruction: segqc's reconstruction as class probabilities, ``(N, K, *spatial)``.

    Returns:
        ``(N, F)`` float64 features, ``F = L + 6 + 5 (K - 1)``.
    """
    count, num_classes = len(masks), reconstruction.shape[1]
    pixels = masks[0].size
    flat_masks = masks.reshape(count, -1)
    flat_heat = heat.reshape(count, -1).astype(np.float64)
    probabilities = reconstruction.reshape(count, num_classes, -1).astype(np.float64)
    rebuilt = probabilities.argmax(1)
    foreground = flat_masks > 0
    disagree = flat_masks != rebuilt
    hard = dice_per_class(flat_masks, rebuilt, num_classes)
    columns = [np.log1p(norms / pixels), np.sign(scores) * np.log1p(np.abs(scores)),
               np.log1p(flat_heat.mean(1)), np.log1p(np.percentile(flat_heat, 99, axis=1)),
               np.log1p((flat_heat * foreground).sum(1) / (foreground.sum(1) + 1)),
               np.log1p((flat_heat * disagree).sum(1) / pixels), disagree.mean(1),
               mean_dice(hard, flat_masks, rebuilt)]
    for label in range(1, num_classes):
        predicted = flat_masks == label
        soft = probabilities[:, label]
        area, rebuilt_area = predicted.mean(1), (rebuilt == label).mean(1)
        soft_dice = 2 * (soft * predicted).sum(1) / (soft.sum(1) + predicted.sum(1) + _EPS)
        columns += [hard[:, label - 1], soft_dice, area, rebuilt_area,
                    np.log((area + 1 / pixels) / (rebuilt_area + 1 / pixels))]
    return np.column_stack(columns).astype(np.float64)


def boundary_features(images: np.ndarray, masks: np.ndarray, heat: np.ndarray, num_classes: int,
                      band: int = _BAND) -> np.ndarray:
    """Image and heat-map evidence along the boundary of each predicted foreground class.

    For each class, with the inner band the predicted voxels within ``band``
    steps of the boundary and the outer band the voxels within ``band`` steps
    outside it: the contrast of the whole class and of its inner band against
    the outer band (in units of the image's standard deviation), the gradient
    magnitude on the boundary relative to the image's mean gradient magnitude,
    and the mean heat over both bands. A class absent from the mask gives zeros.

    Args:
        images: ``(N, C, *spatial)`` preprocessed images (channels averaged).
        masks: ``(N, *spatial)`` predicted class indices.
        heat: ``(N, *spatial)`` heat maps.
        num_classes: ``K``.
        band: Width of each band in voxels.

    Returns:
        ``(N, 4 (K - 1))`` float64 features.
    """
    count, spatial = len(masks), masks.ndim - 1
    intensity = images.astype(np.float64).mean(1)
    spread = intensity.reshape(count, -1).std(1) + _EPS
    gradient = np.sqrt(sum(part ** 2 for part in np.gradient(intensity, axis=tuple(range(1, spatial + 1)))))
    relative_gradient = gradient.reshape(count, -1) / (gradient.reshape(count, -1).mean(1, keepdims=True) + _EPS)
    flat_intensity, flat_heat = intensity.reshape(count, -1), heat.reshape(count, -1).astype(np.float64)
    # Neighbours along the spatial axes only: each case is dilated on its own.
    step = ndimage.generate_binary_structure(spatial, 1)[None]

    def mean_over(values: np.ndarray, where: np.ndarray) -> np.ndarray:
        return (values * where).sum(1) / np.maximum(where.sum(1), 1)

    columns = []
    for label in range(1, num_classes):
        predicted = masks == label
        outer = (ndimage.binary_dilation(predicted, step, band) & ~predicted).reshape(count, -1)
        inner = (predicted & ~ndimage.binary_erosion(predicted, step, band, border_value=1)).reshape(count, -1)
        edge = (predicted & ~ndimage.binary_erosion(predicted, step, 1, border_value=1)).reshape(count, -1)
        flat = predicted.reshape(count, -1)
        present = flat.any(1) & outer.any(1)
        outside = mean_over(flat_intensity, outer)
        evidence = np.column_stack([(mean_over(flat_intensity, flat) - outside) / spread,
                                    (mean_over(flat_intensity, inner) - outside) / spread,
                                    mean_over(relative_gradient, edge),
                                    np.log1p(mean_over(flat_heat, inner | outer))])
        columns.append(np.where(present[:, None], evidence, 0.0))
    return np.column_stack(columns) if columns else np.zeros((count, 0))


def quality_features(norms: np.ndarray, scores: np.ndarray, heat: np.ndarray, images: np.ndarray, masks: np.ndarray,
                     reconstruction: np.ndarray, atlas: Atlas | None = None) -> np.ndarray:
    """Every feature of the quality estimator, ``(N, F)``.

    The model's view (:func:`case_features`), the atlas's when there is one
    (:meth:`~segqc.quality.atlas.Atlas.features`), then the image evidence along
    each predicted boundary (:func:`boundary_features`). New groups go last, so
    an estimator from an older bundle reads the leading columns.

    Args:
        norms: Squared score norms per level, ``(N, L)``.
        scores: Anomaly scores, ``(N,)``.
        heat: Heat maps, ``(N, *spatial)``.
        images: Preprocessed images, ``(N, C, *spatial)``.
        masks: Predicted class indices, ``(N, *spatial)``.
        reconstruction: segqc's reconstruction as class probabilities, ``(N, K, *spatial)``.
        atlas: Reference training pairs, or ``None``.
    """
    columns = [case_features(norms, scores, heat, masks, reconstruction)]
    if atlas is not None:
        columns.append(atlas.features(images, masks))
    columns.append(boundary_features(images, masks, heat, reconstruction.shape[1]))
    return np.column_stack(columns)
