"""Cases as the model sees them: files read, checked, preprocessed and cut into model-sized arrays.

:func:`prepare_case` runs the steps listed in :mod:`segqc.data.preprocess` on one
case's files; :func:`prepare_dataset` on a labelled set (learning its label
values first when not given); :func:`stack` batches prepared cases.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from segqc.data.images import Volume, read_image, read_mask
from segqc.data.labels import class_indices, learn_labels
from segqc.data.pairing import CaseFiles
from segqc.data.preprocess import PreprocessConfig, fit_to_size, normalise, reorient, respace
from segqc.data.regions import Region, crop_region, cut, structure_box, tile_boxes
from segqc.errors import InputError, SchemaError

logger = logging.getLogger(__name__)

_AFFINE_TOLERANCE = 1e-3
# Masks read while learning labels are kept for the second pass up to this many bytes.
_MASK_CACHE_BYTES = 512 * 2**20


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
        region: For the 3D patch route, where the cropped region lies in the
            respaced volume (:class:`~segqc.data.regions.Region`); ``None`` otherwise.
    """

    case_id: str
    image: np.ndarray
    mask: np.ndarray | None
    source: CaseFiles
    original_shape: tuple[int, ...]
    affine: np.ndarray
    region: Region | None = None


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


def _slices(image: np.ndarray, indices: np.ndarray | None, axis: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Cut ``(C, *spatial3)`` and ``(1, *spatial3)`` into ``(S, C, *spatial2)`` and ``(S, *spatial2)``."""
    image_slices = np.moveaxis(image, axis + 1, 0)
    return image_slices, None if indices is None else np.moveaxis(indices[0], axis, 0)


def _fit_slices(image: np.ndarray, indices: np.ndarray | None,
                config: PreprocessConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Fit ``(S, C, *spatial)`` slices and ``(S, *spatial)`` indices to ``spatial_size`` in one call each."""
    count, channels = image.shape[:2]
    fitted = fit_to_size(image.reshape(count * channels, *image.shape[2:]), config, is_mask=False)
    image_out = fitted.reshape(count, channels, *config.spatial_size).astype(np.float32)
    if indices is None:
        return image_out, None
    return image_out, np.rint(fit_to_size(indices, config, is_mask=True)).astype(np.int64)


def _prepare(files: CaseFiles, image: Volume, mask: Volume | None, config: PreprocessConfig,
             labels: Sequence[int] | None, region: Region | None = None) -> list[PreparedCase]:
    """:func:`prepare_case` on volumes already read."""
    indices = None
    if mask is not None:
        _check_pair(image, mask)
        indices = class_indices(mask, labels)
    file_affine, has_geometry = _geometry(image, mask)
    array, affine = image.array, file_affine
    if has_geometry and config.orientation is not None:
        array, indices, affine = reorient(array, indices, affine, config.orientation)
    drop = _drop_axis(array.shape[1:], image.path, config)
    sliced = drop is not None and array.shape[1 + drop] > 1
    file_spacing = _spacing(affine)
    if config.spacing is not None:
        pixdim = list(config.spacing)
        if drop is not None:
            pixdim.insert(drop, 0.0)  # 0 keeps the spacing along the slice axis
        array, indices, affine = respace(array, indices, affine, pixdim)
    array = normalise(array, config)
    if config.patches:
        return [_region_case(files, image, array, indices, config, (file_spacing, _spacing(affine)), file_affine,
                             region)]
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


def _spacing(affine: np.ndarray) -> tuple[float, ...]:
    """Voxel size along each spatial axis of a ``(4, 4)`` affine."""
    return tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))


def _region_case(files: CaseFiles, image: Volume, array: np.ndarray, indices: np.ndarray | None,
                 config: PreprocessConfig, spacings: tuple[tuple[float, ...], tuple[float, ...]],
                 file_affine: np.ndarray, region: Region | None) -> PreparedCase:
    """The 3D patch route's case: the respaced volume cropped to its structures (:mod:`segqc.data.regions`), or
    to ``region`` when given (ground truth cropped as its prediction was)."""
    grid_shape = tuple(int(n) for n in array.shape[1:])
    file_spacing, spacing = spacings
    classes = None if indices is None else indices[0].astype(np.int64)
    if region is None:
        start, end = structure_box(classes, spacing, config.crop_margin, config.spatial_size, grid_shape)
    else:
        start, end = region.start, tuple(s + n for s, n in zip(region.start, region.shape))
    region = Region(start, tuple(e - s for s, e in zip(start, end)), grid_shape, spacing, file_spacing)
    return PreparedCase(files.case_id, crop_region(array, start, end, leading=1),
                        None if classes is None else crop_region(classes, start, end), files, image.spatial_shape,
                        file_affine, region)


def _file_ndim(config: PreprocessConfig) -> int:
    """Spatial dimensionality expected of files when no mask tells it."""
    return 3 if config.spatial_dims == 3 or config.slice_axis is not None else 2


def prepare_case(files: CaseFiles, config: PreprocessConfig, labels: Sequence[int] | None,
                 image_channels: int | None = None, region: Region | None = None) -> list[PreparedCase]:
    """Read one case and bring it to the model's size.

    Args:
        files: The case's image and mask files.
        config: Preprocessing settings.
        labels: Label values of the ``K`` classes; ``None`` uses the mask's
            values as class indices (they must be >= 0).
        image_channels: The channels the model takes (a colour image among
            grayscale ones is refused here, with its file named); ``None``: any.
        region: Patch route only: crop to this region (of another mask of the
            same image) instead of the mask's own structures.

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
    return _prepare(files, image, mask, config, labels, region)


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


def training_patches(cases: Sequence[PreparedCase], groups: Sequence[str],
                     patch_size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The patch route's training pairs: every region (:func:`prepare_case` with ``patches``) cut into tiles.

    Args:
        cases: Prepared regions with masks.
        groups: Source of each region; its tiles share it.
        patch_size: Patch size.

    Returns:
        Images float32 ``(P, C, *patch_size)``, masks int64 ``(P, *patch_size)`` and the source of each patch.
    """
    images, masks, sources = [], [], []
    for case, group in zip(cases, groups):
        boxes = tile_boxes(case.image.shape[1:], patch_size)
        images.append(cut(case.image, boxes, leading=1))
        masks.append(cut(case.mask, boxes))
        sources += [group] * len(boxes)
    return (torch.from_numpy(np.concatenate(images)).float(), torch.from_numpy(np.concatenate(masks)).long(),
            sources)
