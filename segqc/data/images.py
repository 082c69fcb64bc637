"""Image and mask files: reading NIfTI / PNG / TIFF / JPEG / NumPy into arrays with their affine.

Which files form a case is :mod:`segqc.data.pairing`'s concern.

Arrays: images are read as float32 ``(C, *spatial)``; masks as ``(1, *spatial)``
with their integer dtype kept. The affine maps voxel indices to millimetres; it
is the file's affine for NIfTI and the identity (1 mm pixels, array axes = world
axes) for the other formats.

Size limit: a file whose header announces more values than
:func:`max_voxels` allows is refused before its pixels are decoded, so one
huge (or hostile) file cannot take the process down. The limit is
``--max-voxels`` or ``SEGQC_MAX_VOXELS`` when set, else :data:`DEFAULT_MAX_VOXELS`;
a ``SEGQC_MAX_VOXELS`` that is not a positive whole number is refused (the
commands check it before any work, see :func:`env_max_voxels`).
"""

from __future__ import annotations

import logging
import math
import os
import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segqc.errors import ConfigError, InputError, SchemaError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".npy")
MASK_SUFFIXES = (".nii.gz", ".nii", ".png", ".tif", ".tiff", ".npy")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
PIL_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
JPEG_SUFFIXES = (".jpg", ".jpeg")
_PIL_DIRECT_MODES = ("L", "I", "I;16", "I;16B", "I;16L", "F", "RGB", "RGBA")
_AFFINE_TOLERANCE = 1e-3
# Errors the readers raise on corrupt or truncated files (PIL raises SyntaxError for broken PNG chunks).
_READ_ERRORS = (OSError, EOFError, ValueError, SyntaxError, struct.error, zlib.error, IndexError, KeyError,
                MemoryError, OverflowError)
# Values (voxels x channels) a file may hold, by its number of spatial axes: 2D 32 Mi (e.g. 5,792^2),
# 3D 256 Mi (e.g. 512 x 512 x 1,024). Decoding and preprocessing take several times that in memory.
DEFAULT_MAX_VOXELS = {2: 1 << 25, 3: 1 << 28}
MAX_VOXELS_ENV = "SEGQC_MAX_VOXELS"
MIN_LABEL, MAX_LABEL = -(2**63), 2**63 - 1
"""The label values a mask can hold: masks are read as 64-bit integers (:func:`read_mask`)."""
_max_voxels_override: int | None = None


def set_max_voxels(limit: int | None) -> None:
    """Set the size limit of every image / mask file read from now on (``None``: back to the default)."""
    global _max_voxels_override
    _max_voxels_override = limit


def env_max_voxels() -> int | None:
    """The limit ``SEGQC_MAX_VOXELS`` sets, or ``None`` when it is unset or empty.

    Raises:
        ConfigError: It is not a positive whole number (``abc``, ``nan``, ``1e6``, ``0``, ``-1``).
    """
    text = os.environ.get(MAX_VOXELS_ENV, "").strip()
    if not text:
        return None
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ConfigError(f"{MAX_VOXELS_ENV}={text!r}: expected a positive whole number of values (voxels x "
                          f"channels) a file may hold, e.g. {DEFAULT_MAX_VOXELS[3]}; or unset it for the default")
    return limit


def max_voxels(spatial_ndim: int) -> int:
    """The largest number of values (voxels x channels) a file with ``spatial_ndim`` axes may hold.

    Raises:
        ConfigError: ``SEGQC_MAX_VOXELS`` is set to something else than a positive whole number.
    """
    if _max_voxels_override is not None:
        return _max_voxels_override
    limit = env_max_voxels()
    return limit if limit is not None else DEFAULT_MAX_VOXELS[3 if spatial_ndim >= 3 else 2]


def _check_size(path: Path, shape: Sequence[int], spatial_ndim: int) -> None:
    """Refuse a file whose header announces more values than :func:`max_voxels` allows."""
    count, limit = math.prod(int(v) for v in shape), max_voxels(spatial_ndim)
    if count > limit:
        raise InputError(f"{path}: {' x '.join(str(int(v)) for v in shape)} = {count:,} values exceeds the limit of "
                         f"{limit:,} (raise it with --max-voxels or {MAX_VOXELS_ENV} if this is intended)")


def _check_link(path: Path) -> None:
    """A clear error for a dangling symbolic link or a link loop (``Path.exists`` is false for both)."""
    if not path.exists():
        if path.is_symlink():
            raise InputError(f"{path}: broken symbolic link or link loop; expected a readable file")
        raise InputError(f"{path}: file not found")


def suffix_of(path: Path) -> str:
    """The supported suffix of ``path`` in lower case (``".nii.gz"`` counts as one), or ``""``."""
    name = path.name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), "")


@dataclass
class Volume:
    """An array read from one or more files, with its voxel-to-world affine.

    Attributes:
        array: Images: float32 ``(C, *spatial)``; masks: ``(1, *spatial)`` with
            the integer dtype of the file where it had one.
        affine: ``(4, 4)`` float64 voxel-to-millimetre matrix; the identity
            for PNG, TIFF, JPEG and NumPy files.
        path: The (first) file read.
    """

    array: np.ndarray
    affine: np.ndarray
    path: Path

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape without the channel axis, ``(H, W)`` or ``(D, H, W)``."""
        return tuple(self.array.shape[1:])

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in millimetres along each spatial axis."""
        ndim = min(len(self.spatial_shape), 3)
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :ndim], axis=0))

    @property
    def is_nifti(self) -> bool:
        """Whether the volume was read from a NIfTI file (and has a meaningful orientation)."""
        return suffix_of(self.path) in NIFTI_SUFFIXES


def _format_name(path: Path) -> str:
    """Human name of the file format, e.g. ``"NIfTI"``."""
    suffix = suffix_of(path)
    names = {".nii.gz": "NIfTI", ".nii": "NIfTI", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".jpg": "JPEG",
             ".jpeg": "JPEG", ".npy": "NumPy .npy"}
    return names.get(suffix, "an image")


def _cannot_read(path: Path, err: BaseException) -> InputError:
    """The error for a corrupt, truncated, unreadable or too large file."""
    if isinstance(err, MemoryError):
        return InputError(f"{path}: not enough memory to decode it (its header announces more data than fits); "
                          f"lower --max-voxels or {MAX_VOXELS_ENV} to refuse such files before decoding")
    reason = " ".join(str(err).split()) or type(err).__name__
    return InputError(f"{path}: cannot read as {_format_name(path)} ({reason})")


def _read_nifti(path: Path, as_float: bool) -> tuple[np.ndarray, np.ndarray]:
    """NIfTI data (file axes, channels last if any) and affine."""
    import nibabel as nib

    _check_link(path)
    try:
        image = nib.load(path)
        _check_size(path, image.shape, len(image.shape))
        data = image.get_fdata(dtype=np.float32) if as_float else np.asanyarray(image.dataobj)
    except (*_READ_ERRORS, nib.filebasedimages.ImageFileError) as err:
        raise _cannot_read(path, err) from None
    return np.asarray(data), np.asarray(image.affine, dtype=np.float64)


def _read_pil(path: Path, mask: bool) -> tuple[np.ndarray, bool]:
    """PNG / TIFF / JPEG pixels and whether they have colour bands.

    Returns:
        ``(*spatial)`` or, with bands, ``(*spatial, bands)``; multi-page TIFFs
        become a ``(D, H, W[, bands])`` stack.
    """
    from PIL import Image

    _check_link(path)
    try:
        with warnings.catch_warnings():  # segqc's own size limit applies, checked before decoding
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            frames_count = getattr(image, "n_frames", 1)
            _check_size(path, (frames_count, *image.size, len(image.getbands())), 3 if frames_count > 1 else 2)
            frames = []
            for index in range(frames_count):
                image.seek(index)
                image.load()
                frames.append(_pil_pixels(image, mask))
    except (*_READ_ERRORS, Image.DecompressionBombError) as err:
        raise _cannot_read(path, err) from None
    bands = frames[0].ndim == 3
    return (frames[0] if len(frames) == 1 else np.stack(frames)), bands


def _pil_pixels(image: PILImage, mask: bool) -> np.ndarray:
    """Pixels of one PIL frame; palette and 1-bit masks keep their indices (0 / 1), palette images become RGB."""
    if mask and image.mode == "1":
        return np.asarray(image).astype(np.uint8)
    if image.mode in ("1", "LA"):
        image = image.convert("L")
    elif image.mode not in _PIL_DIRECT_MODES and not (mask and image.mode == "P"):
        image = image.convert("RGB")
    return np.asarray(image)


def _read_npy(path: Path) -> np.ndarray:
    """A NumPy array, without unpickling; its size is checked from the header before the data are read."""
    _check_link(path)
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        if not isinstance(mapped, np.ndarray):
            raise InputError(f"{path}: expected a .npy array, found an .npz archive")
        _check_size(path, mapped.shape, mapped.ndim)
        array = np.array(mapped)
    except _READ_ERRORS as err:
        raise _cannot_read(path, err) from None
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or np.iscomplexobj(array):
        raise SchemaError(f"{path}: expected a real numeric array, found dtype {array.dtype}")
    return array


def _image_channels(path: Path, spatial_ndim: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One image file as ``(C, *spatial)`` and its affine."""
    suffix = suffix_of(path)
    if suffix in NIFTI_SUFFIXES:
        data, affine = _read_nifti(path, as_float=True)
        if data.ndim == 5 and data.shape[3] == 1:  # vector images are stored (X, Y, Z, 1, C)
            data = data[:, :, :, 0]
        channels = np.moveaxis(data, -1, 0) if data.ndim == 4 else data[None]
    elif suffix == ".npy":
        data, affine = _read_npy(path), np.eye(4)
        channel_first = data.ndim == spatial_ndim + 1 if spatial_ndim else data.ndim == 4 or (
            data.ndim == 3 and data.shape[0] <= 4)
        channels = data if channel_first else data[None]
    else:
        data, bands = _read_pil(path, mask=False)
        affine = np.eye(4)
        channels = np.moveaxis(data, -1, 0) if bands else data[None]
    if channels.ndim not in (3, 4) or min(channels.shape[1:]) < 1:
        raise SchemaError(f"{path}: expected a 2D or 3D image (optionally with channels), "
                          f"found array shape {tuple(data.shape)}")
    channels = channels.astype(np.float32, copy=False)
    if not np.isfinite(channels).all():
        raise SchemaError(f"{path}: image contains NaN or infinite values; expected finite intensities")
    return channels, affine


def read_image(paths: Sequence[Path], spatial_ndim: int | None = None) -> Volume:
    """Read an image from one file or from one file per channel.

    NIfTI 4D arrays ``(X, Y, Z, C)`` have their last axis moved first; RGB(A)
    PNG / TIFF / JPEG give 3 (4) channels, grayscale ones 1. A ``.npy`` array
    is channel-first when it has ``spatial_ndim + 1`` axes; without
    ``spatial_ndim``, 4D arrays and 3D arrays whose first axis has at most 4
    entries are taken as channel-first.

    Args:
        paths: The file, or the channel files in order.
        spatial_ndim: Number of spatial axes when known (from the mask), used
            to tell channels from depth in ``.npy`` files.

    Returns:
        The image, float32 ``(C, *spatial)``; its affine is the first file's.

    Raises:
        InputError: A file is corrupt, or channel files differ in shape or affine.
        SchemaError: The array is not 2D/3D or holds NaN / infinite values.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("read_image needs at least one file")
    arrays, affine = [], None
    for path in paths:
        channels, file_affine = _image_channels(path, spatial_ndim)
        if arrays and channels.shape[1:] != arrays[0].shape[1:]:
            raise InputError(f"{path}: channel file has spatial shape {channels.shape[1:]}, "
                             f"expected {arrays[0].shape[1:]} as in {paths[0].name}")
        if affine is not None and not np.allclose(file_affine, affine, atol=_AFFINE_TOLERANCE):
            raise InputError(f"{path}: channel file has a different affine than {paths[0].name}")
        arrays.append(channels)
        affine = file_affine
    array = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    return Volume(array, affine, paths[0])  # type: ignore[arg-type]


def _integer_labels(array: np.ndarray, path: Path) -> np.ndarray:
    """The mask with an integer dtype, rejecting non-integer values."""
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array
    bad = ~np.isfinite(array) | (array != np.round(array))
    if bad.any():
        example = array[bad].flat[0]
        raise SchemaError(f"{path}: mask has non-integer value {example!r}; expected integer label values")
    return array.astype(np.int64)


def read_mask(path: Path) -> Volume:
    """Read a label map.

    Palette (mode ``P``) PNGs give their palette indices, not colours; RGB
    files whose three channels are equal are read as grayscale.

    Args:
        path: A mask file (see :data:`MASK_SUFFIXES`).

    Returns:
        The mask, shape ``(1, *spatial)``, integer dtype.

    Raises:
        InputError: The file is a JPEG or corrupt.
        SchemaError: Colour (RGB) labels, non-integer values, or not 2D/3D.
    """
    path = Path(path)
    suffix = suffix_of(path)
    if suffix in JPEG_SUFFIXES:
        raise InputError(f"{path}: JPEG masks are lossy and change label values; "
                         f"save masks as {', '.join(MASK_SUFFIXES)}")
    if suffix in NIFTI_SUFFIXES:
        data, affine = _read_nifti(path, as_float=False)
    elif suffix == ".npy":
        data, affine = _read_npy(path), np.eye(4)
    else:
        data, bands = _read_pil(path, mask=True)
        affine = np.eye(4)
        if bands:
            colour = data[..., :3]
            if not (colour == colour[..., :1]).all():
                raise SchemaError(f"{path}: mask is a colour (RGB) image; expected one label index per pixel "
                                  f"(save the mask as grayscale or palette PNG with values 0..K-1)")
            data = colour[..., 0]
    if data.ndim not in (2, 3) or min(data.shape) < 1:
        raise SchemaError(f"{path}: expected a 2D or 3D label map, found array shape {tuple(data.shape)}")
    return Volume(_integer_labels(np.asarray(data), path)[None], affine, path)
