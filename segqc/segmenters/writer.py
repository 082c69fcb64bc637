"""Write label maps in the format and on the grid of their images.

* PNG / JPEG / TIFF 2D images -> palette PNG (mode ``P``; 16-bit grey PNG when
  a label exceeds 255);
* multi-page TIFF stacks -> multi-page TIFF of 8/16-bit grey pages;
* NIfTI -> ``.nii.gz`` with the image's affine;
* ``.npy`` -> ``.npy``.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segqc.atomic import atomic_file
from segqc.data.images import NIFTI_SUFFIXES, PIL_SUFFIXES, Volume, suffix_of
from segqc.errors import SchemaError

MAX_PNG_LABEL = 2**16 - 1
"""The largest label a (16-bit) PNG mask holds."""
MAX_MASK_LABEL = 2**31 - 1
"""The largest label any mask segqc writes holds (int32 for NIfTI, TIFF and NumPy masks)."""


def voc_palette(count: int = 256) -> list[tuple[int, int, int]]:
    """The Pascal VOC colour map: class ``i`` gets the bits of ``i`` spread over R, G and B, high bits first."""
    colours = []
    for index in range(count):
        red = green = blue = 0
        code = index
        for bit in range(8):
            red |= ((code >> 0) & 1) << (7 - bit)
            green |= ((code >> 1) & 1) << (7 - bit)
            blue |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        colours.append((red, green, blue))
    return colours


def mask_suffix(image: Path, spatial_dims: int) -> str:
    """The suffix of the mask written for ``image``: ``.png``, ``.tif``, ``.nii.gz`` or ``.npy``."""
    suffix = suffix_of(image)
    if suffix in NIFTI_SUFFIXES:
        return ".nii.gz"
    if suffix in PIL_SUFFIXES:
        return ".png" if spatial_dims == 2 else ".tif"
    return ".npy"


def _smallest_dtype(labels: np.ndarray) -> np.dtype:
    """uint8, uint16 or int32: the smallest that holds ``labels`` (non-negative)."""
    peak = int(labels.max(initial=0))
    return np.dtype(np.uint8 if peak < 2**8 else np.uint16 if peak < 2**16 else np.int32)


def write_mask(labels: np.ndarray, like: Volume | Path, out_path_stem: Path,
               palette: Sequence[tuple[int, int, int]] | None = None) -> Path:
    """Write a label map atomically in the format and on the grid of its image.

    Args:
        labels: Integer ``(*spatial)`` (``(H, W)`` or ``(D, H, W)`` in the
            image's array axes), non-negative.
        like: The image (or its file) whose format and grid the mask takes;
            NIfTI masks get its affine.
        out_path_stem: The output path without suffix, e.g. ``out/case_001``.
        palette: RGB colours of classes 0, 1, ... for palette PNGs; classes
            beyond it get VOC colours. Default: :func:`voc_palette`.

    Returns:
        The written file.

    Raises:
        SchemaError: Labels that are negative, larger than the file format
            holds, not 2D/3D, or of another spatial shape than the image (the
            message says what is wrong; the caller names the case).
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3) or not np.issubdtype(labels.dtype, np.integer):
        raise SchemaError(f"expected integer labels (H, W) or (D, H, W), found {labels.dtype} {labels.shape}")
    if labels.size and labels.min() < 0:
        raise SchemaError(f"label maps must be non-negative, found {labels.min()}")
    if isinstance(like, Volume) and labels.shape != like.spatial_shape:
        raise SchemaError(f"label map has shape {labels.shape}, expected {like.spatial_shape} as the image")
    image_path = like.path if isinstance(like, Volume) else Path(like)
    suffix = mask_suffix(image_path, labels.ndim)
    largest = MAX_PNG_LABEL if suffix == ".png" else MAX_MASK_LABEL
    if labels.size and labels.max() > largest:
        raise SchemaError(f"label {labels.max()} is larger than a {suffix} mask holds ({largest}); map the classes "
                          "to smaller labels (--class-map)")
    target = out_path_stem.with_name(out_path_stem.name + suffix)
    labels = labels.astype(_smallest_dtype(labels), copy=False)
    with atomic_file(target) as temporary:
        if suffix == ".nii.gz":
            _write_nifti(labels, like, temporary)
        elif suffix == ".npy":
            with open(temporary, "wb") as handle:
                np.save(handle, labels)
        else:
            _write_pil(labels, palette, temporary, suffix)
    return target


def _write_nifti(labels: np.ndarray, like: Volume | Path, path: Path) -> None:
    """Gzipped NIfTI with the affine of ``like`` (written as bytes: ``path`` has a temporary suffix)."""
    import nibabel as nib

    affine = np.asarray(like.affine if isinstance(like, Volume) else nib.load(like).affine, dtype=np.float64)
    image = nib.Nifti1Image(labels, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    with gzip.open(path, "wb") as handle:
        handle.write(image.to_bytes())


def _write_pil(labels: np.ndarray, palette: Sequence[tuple[int, int, int]] | None, path: Path, suffix: str) -> None:
    """Palette PNG (labels < 256), 16-bit grey PNG, or multi-page TIFF."""
    from PIL import Image

    if suffix == ".tif":
        pages = [Image.fromarray(page) for page in labels]
        pages[0].save(path, format="TIFF", save_all=True, append_images=pages[1:], compression="tiff_deflate")
        return
    if labels.dtype != np.uint8:
        Image.fromarray(labels.astype(np.uint16)).save(path, format="PNG")
        return
    colours = list(palette or [])[:256]
    colours += voc_palette()[len(colours):]
    image = Image.fromarray(labels)  # mode "L"; putpalette makes it "P" and keeps the indices
    image.putpalette([channel for colour in colours for channel in colour])
    image.save(path, format="PNG")
