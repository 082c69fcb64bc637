"""Self-generated failures of correct masks, with graded strength, for any number of classes.

The quality estimator (:mod:`segqc.quality.estimator`) learns how the score model's
features relate to Dice from correct held-out masks degraded in the ways real
segmenters fail; since the correct mask is known, so is each degraded mask's
true Dice. Every degradation works on a label map of class indices ``0..K-1``
(``0`` = background) in 2D or 3D, and ``strength`` in ``[0, 1]`` scales it
relative to the size of the structure it changes.

Besides these, :func:`graft` carries a real segmenter's mistakes into a correct
mask, and :func:`teaching_set` assembles everything the estimator learns from.

Kinds: a learned segmenter's typical errors (boundaries moved by a smooth
field at the scale of the objects), boundary erosion / dilation, smooth boundary jitter, a shift, holes,
a dropped part of a structure (or all of it), extra blobs, labels swapped in a
region, over-smoothing, blockiness (coarse resolution), an empty mask, and
``"good"`` (sub-voxel boundary noise, what an accepted prediction looks like).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

KINDS: tuple[str, ...] = ("good", "segmenter", "erode", "dilate", "jitter", "shift", "holes", "drop", "extra",
                          "swap", "smooth", "blocky", "empty")


def _radius(region: np.ndarray) -> float:
    """Radius (voxels) of the disc / ball with as many voxels as ``region``."""
    count = max(int(region.sum()), 1)
    return float((count / np.pi) ** 0.5 if region.ndim == 2 else (3 * count / (4 * np.pi)) ** (1 / 3))


def _pick_class(mask: np.ndarray, rng: np.random.Generator) -> int | None:
    present = [int(c) for c in np.unique(mask) if c != 0]
    return int(rng.choice(present)) if present else None


def _fill_from_neighbours(mask: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Give each voxel of ``removed`` the label of the nearest voxel outside it."""
    if not removed.any():
        return mask
    if removed.all():
        return np.zeros_like(mask)
    indices = ndimage.distance_transform_edt(removed, return_distances=False, return_indices=True)
    out = mask.copy()
    out[removed] = mask[tuple(axis[removed] for axis in indices)]
    return out


def _moved_boundary(mask: np.ndarray, strength: float, rng: np.random.Generator, grow: bool) -> np.ndarray:
    """One structure eroded or dilated by ``0.8 strength`` of its radius (at least one voxel)."""
    label = _pick_class(mask, rng)
    if label is None:
        return mask
    region = mask == label
    steps = max(1, int(round(strength * 0.8 * _radius(region))))
    if not grow:
        return _fill_from_neighbours(mask, region & ~ndimage.binary_erosion(region, iterations=steps))
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


def _warp(mask: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resampling of ``mask`` at ``grid + displacement`` (outside: background)."""
    grid = np.indices(mask.shape, dtype=np.float32)
    return ndimage.map_coordinates(mask, grid + displacement, order=0, mode="constant", cval=0).astype(mask.dtype)


def _smooth_field(shape: tuple[int, ...], length: float, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    field = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), max(length, 1.0)) for _ in shape])
    scale = np.abs(field).max() or 1.0
    return (field / scale * amplitude).astype(np.float32)


def _jitter(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    radius = _radius(mask > 0)
    return _warp(mask, _smooth_field(mask.shape, 0.4 * radius, 0.7 * strength * radius, rng))


def _good(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """What an accepted prediction looks like: smooth sub-voxel to 1.5-voxel boundary noise, and half the time
    the whole foreground one voxel larger or smaller (a segmenter's systematic bias)."""
    out = _warp(mask, _smooth_field(mask.shape, 3.0, 0.3 + 1.2 * strength, rng))
    if rng.random() < 0.5:
        foreground = out > 0
        if rng.random() < 0.5:
            grown = ndimage.grey_dilation(out, size=(3,) * out.ndim)
            out = np.where(foreground, out, grown)
        else:
            out = _fill_from_neighbours(out, foreground & ~ndimage.binary_erosion(foreground)) if foreground.any() \
                else out
    return out


def _object_radius(region: np.ndarray) -> float:
    """Median radius (voxels) of the connected components of ``region`` (1 when it is empty)."""
    components, count = ndimage.label(region)
    if not count:
        return 1.0
    sizes = np.bincount(components.ravel())[1:]
    return _radius(np.ones(int(np.median(sizes)), bool).reshape(-1, *([1] * (region.ndim - 1))))


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
        radius = _object_radius(region)
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


def _blob(shape: tuple[int, ...], center: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random blob of about ``radius`` voxels around ``center``."""
    grid = np.indices(shape, dtype=np.float32)
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, center)))
    wobble = ndimage.gaussian_filter(rng.standard_normal(shape), max(radius / 2, 1.0))
    wobble /= np.abs(wobble).max() or 1.0
    return distance < radius * (1 + 0.3 * wobble)


def _holes(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    foreground = mask > 0
    if not foreground.any():
        return mask
    inside = np.argwhere(foreground)
    radius = _radius(foreground)
    out = mask.copy()
    for _ in range(1 + int(3 * strength)):
        center = inside[rng.integers(len(inside))]
        out[_blob(mask.shape, center, max(1.0, 0.35 * strength * radius), rng) & foreground] = 0
    return out


def _drop(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """Remove a slab holding ``sqrt(strength)`` of one structure (all of it at strength 1)."""
    label = _pick_class(mask, rng)
    if label is None:
        return mask
    return _fill_from_neighbours(mask, _slab(mask == label, min(1.0, np.sqrt(strength)), rng))


def _extra(mask: np.ndarray, strength: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """1-3 blobs of a foreground class, each up to ``strength`` times the size of that structure."""
    label = _pick_class(mask, rng) or int(rng.integers(1, num_classes))
    radius = _radius(mask == label) if (mask == label).any() else 0.1 * min(mask.shape)
    out = mask.copy()
    for _ in range(int(rng.integers(1, 4))):
        center = np.array([rng.uniform(0, size) for size in mask.shape])
        out[_blob(mask.shape, center, max(1.0, np.sqrt(strength) * radius), rng)] = label
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
