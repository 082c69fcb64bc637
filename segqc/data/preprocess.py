"""How files become model inputs: the preprocessing settings and the MONAI transforms that apply them.

Steps of :func:`segqc.data.cases.prepare_case`, in order:

1. read the image ``(C, *spatial)`` and mask; check that their spatial shapes
   agree and, when both are NIfTI, their affines (tolerance 1e-3 mm);
2. check the dimensionality against the model (a 3D file for a 2D model needs
   ``slice_axis``, unless one axis has length 1);
3. map label values to class indices ``0..K-1`` (:func:`segqc.data.labels.label_indices`);
4. NIfTI only: reorient to ``orientation`` (``Orientation``, :func:`reorient`);
5. resample to ``spacing`` (``Spacing``; images bilinear, class indices nearest; :func:`respace`);
6. normalise intensities per channel over the whole volume
   (``ScaleIntensityRangePercentiles``, ``NormalizeIntensity`` or ``ScaleIntensityRange``; :func:`normalise`);
7. for a 2D model on a 3D volume, cut slices along ``slice_axis`` (an axis
   after reorientation: for ``RAS``, 0 is sagittal, 1 coronal, 2 axial);
8. bring each case or slice to ``spatial_size`` (``Resize``, images
   bilinear/trilinear, class indices nearest; or ``ResizeWithPadOrCrop``; :func:`fit_to_size`).

The 3D patch route (``patches``) replaces step 8: the volume is cropped to the
region that holds its structures and cut into ``spatial_size`` patches
(:mod:`segqc.data.regions`).
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from segqc.errors import FieldError, did_you_mean
from segqc.fields import check_types

SECTION = "data"  # the YAML section (configs/*.yaml) holding these options
INTENSITY_MODES = ("percentile", "zscore", "window", "none")
RESIZE_MODES = ("resize", "crop_or_pad")
MAX_SPATIAL_SIZE = 2**16
"""Largest model input size along one axis (65,536)."""
_AXIS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def _is_number(value: object) -> bool:
    """Whether ``value`` is a real number (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_pair(value: object) -> bool:
    """Whether ``value`` is a sequence of two numbers ``low < high``."""
    return (isinstance(value, Sequence) and len(value) == 2 and all(_is_number(v) for v in value)
            and value[0] < value[1])


def _valid_axcodes(code: object) -> bool:
    """Whether ``code`` is three letters, one from each of ``LR``, ``PA``, ``IS``."""
    if not isinstance(code, str) or len(code) != 3:
        return False
    axes = [next((i for i, pair in enumerate(_AXIS_LABELS) if letter in pair), -1) for letter in code.upper()]
    return sorted(axes) == [0, 1, 2]


@dataclasses.dataclass
class PreprocessConfig:
    """How files become model inputs.

    Attributes:
        spatial_dims: 2 or 3, the dimensionality of the model.
        spatial_size: Model input size, ``spatial_dims`` positive integers.
        spacing: Voxel size in mm to resample to before resizing (``None``
            keeps the file's). For a 2D model on 3D volumes, the in-plane
            spacing; the spacing along ``slice_axis`` is kept.
        intensity: ``percentile`` (``percentiles`` mapped to 0 and 1, clipped),
            ``zscore`` (mean 0, std 1), ``window`` (``window`` mapped to 0 and 1,
            clipped; CT Hounsfield windows) or ``none``.
        percentiles: ``(low, high)`` percentiles for ``percentile``.
        window: ``(low, high)`` intensities for ``window``, e.g. ``(-100, 300)``.
        slice_axis: For a 2D model on 3D volumes, the spatial axis (0, 1, 2,
            after reorientation) to cut slices along.
        orientation: Axis codes such as ``RAS`` that NIfTI files are reoriented
            to; ``None`` keeps the file orientation.
        resize: ``resize`` (scale to ``spatial_size``) or ``crop_or_pad``
            (centre crop or pad).
        foreground_slices_only: With ``slice_axis``, keep only slices whose
            mask has a class other than index 0.
        patches: The 3D patch route (:mod:`segqc.data.regions`): volumes are not
            resized to ``spatial_size``; after respacing they are cropped to the
            structures plus ``crop_margin``, and ``spatial_size`` is the size of the
            patches the model trains on and of the windows that score a volume.
        crop_margin: Margin around the structures (mm) of the patch route.
    """

    spatial_dims: int = 2
    spatial_size: Sequence[int] = (64, 64)
    spacing: Sequence[float] | None = None
    intensity: str = "percentile"
    percentiles: Sequence[float] = (1.0, 99.0)
    window: Sequence[float] | None = None
    slice_axis: int | None = None
    orientation: str | None = "RAS"
    resize: str = "resize"
    foreground_slices_only: bool = False
    patches: bool = False
    crop_margin: float = 10.0

    def __post_init__(self) -> None:
        check_types(self, SECTION)
        for name, allowed in {"intensity": INTENSITY_MODES, "resize": RESIZE_MODES}.items():
            value = getattr(self, name)
            if value not in allowed:
                raise FieldError(SECTION, name, f"{value!r} is not one of {', '.join(allowed)}"
                                                f"{did_you_mean(str(value), allowed)}")
        if self.intensity == "window" and self.window is None:
            raise FieldError(SECTION, "window", "required when intensity is 'window', e.g. [-100, 300]")
        dims = self.spatial_dims
        size, spacing = self.spatial_size, self.spacing
        checks = {
            "spatial_dims": dims in (2, 3) and not isinstance(dims, bool),
            "spatial_size": isinstance(size, Sequence) and len(size) == dims
            and all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_SPATIAL_SIZE for s in size),
            "spacing": spacing is None or (isinstance(spacing, Sequence) and len(spacing) == dims
                                           and all(_is_number(s) and s > 0 for s in spacing)),
            "percentiles": _is_pair(self.percentiles) and 0 <= self.percentiles[0] and self.percentiles[1] <= 100,
            "window": self.window is None or _is_pair(self.window),
            "slice_axis": self.slice_axis is None or (self.slice_axis in (0, 1, 2) and dims == 2
                                                      and not isinstance(self.slice_axis, bool)),
            "orientation": self.orientation is None or _valid_axcodes(self.orientation),
            "foreground_slices_only": isinstance(self.foreground_slices_only, bool),
            "patches": isinstance(self.patches, bool) and (not self.patches or dims == 3),
            "crop_margin": _is_number(self.crop_margin) and self.crop_margin >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise FieldError(SECTION, name, f"invalid value {getattr(self, name)!r}{_HINTS.get(name, '')}")
        self.spatial_size = tuple(int(s) for s in size)
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.percentiles = tuple(float(p) for p in self.percentiles)
        self.window = None if self.window is None else tuple(float(w) for w in self.window)
        self.orientation = None if self.orientation is None else self.orientation.upper()


_HINTS = {
    "spatial_dims": "; expected 2 or 3",
    "spatial_size": f"; expected spatial_dims whole numbers in 1..{MAX_SPATIAL_SIZE:,}",
    "spacing": "; expected spatial_dims positive numbers (mm) or null",
    "percentiles": "; expected [low, high] with 0 <= low < high <= 100",
    "window": "; expected [low, high] with low < high",
    "slice_axis": "; expected 0, 1 or 2, and spatial_dims 2",
    "orientation": "; expected three axis codes, one of L/R, P/A, I/S each (e.g. RAS), or null",
    "foreground_slices_only": "; expected true or false",
    "patches": "; expected true or false, and true only with spatial_dims 3",
    "crop_margin": "; expected a margin in mm >= 0",
}


def _to_numpy(array: object) -> np.ndarray:
    """A MONAI output (MetaTensor, tensor or array) as a NumPy array."""
    from monai.utils import convert_to_numpy

    return convert_to_numpy(array, wrap_sequence=True)


def _transform_pair(image: np.ndarray, indices: np.ndarray | None, affine: np.ndarray, image_transform: Callable,
                    mask_transform: Callable) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Apply a MONAI spatial transform to an image and its class indices on the same grid.

    Args:
        image: float32 ``(C, *spatial)``.
        indices: Class indices as float32 ``(1, *spatial)``, or ``None``.
        affine: ``(4, 4)`` affine shared by both.
        image_transform: Transform of the image (interpolating).
        mask_transform: Transform of the indices (nearest neighbour).

    Returns:
        The transformed image and indices (same layouts) and their new affine.
    """
    from monai.data import MetaTensor

    meta_affine = torch.as_tensor(affine, dtype=torch.float64)
    image_t = image_transform(MetaTensor(torch.from_numpy(image), affine=meta_affine))
    indices_out = None
    if indices is not None:
        indices_out = _to_numpy(mask_transform(MetaTensor(torch.from_numpy(indices), affine=meta_affine)))
    return _to_numpy(image_t).astype(np.float32), indices_out, _to_numpy(image_t.affine).astype(np.float64)


def reorient(image: np.ndarray, indices: np.ndarray | None, affine: np.ndarray,
              axcodes: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Reorient image and indices to ``axcodes`` (its first letters in 2D); see :func:`_transform_pair`."""
    from monai.transforms import Orientation

    orientation = Orientation(axcodes=axcodes[: image.ndim - 1], labels=_AXIS_LABELS)
    return _transform_pair(image, indices, affine, orientation, orientation)


def respace(image: np.ndarray, indices: np.ndarray | None, affine: np.ndarray,
             pixdim: Sequence[float]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Resample image (bilinear) and indices (nearest) to ``pixdim`` mm (0 keeps an axis)."""
    from monai.transforms import Spacing

    return _transform_pair(image, indices, affine, Spacing(pixdim=pixdim, mode="bilinear"),
                           Spacing(pixdim=pixdim, mode="nearest"))


def normalise(image: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Per-channel intensity normalisation of a float32 ``(C, *spatial)`` image."""
    from monai.transforms import NormalizeIntensity, ScaleIntensityRange, ScaleIntensityRangePercentiles

    if config.intensity == "none":
        return image
    if config.intensity == "percentile":
        low, high = config.percentiles
        transform = ScaleIntensityRangePercentiles(low, high, 0.0, 1.0, clip=True, channel_wise=True)
    elif config.intensity == "zscore":
        transform = NormalizeIntensity(channel_wise=True)
    else:
        low, high = config.window  # type: ignore[misc]
        transform = ScaleIntensityRange(low, high, 0.0, 1.0, clip=True)
    with warnings.catch_warnings():
        # A constant channel maps to 0; MONAI warns about the zero range on every such image.
        warnings.filterwarnings("ignore", message="Divide by zero")
        return _to_numpy(transform(image)).astype(np.float32)


def fit_to_size(array: np.ndarray, config: PreprocessConfig, is_mask: bool) -> np.ndarray:
    """Bring every channel of ``(N, *spatial)`` to ``(N, *spatial_size)``.

    Images are interpolated (bi/trilinear, anti-aliased when shrinking) or
    padded with their per-channel minimum; class indices use nearest
    neighbours and are padded with class 0.
    """
    from monai.transforms import Resize, ResizeWithPadOrCrop

    size = config.spatial_size
    if tuple(array.shape[1:]) == tuple(size):
        return array
    if config.resize == "resize":
        linear = "bilinear" if len(size) == 2 else "trilinear"
        transform = Resize(size, mode="nearest-exact" if is_mask else linear, anti_aliasing=not is_mask)
        return _to_numpy(transform(array))
    floor = np.zeros(len(array), array.dtype) if is_mask else array.reshape(len(array), -1).min(axis=1)
    floor = floor.reshape((-1,) + (1,) * (array.ndim - 1))
    return _to_numpy(ResizeWithPadOrCrop(size)(array - floor)) + floor


def _kept_span(length: int, size: int) -> tuple[slice, slice]:
    """Where ``ResizeWithPadOrCrop`` puts an axis of ``length`` voxels when fitting it to ``size``.

    Pushes the index ramp ``1..length`` through the transform (padding reads
    0), so the offsets are MONAI's own, also for odd differences.

    Returns:
        The kept voxels as a slice of the axis before fitting and the slice of
        the fitted axis they land in.
    """
    from monai.transforms import ResizeWithPadOrCrop

    ramp = np.arange(1, length + 1, dtype=np.float64)[None]
    moved = _to_numpy(ResizeWithPadOrCrop((size,))(ramp))[0]
    landed = np.flatnonzero(moved)
    first, last = int(moved[landed[0]]) - 1, int(moved[landed[-1]])
    return slice(first, last), slice(int(landed[0]), int(landed[-1]) + 1)


def restore_spatial(array: np.ndarray, config: PreprocessConfig, before_shape: Sequence[int]) -> np.ndarray:
    """Invert :func:`fit_to_size` for continuous maps such as heat maps.

    ``resize`` interpolates back (bi/trilinear). ``crop_or_pad`` undoes the
    centre crop or pad with the offsets MONAI used going forward: padding is
    dropped and voxels that were cropped away get 0.

    Args:
        array: ``(N, *spatial_size)`` maps in the model grid.
        config: The preprocessing settings that fitted them.
        before_shape: Spatial shape the maps had before :func:`fit_to_size`.

    Returns:
        float32 ``(N, *before_shape)``.
    """
    from monai.transforms import Resize

    before_shape = tuple(int(n) for n in before_shape)
    array = np.asarray(array, dtype=np.float32)
    if tuple(array.shape[1:]) == before_shape:
        return array
    if config.resize == "resize":
        linear = "bilinear" if len(before_shape) == 2 else "trilinear"
        return _to_numpy(Resize(before_shape, mode=linear)(array)).astype(np.float32)
    spans = [_kept_span(length, size) for length, size in zip(before_shape, config.spatial_size)]
    restored = np.zeros((len(array), *before_shape), np.float32)
    restored[(slice(None), *(before for before, _ in spans))] = array[(slice(None), *(fitted for _, fitted in spans))]
    return restored


def fit_input_shape(spatial_shape: Sequence[int], affine: np.ndarray, config: PreprocessConfig) -> tuple[int, ...]:
    """Spatial shape a NIfTI file reaches :func:`fit_to_size` with, for a model of its own dimensionality.

    Replays the reorientation (``config.orientation``) and respacing
    (``config.spacing``) of :func:`segqc.data.cases.prepare_case` lazily: MONAI computes the
    output grid without resampling a voxel.

    Args:
        spatial_shape: Spatial shape of the file, ``spatial_dims`` integers.
        affine: ``(4, 4)`` affine of the file.
        config: The preprocessing settings.

    Returns:
        The spatial shape after reorientation and respacing (each only when set).
    """
    from monai.data import MetaTensor
    from monai.transforms import Orientation, Spacing

    grid = MetaTensor(torch.zeros((1,) * (len(spatial_shape) + 1)).expand(1, *spatial_shape),
                      affine=torch.as_tensor(affine, dtype=torch.float64))
    if config.orientation is not None:
        grid = Orientation(axcodes=config.orientation[: len(spatial_shape)], labels=_AXIS_LABELS, lazy=True)(grid)
    if config.spacing is not None:
        grid = Spacing(pixdim=config.spacing, mode="bilinear", lazy=True)(grid)
    return tuple(int(n) for n in grid.peek_pending_shape())
