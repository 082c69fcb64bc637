"""The one library of mask corruptions: failures of correct masks with a graded strength, in 2D or 3D.

Two families share the helpers of :mod:`segqc.synthetic.shapes`; sizes are
relative to the equivalent radius of each structure, so a strength means the
same in 2D and 3D and for any image size.

* **Per-structure kinds** (:data:`KINDS`, :func:`degrade`) work on a label map of
  class indices ``0..K-1`` (``0`` = background) for any ``K``: a learned
  segmenter's typical errors (boundaries moved by a smooth field at the scale
  of the objects), boundary erosion / dilation, smooth boundary jitter, a
  shift, holes, a dropped part of a structure (or all of it), extra blobs,
  labels swapped in a region, over-smoothing, blockiness (coarse resolution),
  an empty mask, and ``"good"`` (sub-voxel boundary noise, what an accepted
  prediction looks like). They teach the quality estimator
  (:mod:`segqc.quality.teaching`); :func:`graft` carries another segmentation's
  mistakes into a correct mask.
* **Anatomical modes** (:data:`MODES`, :func:`corrupt`) work on the nested label
  maps of the phantoms (an organ holding a lesion) and move every structure at
  once: they make the phantoms' predictions with labelled failures
  (:func:`segqc.synthetic.phantoms.make_prediction_set`). ``shift`` and
  ``empty`` are the per-structure kinds.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from segqc.errors import did_you_mean
from segqc.synthetic.shapes import (
    equivalent_radius,
    equivalent_radius_of_volume,
    fill_from_neighbours,
    inner_distance,
    object_radius,
    place_blob,
    sample_blob,
    signed_distance,
    smooth_field,
    smooth_noise,
    warp,
    wobbly_ball,
)

BACKGROUND, ORGAN, LESION = 0, 1, 2
"""Classes of the anatomical modes' label maps: an organ holding a lesion."""
NUM_CLASSES = 3
FAILURE_MODES: tuple[str, ...] = ("over", "under", "missing", "false_positive", "jitter", "shift", "class_swap",
                                  "empty")
MODES: tuple[str, ...] = ("good", *FAILURE_MODES)
KINDS: tuple[str, ...] = ("good", "segmenter", "erode", "dilate", "jitter", "shift", "holes", "drop", "extra",
                          "swap", "smooth", "blocky", "empty")


def _radius(region: np.ndarray) -> float:
    """Radius (voxels) of the disc / ball with as many voxels as ``region`` (at least one voxel)."""
    return equivalent_radius_of_volume(float(max(int(region.sum()), 1)), region.ndim)


def _pick_class(mask: np.ndarray, rng: np.random.Generator) -> int | None:
    present = [int(c) for c in np.unique(mask) if c != 0]
    return int(rng.choice(present)) if present else None


def _moved_boundary(mask: np.ndarray, strength: float, rng: np.random.Generator, grow: bool) -> np.ndarray:
    """One structure eroded or dilated by ``0.8 strength`` of its radius (at least one voxel)."""
    label = _pick_class(mask, rng)
    if label is None:
        return mask
    region = mask == label
    steps = max(1, int(round(strength * 0.8 * _radius(region))))
    if not grow:
        return fill_from_neighbours(mask, region & ~ndimage.binary_erosion(region, iterations=steps))
    out = mask.copy()
    out[ndimage.binary_dilation(region, iterations=steps)] = label
    return out


def _erode(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    return _moved_boundary(mask, strength, rng, grow=False)


def _dilate(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    return _moved_boundary(mask, strength, rng, grow=True)


def _slab(region: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The part of ``region`` beyond a random plane that holds ``fraction`` of it."""
    coordinates = np.argwhere(region)
    projection = coordinates @ rng.standard_normal(region.ndim)
    slab = np.zeros(region.shape, dtype=bool)
    slab[tuple(coordinates[projection >= np.quantile(projection, 1 - fraction)].T)] = True
    return slab


def _jitter(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    radius = _radius(mask > 0)
    return warp(mask, smooth_field(mask.shape, 0.4 * radius, 0.7 * strength * radius, rng))


def _good(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """What an accepted prediction looks like: smooth sub-voxel to 1.5-voxel boundary noise, and half the time
    the whole foreground one voxel larger or smaller (a segmenter's systematic bias)."""
    out = warp(mask, smooth_field(mask.shape, 3.0, 0.3 + 1.2 * strength, rng))
    if rng.random() < 0.5:
        foreground = out > 0
        if rng.random() < 0.5:
            grown = ndimage.grey_dilation(out, size=(3,) * out.ndim)
            out = np.where(foreground, out, grown)
        else:
            out = fill_from_neighbours(out, foreground & ~ndimage.binary_erosion(foreground)) if foreground.any() \
                else out
    return out


def _segmenter(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """What a learned segmenter gets wrong: each class's boundary moved in or out by a smooth random field.

    The field is a bias (systematic under- or over-segmentation) plus spatially
    smooth variation, both scaled to the class's typical object radius (not the
    whole foreground's), so small objects vanish, thin parts break and near
    objects merge as they do in a real network's output. Each voxel takes the
    class whose moved region claims it most (background where none does).
    """
    claims = [np.zeros(mask.shape, np.float32)]
    for label in range(1, num_classes):
        region = mask == label
        if not region.any():
            claims.append(np.full(mask.shape, -np.inf, np.float32))
            continue
        radius = object_radius(region)
        signed = ndimage.distance_transform_edt(~region) - ndimage.distance_transform_edt(region)
        reach = 0.5 + strength * radius  # voxels a boundary may move
        bias = rng.normal(0.0, 0.5) * reach
        variation = ndimage.gaussian_filter(rng.standard_normal(mask.shape), max(1.0, 1.5 * radius))
        variation *= reach / (np.abs(variation).max() or 1.0)
        claims.append((bias + variation - signed).astype(np.float32))
    return np.argmax(np.stack(claims), axis=0).astype(mask.dtype)


def _shift(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    direction = rng.standard_normal(mask.ndim)
    offset = np.round(direction / np.linalg.norm(direction) * strength * _radius(mask > 0)).astype(int)
    return ndimage.shift(mask, offset, order=0, mode="constant", cval=0)


def _holes(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    foreground = mask > 0
    if not foreground.any():
        return mask
    inside = np.argwhere(foreground)
    radius = _radius(foreground)
    out = mask.copy()
    for _ in range(1 + int(3 * strength)):
        center = inside[rng.integers(len(inside))]
        out[wobbly_ball(mask.shape, center, max(1.0, 0.35 * strength * radius), rng) & foreground] = 0
    return out


def _drop(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """Remove a slab holding ``sqrt(strength)`` of one structure (all of it at strength 1)."""
    label = _pick_class(mask, rng)
    if label is None:
        return mask
    return fill_from_neighbours(mask, _slab(mask == label, min(1.0, np.sqrt(strength)), rng))


def _extra(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """1-3 blobs of a foreground class, each up to ``strength`` times the size of that structure."""
    label = _pick_class(mask, rng) or int(rng.integers(1, num_classes))
    radius = _radius(mask == label) if (mask == label).any() else 0.1 * min(mask.shape)
    out = mask.copy()
    for _ in range(int(rng.integers(1, 4))):
        center = np.array([rng.uniform(0, size) for size in mask.shape])
        out[wobbly_ball(mask.shape, center, max(1.0, np.sqrt(strength) * radius), rng)] = label
    return out


def _swap(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """Swap two labels (a foreground class with another class) in a slab holding ``strength`` of the foreground."""
    label = _pick_class(mask, rng)
    if label is None:
        return mask
    others = [c for c in range(num_classes) if c != label and (c != 0 or num_classes == 2)]
    other = int(rng.choice(others)) if others else 0
    region = _slab(mask > 0, strength, rng)
    if num_classes == 2:
        region = ndimage.binary_dilation(region, iterations=max(1, int(_radius(mask > 0) * strength)))
    out = mask.copy()
    out[region & (mask == label)] = other
    out[region & (mask == other)] = label
    return out


def _smooth(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    sigma = 0.5 + strength * 0.5 * _radius(mask > 0)
    one_hot = np.stack([(mask == c).astype(np.float32) for c in range(num_classes)])
    return np.argmax([ndimage.gaussian_filter(channel, sigma) for channel in one_hot], axis=0).astype(mask.dtype)


def _blocky(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    factor = 2 + int(round(strength * 0.6 * _radius(mask > 0)))
    coarse = mask[tuple(slice(None, None, factor) for _ in mask.shape)]
    out = coarse
    for axis in range(mask.ndim):
        out = np.repeat(out, factor, axis=axis)
    return out[tuple(slice(0, size) for size in mask.shape)]


def _empty(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    return np.zeros_like(mask)


_DEGRADE: dict[str, Callable[[np.ndarray, float, np.random.Generator, int], np.ndarray]] = {
    "good": _good, "segmenter": _segmenter, "erode": _erode, "dilate": _dilate, "jitter": _jitter, "shift": _shift,
    "holes": _holes, "drop": _drop, "extra": _extra, "swap": _swap, "smooth": _smooth, "blocky": _blocky,
    "empty": _empty,
}


def degrade(mask: np.ndarray, kind: str, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """A degraded copy of a correct mask.

    Args:
        mask: Class indices ``(*spatial)`` (2D or 3D), ``0`` = background.
        kind: One of :data:`KINDS`.
        strength: In ``[0, 1]``; larger is worse.
        rng: Random generator.
        num_classes: ``K``.

    Returns:
        Class indices of the same shape and dtype.
    """
    if kind not in _DEGRADE:
        raise ValueError(f"unknown degradation {kind!r}; expected one of {', '.join(KINDS)}")
    return _DEGRADE[kind](np.asarray(mask), float(np.clip(strength, 0.0, 1.0)), rng, num_classes).astype(mask.dtype)


GRAFTS_PER_SEGMENTATION = 3
"""Graded grafts of each other segmentation into each correct mask (:func:`teaching_set`)."""


def graft(mask: np.ndarray, other: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A correct mask carrying another segmentation's mistakes in a smooth random region.

    The region (a thresholded smooth random field, at a length of 6 % of the
    image) holds ``strength`` of the voxels; inside it the labels are
    ``other``'s. With ``other`` a learned segmenter's output on the same image
    this gives failures a network really makes (missed faint structures, halos,
    merges), graded from none (strength 0) to all of them (strength 1).

    Args:
        mask: Correct class indices ``(*spatial)``.
        other: Another segmentation of the same image, same shape.
        strength: Share of the voxels in ``[0, 1]`` that take ``other``'s labels.
        rng: Random generator.

    Returns:
        Class indices, same shape and dtype as ``mask``.
    """
    field = ndimage.gaussian_filter(rng.standard_normal(mask.shape), max(1.0, 0.06 * min(mask.shape)))
    region = field >= np.quantile(field, 1.0 - float(np.clip(strength, 0.0, 1.0)))
    return np.where(region, other, mask).astype(mask.dtype)


# Anatomical modes: nested organ / lesion label maps, every structure moved at once.


def _compose(foreground: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """Label map (uint8, shape ``spatial``) from foreground and lesion masks."""
    labels = foreground.astype(np.uint8)
    labels[lesion & foreground] = LESION
    return labels


def _move_boundaries(
    labels: np.ndarray,
    rng: np.random.Generator,
    offset: Callable[[float], float],
    noise: Callable[[float], tuple[float, float]] | None = None,
) -> np.ndarray:
    """Move the foreground and lesion boundaries, each by its own amount.

    Args:
        labels: Label map, shape ``spatial``.
        rng: Random generator.
        offset: Maps a structure's equivalent radius to a signed outward shift
            of its boundary in voxels.
        noise: Maps the equivalent radius to ``(amplitude, correlation
            length)`` of a smooth random boundary displacement, or ``None``.

    Returns:
        The new label map, uint8 of shape ``spatial``.
    """
    moved = []
    for structure in (labels > 0, labels == LESION):
        if not structure.any():
            moved.append(structure)
            continue
        radius = equivalent_radius(structure)
        level = signed_distance(structure) + offset(radius)
        if noise is not None:
            amplitude, length = noise(radius)
            level += amplitude * smooth_noise(labels.shape, length, rng)
        moved.append(level > 0)
    return _compose(*moved)


def _boundary_noise(labels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Small realistic errors: sub-voxel to 1-voxel boundary noise and bias."""
    scale = 0.5 + 0.5 * severity
    bias = rng.uniform(-1.0, 1.0)

    def offset(radius: float) -> float:
        return bias * scale * float(np.clip(0.07 * radius, 0.2, 1.2))

    def noise(radius: float) -> tuple[float, float]:
        return scale * float(np.clip(0.07 * radius, 0.2, 1.0)), max(2.0, 0.2 * radius)

    return _move_boundaries(labels, rng, offset, noise)


def _over(labels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Dilation of every structure by ``0.8 * severity`` of its equivalent radius."""
    return _move_boundaries(labels, rng, lambda r: 0.8 * severity * r)


def _under(labels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Erosion of every structure by ``0.7 * severity`` of its equivalent radius."""
    return _move_boundaries(labels, rng, lambda r: -0.7 * severity * r)


def _warp_boundaries(labels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random boundary displacement of ``0.7 * severity`` equivalent radius."""
    return _move_boundaries(labels, rng, lambda r: 0.0, lambda r: (0.7 * severity * r, max(1.0, 0.4 * r)))


def _farthest(voxels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Select a fraction of voxels cut off by a random hyperplane.

    Args:
        voxels: Voxel indices, shape ``(n, d)``.
        fraction: Fraction of the voxels to select.
        rng: Random generator.

    Returns:
        Indices, shape ``(n,)`` in ``[0, n)``, of the ``ceil(fraction * n)``
        voxels farthest along a random direction.
    """
    direction = rng.standard_normal(voxels.shape[1])
    order = np.argsort(voxels @ direction, kind="stable")
    return order[len(order) - math.ceil(fraction * len(order)) :]


def _missing(labels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Drop part of the organ (to background) or lesion (to organ).

    The dropped fraction of the chosen structure is ``sqrt(severity)``, so
    severity 1 removes the class entirely.
    """
    present = [c for c in (ORGAN, LESION) if (labels == c).any()]
    out = labels.copy()
    if not present:
        return out
    target = int(rng.choice(present))
    voxels = np.argwhere(labels == target)
    dropped = voxels[_farthest(voxels, math.sqrt(severity), rng)]
    out[tuple(dropped.T)] = BACKGROUND if target == ORGAN else ORGAN
    return out


def _class_swap(labels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Swap organ and lesion labels in a slab holding ``severity`` of the foreground."""
    out = labels.copy()
    voxels = np.argwhere(labels > 0)
    if not len(voxels):
        return out
    index = tuple(voxels[_farthest(voxels, severity, rng)].T)
    out[index] = np.where(labels[index] == ORGAN, LESION, ORGAN)
    return out


def _reference_volume(labels: np.ndarray, label: int) -> float:
    """Typical volume of a structure of class ``label`` in voxels.

    The volume of ``label`` in ``labels`` if present; otherwise that of the
    foreground (1% of the grid if empty), times 0.15 for the lesion class.
    """
    present = labels == label
    if present.any():
        return float(present.sum())
    foreground = float(np.count_nonzero(labels)) or 0.01 * labels.size
    return foreground * (0.15 if label == LESION else 1.0)


def _false_positive(labels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Add 1 to 3 spurious blobs, each of the organ or the lesion class.

    Each blob has ``2 * severity`` times the volume of its class in ``labels``
    (see :func:`_reference_volume` when the class is absent). Organ blobs go
    in the background, away from the foreground; lesion blobs anywhere away
    from the lesion, so also inside the organ.
    """
    out = labels.copy()
    if severity == 0.0:
        return out
    rooms = {
        ORGAN: inner_distance(labels == BACKGROUND, exact=False),
        LESION: inner_distance(labels != LESION, exact=False),
    }
    for _ in range(int(rng.integers(1, 4))):
        label = int(rng.choice([ORGAN, LESION]))
        volume = 2.0 * severity * _reference_volume(labels, label)
        shape = sample_blob(labels.ndim, max(1.0, equivalent_radius_of_volume(volume, labels.ndim)), rng)
        blob = place_blob(shape, rooms[label], rng, margin=2.0, min_scale=0.5)
        if not blob.any():
            center = np.array(np.unravel_index(np.argmax(rooms[label]), labels.shape), float)
            blob = shape.render(labels.shape, center)
        out[blob & (out == BACKGROUND if label == ORGAN else out != LESION)] = label
    return out


_ANATOMICAL: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "good": _boundary_noise,
    "over": _over,
    "under": _under,
    "missing": _missing,
    "false_positive": _false_positive,
    "jitter": _warp_boundaries,
    "shift": lambda labels, severity, rng: _shift(labels, severity, rng, NUM_CLASSES),
    "class_swap": _class_swap,
    "empty": lambda labels, severity, rng: _empty(labels, severity, rng, NUM_CLASSES),
}


def corrupt(
    mask: np.ndarray,
    mode: str,
    severity: float,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Make a prediction from a ground-truth mask with a named error mode.

    Modes (sizes are relative to the equivalent radius ``r`` of each structure):

    * ``"good"``: small realistic errors, sub-voxel to ~1-voxel boundary noise
      and a slight global dilation or erosion; severity scales them by 0.5-1.
    * ``"over"`` / ``"under"``: dilation / erosion of the foreground and of
      the lesion by ``0.8 s r`` / ``0.7 s r`` voxels.
    * ``"missing"``: a slab holding ``sqrt(s)`` of the organ (set to background)
      or of the lesion (set to organ) is dropped; ``s = 1`` drops the class.
    * ``"false_positive"``: 1-3 blobs, each of the organ class (in the
      background) or the lesion class (in the background or the organ), each
      ``2 s`` times as large as the structure of its class.
    * ``"jitter"``: smooth random boundary displacement of amplitude ``0.7 s r``
      and correlation length ``0.4 r``.
    * ``"shift"``: translation by ``s r`` voxels (``r`` of the foreground),
      rounded, in a random direction; content leaving the grid is lost.
    * ``"class_swap"``: organ and lesion labels swap in a slab holding ``s`` of
      the foreground; ``s = 1`` swaps them everywhere.
    * ``"empty"``: all background; severity is ignored.

    Severity 0 leaves the mask unchanged for every mode but ``"good"`` and
    ``"empty"``. Mean Dice falls steadily with severity; at ``s >= 0.3`` it is
    usually below 0.8 for every failure mode, while ``"good"`` stays above 0.9
    on average.

    Args:
        mask: Ground-truth label map, integer array of shape ``(H, W)`` or
            ``(D, H, W)`` with values in ``{0, 1, 2}``.
        mode: ``"good"`` or one of :data:`FAILURE_MODES`.
        severity: Strength of the corruption in ``[0, 1]``.
        rng: Random generator or seed.

    Returns:
        The prediction, uint8 of the same shape as ``mask``.

    Raises:
        ValueError: If the mask, mode or severity is invalid.
    """
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3) or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"mask must be an integer array with 2 or 3 dimensions, got {mask.dtype} {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() >= NUM_CLASSES):
        raise ValueError(f"mask values must be in {{0, 1, 2}}, got range [{mask.min()}, {mask.max()}]")
    if mode not in _ANATOMICAL:
        raise ValueError(f"unknown mode {mode!r}{did_you_mean(mode, MODES)}; expected one of {MODES}")
    if not (isinstance(severity, numbers.Real) and 0.0 <= severity <= 1.0):
        raise ValueError(f"severity must be a number in [0, 1], got {severity!r}")
    return _ANATOMICAL[mode](mask.astype(np.uint8), severity, np.random.default_rng(rng))
