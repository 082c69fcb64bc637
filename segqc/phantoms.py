"""Synthetic CT-like (image, mask) pairs and predictions with labelled failures.

Generative model
----------------
A case lives on a grid of shape ``spatial_size``: ``(H, W)`` in 2D or
``(D, H, W)`` in 3D. Every structure is a star-shaped blob: an ellipse or
ellipsoid with random semi-axes and orientation whose radius is modulated by a
random polynomial of degree <= 3 in the unit direction, the analogue of
low-order Fourier (2D) or spherical-harmonic (3D) terms. The amplitude of the
modulation bounds how far a blob reaches, so blobs can be placed by distance.

* body: a large blob near the centre filled with soft tissue; outside is air.
* organ (label 1): a blob lying wholly inside the body.
* lesion (label 2): a smaller blob at least 2 voxels inside the organ, present
  with probability ``lesion_probability`` (less often on grids too small to
  fit a lesion of ``MIN_LESION_VOXELS`` voxels).
* distractors (unlabelled): an organ-like structure of similar intensity and a
  few small bright bone- or vessel-like blobs, all outside the organ, so that
  the image is not trivially the mask.

The image is the piecewise-constant intensity map (per-case random contrasts;
the lesion is darker or brighter than the organ) blurred by a partial-volume
kernel, multiplied by a smooth polynomial bias field, plus correlated texture
and white noise, clipped to ``[0, 1]``. Images are float32 of shape
``(1, *spatial)``; masks are uint8 label maps of shape ``spatial`` with values
in ``{0, 1, 2}``.

Predictions are ground-truth masks passed through :func:`corrupt`, which
applies one named mode with a severity in ``[0, 1]``. ``"good"`` adds small
realistic boundary errors; the modes in :data:`FAILURE_MODES` are graded
failures. Sizes of errors are relative to the equivalent radius of each
structure, so a severity means the same in 2D and 3D and for any image size.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from segqc.csvfiles import write_csv
from segqc.errors import did_you_mean

BACKGROUND, ORGAN, LESION = 0, 1, 2
NUM_CLASSES = 3
FAILURE_MODES: tuple[str, ...] = (
    "over",
    "under",
    "missing",
    "false_positive",
    "jitter",
    "shift",
    "class_swap",
    "empty",
)
MODES: tuple[str, ...] = ("good", *FAILURE_MODES)
FORMATS: tuple[str, ...] = ("png", "nii.gz", "npy")
MIN_SIZE = 16
MIN_LESION_VOXELS = 4

_TRAINING_STREAM, _PREDICTION_STREAM, _ASSIGNMENT_STREAM = 0, 1, 2
_CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class PhantomCase:
    """One synthetic case.

    Attributes:
        case_id: Identifier, also the file stem used by :func:`write_cases`.
        image: Float32 image, shape ``(1, *spatial)``, values in ``[0, 1]``.
        mask: Ground-truth uint8 label map, shape ``spatial``.
        prediction: Predicted uint8 label map, shape ``spatial``, or ``None``.
        failure_mode: Mode given to :func:`corrupt` (``"good"`` or one of
            :data:`FAILURE_MODES`), or ``None`` without a prediction.
        severity: Severity given to :func:`corrupt`, or ``None``.
    """

    case_id: str
    image: np.ndarray
    mask: np.ndarray
    prediction: np.ndarray | None = None
    failure_mode: str | None = None
    severity: float | None = None

    @property
    def is_failure(self) -> bool:
        """Whether the prediction is a labelled failure (not ``"good"``)."""
        return self.failure_mode is not None and self.failure_mode != "good"


@dataclass(frozen=True)
class _Shape:
    """A star-shaped blob centred at the origin.

    Attributes:
        semi_axes: Semi-axes in voxels, shape ``(d,)``.
        rotation: Orthogonal matrix whose columns are the blob's axes, ``(d, d)``.
        coefficients: Weights of the direction monomials, shape ``(m,)``.
    """

    semi_axes: np.ndarray
    rotation: np.ndarray
    coefficients: np.ndarray

    @property
    def extent(self) -> float:
        """Upper bound of the distance from the centre to any voxel of the blob."""
        return float(self.semi_axes.max() * (1.0 + np.abs(self.coefficients).sum()))

    def scaled(self, factor: float) -> _Shape:
        """Return the same blob with semi-axes multiplied by ``factor``."""
        return _Shape(self.semi_axes * factor, self.rotation, self.coefficients)

    def render(self, spatial: tuple[int, ...], center: np.ndarray) -> np.ndarray:
        """Rasterise the blob, evaluating it only inside its bounding box.

        Args:
            spatial: Grid shape ``(H, W)`` or ``(D, H, W)``.
            center: Centre of the blob in voxels, shape ``(d,)``.

        Returns:
            Boolean mask of shape ``spatial``.
        """
        out = np.zeros(spatial, bool)
        low = np.clip(np.floor(center - self.extent), 0, spatial).astype(int)
        high = np.clip(np.ceil(center + self.extent) + 1, 0, spatial).astype(int)
        if np.any(high <= low):
            return out
        offsets = _offsets(low, high, center)
        local = [
            sum(self.rotation[j, i] * offset for j, offset in enumerate(offsets)) / self.semi_axes[i]
            for i in range(len(spatial))
        ]
        rho = np.sqrt(sum(x**2 for x in local))
        unit = [x / np.maximum(rho, 1e-6) for x in local]
        lobes = sum(
            c * math.prod(unit[i] for i in term)
            for c, term in zip(self.coefficients, _monomials(len(spatial)), strict=True)
        )
        out[tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))] = rho <= 1.0 + lobes
        return out


def _offsets(low: Sequence[int], high: Sequence[int], center: np.ndarray) -> list[np.ndarray]:
    """Open grid of voxel offsets from ``center`` over the box ``[low, high)``.

    Returns:
        One array per axis ``i`` of length ``high[i] - low[i]``, shaped to
        broadcast against the others.
    """
    ndim = len(center)
    return [
        (np.arange(lo, hi) - c).reshape([-1 if axis == i else 1 for axis in range(ndim)])
        for i, (lo, hi, c) in enumerate(zip(low, high, center, strict=True))
    ]


@functools.cache
def _monomials(ndim: int) -> tuple[tuple[int, ...], ...]:
    """Axis-index tuples of all monomials of degree 1 to 3 in ``ndim`` variables."""
    return tuple(term for degree in (1, 2, 3) for term in itertools.combinations_with_replacement(range(ndim), degree))


def _random_rotation(ndim: int, rng: np.random.Generator) -> np.ndarray:
    """Haar-random rotation (2D) or orthogonal matrix (3D), shape ``(ndim, ndim)``."""
    if ndim == 2:
        angle = rng.uniform(0.0, 2.0 * math.pi)
        return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    q, r = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    return q * np.sign(np.diag(r))


def _sample_shape(
    ndim: int,
    radius: float | np.ndarray,
    rng: np.random.Generator,
    *,
    aspect: float = 0.3,
    lobes: tuple[float, float] = (0.2, 0.45),
    rotation: np.ndarray | None = None,
) -> _Shape:
    """Draw a blob of mean radius ``radius`` voxels.

    Args:
        ndim: Number of spatial dimensions.
        radius: Mean semi-axis in voxels, a scalar or one per axis ``(ndim,)``.
        rng: Random generator.
        aspect: Semi-axes are ``radius * U(1 - aspect, 1 + aspect)``.
        lobes: Range of the bound on the relative radius modulation.
        rotation: Fixed orientation, shape ``(ndim, ndim)``; random if ``None``.

    Returns:
        The blob.
    """
    coefficients = rng.standard_normal(len(_monomials(ndim)))
    coefficients *= rng.uniform(*lobes) / np.abs(coefficients).sum()
    return _Shape(
        semi_axes=radius * rng.uniform(1.0 - aspect, 1.0 + aspect, ndim),
        rotation=_random_rotation(ndim, rng) if rotation is None else rotation,
        coefficients=coefficients,
    )


def _inner_distance(mask: np.ndarray, *, exact: bool = True) -> np.ndarray:
    """Distance to the nearest voxel outside ``mask`` or outside the grid.

    Computed within the bounding box of ``mask`` only, which is exact.

    Args:
        mask: Boolean mask, shape ``spatial``.
        exact: Euclidean distance if true, else the chessboard distance, a
            lower bound of it that is an order of magnitude faster.

    Returns:
        Float distances, shape ``spatial``.
    """
    out = np.zeros(mask.shape)
    boxes = ndimage.find_objects(mask.astype(np.uint8))
    if not boxes:
        return out
    padded = np.pad(mask[boxes[0]], 1, constant_values=False)
    if exact:
        distance = ndimage.distance_transform_edt(padded)
    else:
        distance = ndimage.distance_transform_cdt(padded, metric="chessboard")
    out[boxes[0]] = distance[tuple(slice(1, -1) for _ in range(mask.ndim))]
    return out


def _place(
    shape: _Shape,
    room: np.ndarray,
    rng: np.random.Generator,
    *,
    margin: float,
    min_scale: float = 0.4,
) -> np.ndarray:
    """Put ``shape`` where it fits, shrinking it when it fits nowhere.

    Voxels of ``room`` near the placed blob are lowered in place to the
    distance to the blob's bounding ball, so that later blobs placed in the
    same ``room`` keep clear of it.

    Args:
        shape: The blob to place.
        room: Distance of each voxel to the nearest forbidden voxel, float
            array of shape ``spatial``; updated in place.
        rng: Random generator.
        margin: Clearance in voxels between the blob and forbidden voxels.
        min_scale: Smallest shrink factor tried before giving up.

    Returns:
        Boolean mask of shape ``spatial``, all false when the blob fits nowhere.
    """
    scale = 1.0
    while scale >= min_scale:
        placed = shape.scaled(scale)
        candidates = np.flatnonzero(room >= placed.extent + margin)
        if candidates.size:
            center = np.array(np.unravel_index(rng.choice(candidates), room.shape), float)
            center += rng.uniform(-0.5, 0.5, room.ndim)
            offsets = _offsets([0] * room.ndim, room.shape, center)
            np.minimum(room, np.sqrt(sum(o**2 for o in offsets)) - placed.extent, out=room)
            return placed.render(room.shape, center)
        scale *= 0.85
    return np.zeros(room.shape, bool)


def _smooth_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise with unit standard deviation, shape ``shape``."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return noise / max(float(noise.std()), 1e-12)


def _bias_field(spatial: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field ``1 + linear + quadratic``, shape ``spatial``."""
    unit = np.ogrid[tuple(slice(-1.0, 1.0, complex(0, n)) for n in spatial)]
    field = np.ones(spatial)
    for term in _monomials(len(spatial)):
        if len(term) <= 2:
            weight = 0.05 if len(term) == 1 else 0.03
            field = field + weight * rng.standard_normal() * math.prod(unit[i] for i in term)
    return field


@dataclass(frozen=True)
class _Anatomy:
    """Boolean masks of the structures of one case, each of shape ``spatial``."""

    body: np.ndarray
    organ: np.ndarray
    lesion: np.ndarray
    similar: np.ndarray
    bright: np.ndarray


def _draw_anatomy(size: tuple[int, ...], rng: np.random.Generator, lesion_probability: float) -> _Anatomy:
    """Draw body, organ, lesion and distractors on a grid of shape ``size``."""
    ndim, short = len(size), min(size)
    body_axes = np.array(size, float) / 2.0 * rng.uniform(0.78, 0.95, ndim)
    body_shape = _sample_shape(ndim, body_axes, rng, aspect=0.0, lobes=(0.03, 0.08), rotation=np.eye(ndim))
    body_center = (np.array(size, float) - 1.0) / 2.0 + rng.uniform(-0.04, 0.04, ndim) * size
    body = body_shape.render(size, body_center)

    organ_shape = _sample_shape(ndim, short * rng.uniform(0.15, 0.25), rng, lobes=(0.3, 0.6))
    body_room = _inner_distance(body)
    organ = _place(organ_shape, body_room.copy(), rng, margin=2.0, min_scale=0.1)
    if not organ.any():
        raise ValueError(f"spatial_size {size} leaves no room for an organ")
    lesion = _draw_lesion(organ, rng) if rng.random() < lesion_probability else np.zeros(size, bool)

    room = np.minimum(body_room, _inner_distance(~organ, exact=False) - 3.0)
    similar = np.zeros(size, bool)
    if rng.random() < 0.7:
        similar = _place(_sample_shape(ndim, short * rng.uniform(0.08, 0.15), rng), room, rng, margin=1.0)
    bright = np.zeros(size, bool)
    for _ in range(rng.integers(1, 4)):
        shape = _sample_shape(ndim, max(1.5, short * rng.uniform(0.025, 0.05)), rng, lobes=(0.05, 0.2))
        bright |= _place(shape, room, rng, margin=1.0)
    return _Anatomy(body, organ, lesion, similar, bright)


def _draw_lesion(organ: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw a lesion at least 2 voxels inside ``organ`` (all false if none fits).

    Args:
        organ: Boolean organ mask, shape ``spatial``.
        rng: Random generator.

    Returns:
        Boolean lesion mask, shape ``spatial``.
    """
    room = _inner_distance(organ)
    radius = max(2.0, _equivalent_radius(organ) * rng.uniform(0.3, 0.5))
    shape = _sample_shape(organ.ndim, radius, rng, lobes=(0.1, 0.3))
    lesion = _place(shape, room.copy(), rng, margin=1.0, min_scale=0.5) & (room >= 2.0)
    return lesion if np.count_nonzero(lesion) >= MIN_LESION_VOXELS else np.zeros(organ.shape, bool)


def _render_image(anatomy: _Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Turn structures into a CT-like image.

    Args:
        anatomy: Structures of the case.
        rng: Random generator.

    Returns:
        Float32 image with values in ``[0, 1]``, shape ``(1, *spatial)``.
    """
    size = anatomy.body.shape
    organ_level = rng.uniform(0.5, 0.62)
    intensity = np.full(size, rng.uniform(0.02, 0.08))
    intensity[anatomy.body] = rng.uniform(0.27, 0.37)
    intensity[anatomy.similar] = organ_level + rng.uniform(-0.1, 0.1)
    intensity[anatomy.bright] = rng.uniform(0.8, 0.95)
    intensity[anatomy.organ] = organ_level
    intensity[anatomy.lesion] = organ_level + rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.22)

    image = ndimage.gaussian_filter(intensity, rng.uniform(0.5, 0.9)) * _bias_field(size, rng)
    image += rng.uniform(0.02, 0.045) * _smooth_noise(size, rng.uniform(1.0, 2.0), rng)
    image += rng.uniform(0.015, 0.04) * rng.standard_normal(size)
    return np.clip(image, 0.0, 1.0).astype(np.float32)[None]


def _check_spatial_size(spatial_size: Sequence[int]) -> tuple[int, ...]:
    """Validate ``spatial_size`` and return it as a tuple of ints."""
    size = tuple(spatial_size)
    if len(size) not in (2, 3):
        raise ValueError(f"spatial_size must have 2 or 3 entries, got {size}")
    if not all(isinstance(s, (int, np.integer)) and s >= MIN_SIZE for s in size):
        raise ValueError(f"spatial_size entries must be integers >= {MIN_SIZE}, got {size}")
    return tuple(int(s) for s in size)


def _check_probability(name: str, value: float) -> float:
    """Validate that ``value`` is a finite number in ``[0, 1]``."""
    if not (isinstance(value, numbers.Real) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def make_pair(
    spatial_size: Sequence[int] = (64, 64),
    rng: np.random.Generator | int | None = None,
    *,
    lesion_probability: float = 0.9,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one CT-like image and its ground-truth mask.

    Args:
        spatial_size: ``(H, W)`` or ``(D, H, W)``, each at least ``MIN_SIZE``.
        rng: Random generator or seed.
        lesion_probability: Probability that the organ contains a lesion.

    Returns:
        ``(image, mask)``: float32 image of shape ``(1, *spatial_size)`` with
        values in ``[0, 1]``, and uint8 mask of shape ``spatial_size`` with
        0 background, 1 organ, 2 lesion.

    Raises:
        ValueError: If ``spatial_size`` or ``lesion_probability`` is invalid.
    """
    size = _check_spatial_size(spatial_size)
    lesion_probability = _check_probability("lesion_probability", lesion_probability)
    rng = np.random.default_rng(rng)
    anatomy = _draw_anatomy(size, rng, lesion_probability)
    mask = anatomy.organ.astype(np.uint8)
    mask[anatomy.lesion] = LESION
    return _render_image(anatomy, rng), mask


def _equivalent_radius_of_volume(volume: float, ndim: int) -> float:
    """Radius of the disc (``ndim`` 2) or ball (``ndim`` 3) of area or volume ``volume``."""
    if ndim == 2:
        return math.sqrt(volume / math.pi)
    return math.cbrt(volume * 3.0 / (4.0 * math.pi))


def _equivalent_radius(mask: np.ndarray) -> float:
    """Radius of the disc or ball with as many voxels as ``mask``."""
    return _equivalent_radius_of_volume(float(mask.sum()), mask.ndim)


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Signed distance to the boundary of ``mask``: > 0 inside, < 0 outside.

    The grid's edge counts as boundary. Boundary voxels are at +-0.5, so
    thresholding ``distance + t > 0`` with ``|t| < 0.5`` returns ``mask``
    unchanged.

    Args:
        mask: Boolean mask, shape ``spatial``.

    Returns:
        Float signed distances, shape ``spatial``; ``-inf`` everywhere when
        ``mask`` is empty.
    """
    if not mask.any():
        return np.full(mask.shape, -np.inf)
    outside = ndimage.distance_transform_edt(~mask)
    return np.where(mask, _inner_distance(mask) - 0.5, 0.5 - outside)


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
        radius = _equivalent_radius(structure)
        level = _signed_distance(structure) + offset(radius)
        if noise is not None:
            amplitude, length = noise(radius)
            level += amplitude * _smooth_noise(labels.shape, length, rng)
        moved.append(level > 0)
    return _compose(*moved)


def _good(labels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
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


def _jitter(labels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random boundary displacement of ``0.7 * severity`` equivalent radius."""
    return _move_boundaries(labels, rng, lambda r: 0.0, lambda r: (0.7 * severity * r, max(1.0, 0.4 * r)))


def _slab(voxels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
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
    dropped = voxels[_slab(voxels, math.sqrt(severity), rng)]
    out[tuple(dropped.T)] = BACKGROUND if target == ORGAN else ORGAN
    return out


def _class_swap(labels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Swap organ and lesion labels in a slab holding ``severity`` of the foreground."""
    out = labels.copy()
    voxels = np.argwhere(labels > 0)
    if not len(voxels):
        return out
    index = tuple(voxels[_slab(voxels, severity, rng)].T)
    out[index] = np.where(labels[index] == ORGAN, LESION, ORGAN)
    return out


def _shift(labels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Translate by ``severity`` foreground equivalent radii, rounded to voxels."""
    foreground = labels > 0
    if not foreground.any():
        return labels.copy()
    direction = rng.standard_normal(labels.ndim)
    direction /= np.linalg.norm(direction)
    step = np.rint(direction * severity * _equivalent_radius(foreground)).astype(int)
    out = np.zeros_like(labels)
    source = tuple(slice(max(0, -s), n - max(0, s)) for s, n in zip(step, labels.shape, strict=True))
    target = tuple(slice(max(0, s), n - max(0, -s)) for s, n in zip(step, labels.shape, strict=True))
    out[target] = labels[source]
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
        ORGAN: _inner_distance(labels == BACKGROUND, exact=False),
        LESION: _inner_distance(labels != LESION, exact=False),
    }
    for _ in range(int(rng.integers(1, 4))):
        label = int(rng.choice([ORGAN, LESION]))
        volume = 2.0 * severity * _reference_volume(labels, label)
        shape = _sample_shape(labels.ndim, max(1.0, _equivalent_radius_of_volume(volume, labels.ndim)), rng)
        blob = _place(shape, rooms[label], rng, margin=2.0, min_scale=0.5)
        if not blob.any():
            center = np.array(np.unravel_index(np.argmax(rooms[label]), labels.shape), float)
            blob = shape.render(labels.shape, center)
        out[blob & (out == BACKGROUND if label == ORGAN else out != LESION)] = label
    return out


def _empty(labels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """All background, whatever the severity."""
    return np.zeros_like(labels)


_CORRUPTIONS: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "good": _good,
    "over": _over,
    "under": _under,
    "missing": _missing,
    "false_positive": _false_positive,
    "jitter": _jitter,
    "shift": _shift,
    "class_swap": _class_swap,
    "empty": _empty,
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
    if mode not in _CORRUPTIONS:
        raise ValueError(f"unknown mode {mode!r}{did_you_mean(mode, MODES)}; expected one of {MODES}")
    severity = _check_probability("severity", severity)
    return _CORRUPTIONS[mode](mask.astype(np.uint8), severity, np.random.default_rng(rng))


def _check_count(n: int) -> int:
    """Validate a number of cases."""
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    return int(n)


def _check_seed(seed: int) -> int:
    """Validate a seed."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _case_id(prefix: str, index: int, n: int) -> str:
    """Zero-padded case identifier such as ``train_0007``."""
    return f"{prefix}_{index:0{max(4, len(str(n - 1)))}d}"


def make_training_set(
    n: int,
    spatial_size: Sequence[int] = (64, 64),
    seed: int = 0,
    *,
    lesion_probability: float = 0.9,
) -> list[PhantomCase]:
    """Draw ``n`` correct (image, mask) pairs without predictions.

    Case ``i`` depends only on ``(seed, i)``, and never coincides with a case
    of :func:`make_prediction_set` for the same seed.

    Args:
        n: Number of cases.
        spatial_size: ``(H, W)`` or ``(D, H, W)``.
        seed: Non-negative seed.
        lesion_probability: Probability that a case has a lesion.

    Returns:
        Cases ``train_0000``, ``train_0001``, ... with ``prediction=None``.

    Raises:
        ValueError: If an argument is invalid.
    """
    n, seed = _check_count(n), _check_seed(seed)
    cases = []
    for i in range(n):
        image, mask = make_pair(
            spatial_size, np.random.default_rng([seed, _TRAINING_STREAM, i]), lesion_probability=lesion_probability
        )
        cases.append(PhantomCase(_case_id("train", i, n), image, mask))
    return cases


def make_prediction_set(
    n: int,
    spatial_size: Sequence[int] = (64, 64),
    seed: int = 0,
    failure_fraction: float = 0.3,
    modes: Sequence[str] = FAILURE_MODES,
    *,
    severity_range: tuple[float, float] = (0.3, 1.0),
    lesion_probability: float = 0.9,
) -> list[PhantomCase]:
    """Draw ``n`` cases with predictions, a labelled fraction of them failed.

    Exactly ``round(failure_fraction * n)`` cases, at random positions, are
    failures; their modes cycle through ``modes`` (so each is equally
    frequent) and their severities are uniform in ``severity_range``. The
    other cases are ``"good"`` with severity uniform in ``[0, 1]``.

    Args:
        n: Number of cases.
        spatial_size: ``(H, W)`` or ``(D, H, W)``.
        seed: Non-negative seed.
        failure_fraction: Fraction of failed predictions, in ``[0, 1]``.
        modes: Failure modes to use, a non-empty subset of :data:`FAILURE_MODES`.
        severity_range: ``(low, high)`` severities of failures, within ``[0, 1]``.
        lesion_probability: Probability that a case has a lesion.

    Returns:
        Cases ``pred_0000``, ``pred_0001``, ... with predictions and labels.

    Raises:
        ValueError: If an argument is invalid.
    """
    n, seed = _check_count(n), _check_seed(seed)
    failure_fraction = _check_probability("failure_fraction", failure_fraction)
    modes = tuple(modes)
    if not modes:
        raise ValueError("modes must not be empty")
    for mode in modes:
        if mode not in FAILURE_MODES:
            raise ValueError(
                f"unknown failure mode {mode!r}{did_you_mean(mode, FAILURE_MODES)}; expected some of {FAILURE_MODES}"
            )
    if len(severity_range) != 2:
        raise ValueError(f"severity_range must be (low, high), got {severity_range!r}")
    low, high = (_check_probability("severity_range", v) for v in severity_range)
    if low > high:
        raise ValueError(f"severity_range must be (low, high) with low <= high, got {severity_range}")

    assignment = np.random.default_rng([seed, _ASSIGNMENT_STREAM])
    failed = assignment.permutation(n)[: round(failure_fraction * n)]
    labels: list[tuple[str, float]] = [("good", float(s)) for s in assignment.uniform(0.0, 1.0, n)]
    for j, i in enumerate(failed):
        labels[i] = (modes[j % len(modes)], float(assignment.uniform(low, high)))

    cases = []
    for i, (mode, severity) in enumerate(labels):
        rng = np.random.default_rng([seed, _PREDICTION_STREAM, i])
        image, mask = make_pair(spatial_size, rng, lesion_probability=lesion_probability)
        prediction = corrupt(mask, mode, severity, rng)
        cases.append(PhantomCase(_case_id("pred", i, n), image, mask, prediction, mode, severity))
    return cases


def _write_array(array: np.ndarray, path: Path, fmt: str) -> None:
    """Write one image (spatial array) or label map in ``fmt``."""
    if fmt == "npy":
        np.save(path, array)
    elif fmt == "png":
        from PIL import Image

        if np.issubdtype(array.dtype, np.floating):
            array = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
        Image.fromarray(array).save(path)
    else:
        import nibabel as nib

        image = nib.Nifti1Image(array, affine=np.eye(4))
        image.header.set_xyzt_units("mm")
        nib.save(image, path)


def write_cases(cases: Sequence[PhantomCase], out_dir: str | Path, fmt: str = "npy") -> Path:
    """Write cases as files plus a ``cases.csv`` index.

    Layout: ``images/<id>.<ext>``, ``masks/<id>.<ext>``,
    ``predictions/<id>.<ext>`` (cases with a prediction only) and
    ``cases.csv`` with columns ``case_id, failure_mode, severity`` (empty when
    ``None``). Formats:

    * ``"npy"``: raw arrays; images keep their channel axis ``(1, *spatial)``.
    * ``"png"`` (2D only): images as 8-bit grayscale ``round(255 * image)``,
      masks as 8-bit label values 0, 1, 2.
    * ``"nii.gz"``: images as float32 ``spatial`` arrays (channel dropped),
      masks as uint8, identity affine (1 mm voxels, array axes = world axes).

    Args:
        cases: Cases to write; identifiers must be unique file-name-safe strings.
        out_dir: Output folder, created if needed.
        fmt: ``"npy"``, ``"png"`` or ``"nii.gz"``.

    Returns:
        Path of ``cases.csv``.

    Raises:
        ValueError: If the format is unknown, PNG is asked for 3D cases, or a
            case identifier is unsafe or repeated.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}{did_you_mean(fmt, FORMATS)}; expected one of {FORMATS}")
    ids = [case.case_id for case in cases]
    for case_id in ids:
        if not _CASE_ID.fullmatch(case_id):
            raise ValueError(f"case_id {case_id!r} is not a safe file name (letters, digits, '.', '_', '-')")
    if len(set(ids)) != len(ids):
        raise ValueError("case_id values must be unique")
    if fmt == "png" and any(case.mask.ndim != 2 for case in cases):
        raise ValueError("format 'png' holds 2D cases only; use 'nii.gz' or 'npy' for 3D")

    out = Path(out_dir)
    folders = {name: out / name for name in ("images", "masks", "predictions")}
    for name, folder in folders.items():
        if name != "predictions" or any(case.prediction is not None for case in cases):
            folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        image = case.image if fmt == "npy" else case.image[0]
        _write_array(image, folders["images"] / f"{case.case_id}.{fmt}", fmt)
        _write_array(case.mask, folders["masks"] / f"{case.case_id}.{fmt}", fmt)
        if case.prediction is not None:
            _write_array(case.prediction, folders["predictions"] / f"{case.case_id}.{fmt}", fmt)

    index = out / "cases.csv"
    write_csv(pd.DataFrame({"case_id": ids, "failure_mode": [case.failure_mode or "" for case in cases],
                            "severity": [np.nan if case.severity is None else float(case.severity) for case in cases]}),
              index)
    return index
