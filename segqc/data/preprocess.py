"""From files to model-sized arrays: label maps, MONAI transforms, dataset assembly.

Steps of :func:`prepare_case`, in order:

1. read the image ``(C, *spatial)`` and mask; check that their spatial shapes
   agree and, when both are NIfTI, their affines (tolerance 1e-3 mm);
2. check the dimensionality against the model (a 3D file for a 2D model needs
   ``slice_axis``, unless one axis has length 1);
3. map label values to class indices ``0..K-1`` (:func:`label_indices`);
4. NIfTI only: reorient to ``orientation`` (``Orientation``);
5. resample to ``spacing`` (``Spacing``; images bilinear, class indices nearest);
6. normalise intensities per channel over the whole volume
   (``ScaleIntensityRangePercentiles``, ``NormalizeIntensity`` or ``ScaleIntensityRange``);
7. for a 2D model on a 3D volume, cut slices along ``slice_axis`` (an axis
   after reorientation: for ``RAS``, 0 is sagittal, 1 coronal, 2 axial);
8. bring each case or slice to ``spatial_size`` (``Resize``, images
   bilinear/trilinear, class indices nearest; or ``ResizeWithPadOrCrop``).
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from segqc.config import check_types
from segqc.data.images import CaseFiles, Volume, read_image, read_mask
from segqc.errors import ConfigError, FieldError, InputError, SchemaError, did_you_mean

logger = logging.getLogger(__name__)

SECTION = "data"  # the YAML section (configs/*.yaml) holding these options
MAX_CLASSES = 64
INTENSITY_MODES = ("percentile", "zscore", "window", "none")
RESIZE_MODES = ("resize", "crop_or_pad")
_AXIS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
_AFFINE_TOLERANCE = 1e-3
# Masks read while learning labels are kept for the second pass up to this many bytes.
_MASK_CACHE_BYTES = 512 * 2**20


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
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size),
            "spacing": spacing is None or (isinstance(spacing, Sequence) and len(spacing) == dims
                                           and all(_is_number(s) and s > 0 for s in spacing)),
            "percentiles": _is_pair(self.percentiles) and 0 <= self.percentiles[0] and self.percentiles[1] <= 100,
            "window": self.window is None or _is_pair(self.window),
            "slice_axis": self.slice_axis is None or (self.slice_axis in (0, 1, 2) and dims == 2
                                                      and not isinstance(self.slice_axis, bool)),
            "orientation": self.orientation is None or _valid_axcodes(self.orientation),
            "foreground_slices_only": isinstance(self.foreground_slices_only, bool),
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
    "spatial_size": "; expected spatial_dims positive integers",
    "spacing": "; expected spatial_dims positive numbers (mm) or null",
    "percentiles": "; expected [low, high] with 0 <= low < high <= 100",
    "window": "; expected [low, high] with low < high",
    "slice_axis": "; expected 0, 1 or 2, and spatial_dims 2",
    "orientation": "; expected three axis codes, one of L/R, P/A, I/S each (e.g. RAS), or null",
    "foreground_slices_only": "; expected true or false",
}


def learn_labels(masks: Iterable[Volume]) -> list[int]:
    """The sorted label values found in the training masks.

    Args:
        masks: Masks, each ``(1, *spatial)`` with integer values.

    Returns:
        Sorted distinct label values over all masks.

    Raises:
        InputError: There is no mask.
        SchemaError: More than :data:`MAX_CLASSES` values (names the mask with the most).
    """
    values: set[int] = set()
    richest: tuple[int, Path | None] = (0, None)
    for mask in masks:
        found = np.unique(mask.array)
        values.update(int(v) for v in found)
        richest = max(richest, (len(found), mask.path), key=lambda item: item[0])
    if richest[1] is None:
        raise InputError("no masks to learn label values from; give training masks or 'segqc train --labels'")
    if len(values) > MAX_CLASSES:
        raise SchemaError(f"{richest[1]}: masks hold {len(values)} distinct label values ({richest[0]} in this file); "
                          f"expected at most {MAX_CLASSES} classes (is this an image rather than a mask?)")
    if len(values) < 2:
        logger.warning("training masks hold a single label value %s; the model learns nothing about shapes",
                       sorted(values))
    return sorted(values)


def label_indices(mask: np.ndarray, labels: Sequence[int], path: Path) -> np.ndarray:
    """Map label values to class indices by their position in ``labels``.

    Args:
        mask: Integer label values, any shape.
        labels: The ``K`` label values; ``labels[k]`` becomes class ``k``.
        path: The mask file, for error messages.

    Returns:
        int64 class indices in ``0..K-1``, same shape as ``mask``.

    Raises:
        SchemaError: The mask holds a value not in ``labels``.
    """
    table = np.asarray(labels, dtype=np.int64)
    if table.ndim != 1 or table.size == 0 or np.unique(table).size != table.size:
        raise ConfigError(f"labels: expected distinct integer label values, found {list(labels)}")
    found = np.unique(mask)
    unexpected = np.setdiff1d(found, table)
    if unexpected.size:
        shown = ", ".join(str(v) for v in unexpected[:10]) + (", ..." if unexpected.size > 10 else "")
        raise SchemaError(f"{path}: unexpected label value(s) {shown}; expected values in "
                          f"{[int(v) for v in table]} (found {[int(v) for v in found[:20]]})")
    order = np.argsort(table)
    return order[np.searchsorted(table[order], mask)].astype(np.int64)


def _identity_indices(mask: np.ndarray, path: Path) -> np.ndarray:
    """Label values used as class indices when no label list is given; must be >= 0."""
    if mask.size and mask.min() < 0:
        raise SchemaError(f"{path}: negative label value {int(mask.min())}; give the label values "
                          f"('segqc train --labels') to map them to classes")
    return mask.astype(np.int64)


@dataclasses.dataclass
class PreparedCase:
    """One model-sized case (or slice of a case).

    Attributes:
        case_id: The case id; slices get ``"<case>#<axis>:<index>"``.
        image: float32 ``(C, *spatial_size)``, normalised.
        mask: int64 class indices ``(*spatial_size)``, or ``None``.
        source: The files it came from.
        original_shape: Spatial shape of the files as read (the whole volume for slices).
        affine: ``(4, 4)`` affine of the files as read (the NIfTI file's when
            only one of image and mask is NIfTI).
    """

    case_id: str
    image: np.ndarray
    mask: np.ndarray | None
    source: CaseFiles
    original_shape: tuple[int, ...]
    affine: np.ndarray


def _check_pair(image: Volume, mask: Volume) -> None:
    """Reject an image and mask whose grids differ."""
    if image.spatial_shape != mask.spatial_shape:
        raise InputError(f"{mask.path}: mask spatial shape {mask.spatial_shape} differs from image "
                         f"{image.path.name} spatial shape {image.spatial_shape}")
    if image.is_nifti and mask.is_nifti:
        difference = float(np.abs(image.affine - mask.affine).max())
        if difference > _AFFINE_TOLERANCE:
            raise InputError(f"{mask.path}: mask affine differs from the affine of image {image.path.name} "
                             f"by up to {difference:.4g} (tolerance {_AFFINE_TOLERANCE:g})")


def _drop_axis(shape: tuple[int, ...], path: Path, config: PreprocessConfig) -> int | None:
    """The spatial axis a 2D model cuts (``slice_axis``) or squeezes (length 1), or ``None``.

    Args:
        shape: Spatial shape of the image (after reorientation).
        path: The image file, for error messages.
        config: The preprocessing settings.

    Raises:
        InputError: The file's dimensionality does not fit the model.
    """
    if len(shape) == config.spatial_dims:
        return None
    if config.spatial_dims == 3:
        raise InputError(f"{path}: 2D image of shape {shape} given to a 3D model; expected a 3D volume "
                         f"(or use spatial_dims 2)")
    if config.slice_axis is not None:
        return config.slice_axis
    singleton = [axis for axis, n in enumerate(shape) if n == 1]
    if len(singleton) == 1:
        return singleton[0]
    raise InputError(f"{path}: 3D image of shape {shape} given to a 2D model trained without a slice axis; "
                     f"to use its 2D slices, train with 'segqc train --slice-axis 0, 1 or 2' (or data.spatial_dims 3)")


def _geometry(image: Volume, mask: Volume | None) -> tuple[np.ndarray, bool]:
    """The affine that carries orientation (a NIfTI file's) and whether there is one."""
    for volume in (image, mask):
        if volume is not None and volume.is_nifti:
            return volume.affine, True
    return image.affine, False


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


def _reorient(image: np.ndarray, indices: np.ndarray | None, affine: np.ndarray,
              axcodes: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Reorient image and indices to ``axcodes`` (its first letters in 2D); see :func:`_transform_pair`."""
    from monai.transforms import Orientation

    orientation = Orientation(axcodes=axcodes[: image.ndim - 1], labels=_AXIS_LABELS)
    return _transform_pair(image, indices, affine, orientation, orientation)


def _respace(image: np.ndarray, indices: np.ndarray | None, affine: np.ndarray,
             pixdim: Sequence[float]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Resample image (bilinear) and indices (nearest) to ``pixdim`` mm (0 keeps an axis)."""
    from monai.transforms import Spacing

    return _transform_pair(image, indices, affine, Spacing(pixdim=pixdim, mode="bilinear"),
                           Spacing(pixdim=pixdim, mode="nearest"))


def _normalise(image: np.ndarray, config: PreprocessConfig) -> np.ndarray:
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


def _fit(array: np.ndarray, config: PreprocessConfig, is_mask: bool) -> np.ndarray:
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
    """Invert :func:`_fit` for continuous maps such as heat maps.

    ``resize`` interpolates back (bi/trilinear). ``crop_or_pad`` undoes the
    centre crop or pad with the offsets MONAI used going forward: padding is
    dropped and voxels that were cropped away get 0.

    Args:
        array: ``(N, *spatial_size)`` maps in the model grid.
        config: The preprocessing settings that fitted them.
        before_shape: Spatial shape the maps had before :func:`_fit`.

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
    """Spatial shape a NIfTI file reaches :func:`_fit` with, for a model of its own dimensionality.

    Replays the reorientation (``config.orientation``) and respacing
    (``config.spacing``) of :func:`prepare_case` lazily: MONAI computes the
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


def _slices(image: np.ndarray, indices: np.ndarray | None, axis: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Cut ``(C, *spatial3)`` and ``(1, *spatial3)`` into ``(S, C, *spatial2)`` and ``(S, *spatial2)``."""
    image_slices = np.moveaxis(image, axis + 1, 0)
    return image_slices, None if indices is None else np.moveaxis(indices[0], axis, 0)


def _fit_slices(image: np.ndarray, indices: np.ndarray | None,
                config: PreprocessConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Fit ``(S, C, *spatial)`` slices and ``(S, *spatial)`` indices to ``spatial_size`` in one call each."""
    count, channels = image.shape[:2]
    fitted = _fit(image.reshape(count * channels, *image.shape[2:]), config, is_mask=False)
    image_out = fitted.reshape(count, channels, *config.spatial_size).astype(np.float32)
    if indices is None:
        return image_out, None
    return image_out, np.rint(_fit(indices, config, is_mask=True)).astype(np.int64)


def _prepare(files: CaseFiles, image: Volume, mask: Volume | None, config: PreprocessConfig,
             labels: Sequence[int] | None) -> list[PreparedCase]:
    """:func:`prepare_case` on volumes already read."""
    indices = None
    if mask is not None:
        _check_pair(image, mask)
        indices = _class_indices(mask, labels)
    file_affine, has_geometry = _geometry(image, mask)
    array, affine = image.array, file_affine
    if has_geometry and config.orientation is not None:
        array, indices, affine = _reorient(array, indices, affine, config.orientation)
    drop = _drop_axis(array.shape[1:], image.path, config)
    sliced = drop is not None and array.shape[1 + drop] > 1
    if config.spacing is not None:
        pixdim = list(config.spacing)
        if drop is not None:
            pixdim.insert(drop, 0.0)  # 0 keeps the spacing along the slice axis
        array, indices, affine = _respace(array, indices, affine, pixdim)
    array = _normalise(array, config)
    stacked, stacked_indices = (array[None], indices) if drop is None else _slices(array, indices, drop)
    keep = np.arange(len(stacked))
    if sliced and config.foreground_slices_only and stacked_indices is not None:
        keep = np.flatnonzero(stacked_indices.reshape(len(stacked_indices), -1).max(axis=1) > 0)
        if keep.size == 0:
            logger.warning("case %s: no slice has foreground; skipped", files.case_id)
            return []
        stacked, stacked_indices = stacked[keep], stacked_indices[keep]
    images_out, masks_out = _fit_slices(stacked, stacked_indices, config)
    return [
        PreparedCase(
            case_id=f"{files.case_id}#{drop}:{index}" if sliced else files.case_id,
            image=images_out[i],
            mask=None if masks_out is None else masks_out[i],
            source=files,
            original_shape=image.spatial_shape,
            affine=file_affine,
        )
        for i, index in enumerate(keep)
    ]


def _class_indices(mask: Volume, labels: Sequence[int] | None) -> np.ndarray:
    """Class indices of a mask as float32 ``(1, *spatial)``, ready for MONAI transforms."""
    if labels is None:
        return _identity_indices(mask.array, mask.path).astype(np.float32)
    return label_indices(mask.array, labels, mask.path).astype(np.float32)


def _file_ndim(config: PreprocessConfig) -> int:
    """Spatial dimensionality expected of files when no mask tells it."""
    return 3 if config.spatial_dims == 3 or config.slice_axis is not None else 2


def prepare_case(files: CaseFiles, config: PreprocessConfig, labels: Sequence[int] | None,
                 image_channels: int | None = None) -> list[PreparedCase]:
    """Read one case and bring it to the model's size.

    Args:
        files: The case's image and mask files.
        config: Preprocessing settings.
        labels: Label values of the ``K`` classes; ``None`` uses the mask's
            values as class indices (they must be >= 0).
        image_channels: The channels the model takes (a colour image among
            grayscale ones is refused here, with its file named); ``None``: any.

    Returns:
        One prepared case, or one per slice along ``config.slice_axis``
        (only those with foreground when ``config.foreground_slices_only``).

    Raises:
        InputError: Unreadable files, image/mask shape or affine mismatch,
            or a file whose dimensionality does not fit the model.
        SchemaError: Bad or unexpected label values, or another number of
            image channels than ``image_channels``.
    """
    mask = None if files.mask is None else read_mask(files.mask)
    spatial_ndim = _file_ndim(config) if mask is None else mask.array.ndim - 1
    image = read_image(files.images, spatial_ndim)
    if image_channels is not None and image.array.shape[0] != image_channels:
        colour = " (a colour image?)" if image.array.shape[0] in (3, 4) else ""
        raise SchemaError(f"{image.path}: {image.array.shape[0]} image channel(s){colour}; the model was trained "
                          f"on images with {image_channels}")
    return _prepare(files, image, mask, config, labels)


def _caching(cases: Sequence[CaseFiles], cache: dict[str, Volume]) -> Iterator[Volume]:
    """Read the masks of ``cases``, keeping them in ``cache`` up to ``_MASK_CACHE_BYTES``."""
    used = 0
    for files in cases:
        if files.mask is None:
            continue
        mask = read_mask(files.mask)
        if used + mask.array.nbytes <= _MASK_CACHE_BYTES:
            cache[files.case_id] = mask
            used += mask.array.nbytes
        yield mask


def prepare_dataset(
    cases: Sequence[CaseFiles],
    config: PreprocessConfig,
    labels: Sequence[int] | None = None,
    on_case: Callable[[int, int], None] | None = None,
) -> tuple[list[PreparedCase], list[int]]:
    """Prepare every case, learning the label values first when not given.

    Args:
        cases: Cases from :func:`segqc.data.images.pair_cases`.
        config: Preprocessing settings.
        labels: Label values of the classes, or ``None`` to learn them from
            the masks (:func:`learn_labels`).
        on_case: Called as ``on_case(done, total)`` after each case.

    Returns:
        The prepared cases (slices count separately) and the label values.
    """
    cache: dict[str, Volume] = {}
    labels = learn_labels(_caching(cases, cache)) if labels is None else [int(v) for v in labels]
    prepared: list[PreparedCase] = []
    for done, files in enumerate(cases, start=1):
        mask = cache.pop(files.case_id, None)
        if mask is None and files.mask is not None:
            mask = read_mask(files.mask)
        spatial_ndim = _file_ndim(config) if mask is None else mask.array.ndim - 1
        prepared.extend(_prepare(files, read_image(files.images, spatial_ndim), mask, config, labels))
        if on_case is not None:
            on_case(done, len(cases))
    return prepared, labels


def stack(cases: Sequence[PreparedCase]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Batch prepared cases.

    Args:
        cases: Prepared cases of one ``spatial_size``.

    Returns:
        Images float32 ``(N, C, *spatial_size)`` and masks int64
        ``(N, *spatial_size)`` (``None`` when no case has a mask).

    Raises:
        SchemaError: Channel counts differ, or only some cases have a mask.
    """
    if not cases:
        raise ValueError("stack needs at least one case")
    first = cases[0]
    for case in cases:
        if case.image.shape[0] != first.image.shape[0]:
            raise SchemaError(f"{case.source.images[0]}: case {case.case_id} has {case.image.shape[0]} image "
                              f"channel(s), expected {first.image.shape[0]} as in case {first.case_id}")
        if (case.mask is None) != (first.mask is None):
            without = case if case.mask is None else first
            raise SchemaError(f"{without.source.images[0]}: case {without.case_id} has no mask while other cases do")
    images = torch.from_numpy(np.stack([case.image for case in cases]).astype(np.float32, copy=False))
    if first.mask is None:
        return images, None
    return images, torch.from_numpy(np.stack([case.mask for case in cases]).astype(np.int64, copy=False))
