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

Predictions are ground-truth masks passed through
:func:`segqc.synthetic.corruptions.corrupt`, which applies one named anatomical
mode with a severity in ``[0, 1]``. ``"good"`` adds small
realistic boundary errors; the modes in :data:`FAILURE_MODES` are graded
failures. Sizes of errors are relative to the equivalent radius of each
structure, so a severity means the same in 2D and 3D and for any image size.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from segqc.csvfiles import write_csv
from segqc.errors import did_you_mean
from segqc.synthetic.corruptions import FAILURE_MODES, LESION, corrupt
from segqc.synthetic.shapes import equivalent_radius, inner_distance, monomials, place_blob, sample_blob, smooth_noise

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


def _bias_field(spatial: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field ``1 + linear + quadratic``, shape ``spatial``."""
    unit = np.ogrid[tuple(slice(-1.0, 1.0, complex(0, n)) for n in spatial)]
    field = np.ones(spatial)
    for term in monomials(len(spatial)):
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
    body_shape = sample_blob(ndim, body_axes, rng, aspect=0.0, lobes=(0.03, 0.08), rotation=np.eye(ndim))
    body_center = (np.array(size, float) - 1.0) / 2.0 + rng.uniform(-0.04, 0.04, ndim) * size
    body = body_shape.render(size, body_center)

    organ_shape = sample_blob(ndim, short * rng.uniform(0.15, 0.25), rng, lobes=(0.3, 0.6))
    body_room = inner_distance(body)
    organ = place_blob(organ_shape, body_room.copy(), rng, margin=2.0, min_scale=0.1)
    if not organ.any():
        raise ValueError(f"spatial_size {size} leaves no room for an organ")
    lesion = _draw_lesion(organ, rng) if rng.random() < lesion_probability else np.zeros(size, bool)

    room = np.minimum(body_room, inner_distance(~organ, exact=False) - 3.0)
    similar = np.zeros(size, bool)
    if rng.random() < 0.7:
        similar = place_blob(sample_blob(ndim, short * rng.uniform(0.08, 0.15), rng), room, rng, margin=1.0)
    bright = np.zeros(size, bool)
    for _ in range(rng.integers(1, 4)):
        shape = sample_blob(ndim, max(1.5, short * rng.uniform(0.025, 0.05)), rng, lobes=(0.05, 0.2))
        bright |= place_blob(shape, room, rng, margin=1.0)
    return _Anatomy(body, organ, lesion, similar, bright)


def _draw_lesion(organ: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw a lesion at least 2 voxels inside ``organ`` (all false if none fits).

    Args:
        organ: Boolean organ mask, shape ``spatial``.
        rng: Random generator.

    Returns:
        Boolean lesion mask, shape ``spatial``.
    """
    room = inner_distance(organ)
    radius = max(2.0, equivalent_radius(organ) * rng.uniform(0.3, 0.5))
    shape = sample_blob(organ.ndim, radius, rng, lobes=(0.1, 0.3))
    lesion = place_blob(shape, room.copy(), rng, margin=1.0, min_scale=0.5) & (room >= 2.0)
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
    image += rng.uniform(0.02, 0.045) * smooth_noise(size, rng.uniform(1.0, 2.0), rng)
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
