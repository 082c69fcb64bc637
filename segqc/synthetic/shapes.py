"""Random smooth shapes and the geometry of masks: star-shaped blobs, placement by distance, equivalent radii.

Every structure of a phantom is a star-shaped :class:`Blob`: an ellipse or
ellipsoid with random semi-axes and orientation whose radius is modulated by a
random polynomial of degree <= 3 in the unit direction, the analogue of
low-order Fourier (2D) or spherical-harmonic (3D) terms. The amplitude of the
modulation bounds how far a blob reaches, so blobs can be placed by distance
(:func:`place_blob`). The radius and distance helpers also size the
corruptions of :mod:`segqc.synthetic.corruptions`.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Blob:
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

    def scaled(self, factor: float) -> Blob:
        """Return the same blob with semi-axes multiplied by ``factor``."""
        return Blob(self.semi_axes * factor, self.rotation, self.coefficients)

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
        grid = offsets(low, high, center)
        local = [
            sum(self.rotation[j, i] * offset for j, offset in enumerate(grid)) / self.semi_axes[i]
            for i in range(len(spatial))
        ]
        rho = np.sqrt(sum(x**2 for x in local))
        unit = [x / np.maximum(rho, 1e-6) for x in local]
        lobes = sum(
            c * math.prod(unit[i] for i in term)
            for c, term in zip(self.coefficients, monomials(len(spatial)), strict=True)
        )
        out[tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))] = rho <= 1.0 + lobes
        return out


def offsets(low: Sequence[int], high: Sequence[int], center: np.ndarray) -> list[np.ndarray]:
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
def monomials(ndim: int) -> tuple[tuple[int, ...], ...]:
    """Axis-index tuples of all monomials of degree 1 to 3 in ``ndim`` variables."""
    return tuple(term for degree in (1, 2, 3) for term in itertools.combinations_with_replacement(range(ndim), degree))


def random_rotation(ndim: int, rng: np.random.Generator) -> np.ndarray:
    """Haar-random rotation (2D) or orthogonal matrix (3D), shape ``(ndim, ndim)``."""
    if ndim == 2:
        angle = rng.uniform(0.0, 2.0 * math.pi)
        return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    q, r = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    return q * np.sign(np.diag(r))


def sample_blob(
    ndim: int,
    radius: float | np.ndarray,
    rng: np.random.Generator,
    *,
    aspect: float = 0.3,
    lobes: tuple[float, float] = (0.2, 0.45),
    rotation: np.ndarray | None = None,
) -> Blob:
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
    coefficients = rng.standard_normal(len(monomials(ndim)))
    coefficients *= rng.uniform(*lobes) / np.abs(coefficients).sum()
    return Blob(
        semi_axes=radius * rng.uniform(1.0 - aspect, 1.0 + aspect, ndim),
        rotation=random_rotation(ndim, rng) if rotation is None else rotation,
        coefficients=coefficients,
    )


def inner_distance(mask: np.ndarray, *, exact: bool = True) -> np.ndarray:
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


def place_blob(
    shape: Blob,
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
            grid = offsets([0] * room.ndim, room.shape, center)
            np.minimum(room, np.sqrt(sum(o**2 for o in grid)) - placed.extent, out=room)
            return placed.render(room.shape, center)
        scale *= 0.85
    return np.zeros(room.shape, bool)


def smooth_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise with unit standard deviation, shape ``shape``."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return noise / max(float(noise.std()), 1e-12)


def equivalent_radius_of_volume(volume: float, ndim: int) -> float:
    """Radius of the disc (``ndim`` 2) or ball (``ndim`` 3) of area or volume ``volume``."""
    if ndim == 2:
        return math.sqrt(volume / math.pi)
    return math.cbrt(volume * 3.0 / (4.0 * math.pi))


def equivalent_radius(mask: np.ndarray) -> float:
    """Radius of the disc or ball with as many voxels as ``mask``."""
    return equivalent_radius_of_volume(float(mask.sum()), mask.ndim)


def signed_distance(mask: np.ndarray) -> np.ndarray:
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
    return np.where(mask, inner_distance(mask) - 0.5, 0.5 - outside)


def fill_from_neighbours(mask: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Give each voxel of ``removed`` the label of the nearest voxel outside it."""
    if not removed.any():
        return mask
    if removed.all():
        return np.zeros_like(mask)
    indices = ndimage.distance_transform_edt(removed, return_distances=False, return_indices=True)
    out = mask.copy()
    out[removed] = mask[tuple(axis[removed] for axis in indices)]
    return out


def warp(mask: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resampling of ``mask`` at ``grid + displacement`` (outside: background)."""
    grid = np.indices(mask.shape, dtype=np.float32)
    return ndimage.map_coordinates(mask, grid + displacement, order=0, mode="constant", cval=0).astype(mask.dtype)


def smooth_field(shape: tuple[int, ...], length: float, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random displacement field ``(ndim, *shape)`` of correlation ``length`` and largest value ``amplitude``."""
    field = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), max(length, 1.0)) for _ in shape])
    scale = np.abs(field).max() or 1.0
    return (field / scale * amplitude).astype(np.float32)


def object_radius(region: np.ndarray) -> float:
    """Median radius (voxels) of the connected components of ``region`` (1 when it is empty)."""
    components, count = ndimage.label(region)
    if not count:
        return 1.0
    sizes = np.bincount(components.ravel())[1:]
    return equivalent_radius_of_volume(float(int(np.median(sizes))), region.ndim)


def wobbly_ball(shape: tuple[int, ...], center: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random blob of about ``radius`` voxels around ``center``."""
    grid = np.indices(shape, dtype=np.float32)
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, center)))
    wobble = ndimage.gaussian_filter(rng.standard_normal(shape), max(radius / 2, 1.0))
    wobble /= np.abs(wobble).max() or 1.0
    return distance < radius * (1 + 0.3 * wobble)
