"""Which files form a case: pairing images, channels and masks by case id.

An image and a mask belong to the same case when their file stems (the name
without its suffix) are equal, or, in nnU-Net naming, when the image stem is
the mask stem plus a four-digit channel suffix (``case_0000.nii.gz``,
``case_0001.nii.gz`` <-> ``case.nii.gz``). The channels of a case are ordered by
that suffix and must run ``_0000, _0001, ...`` without gaps.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from segqc.data.images import IMAGE_SUFFIXES, JPEG_SUFFIXES, MASK_SUFFIXES, read_mask, suffix_of
from segqc.errors import InputError

logger = logging.getLogger(__name__)

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _stem(path: Path) -> str:
    """File name without its supported suffix."""
    suffix = suffix_of(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.stem


def case_id_of(path: Path) -> tuple[str, int | None]:
    """Case id and nnU-Net channel of a file name.

    Args:
        path: An image or mask file.

    Returns:
        ``("case", 0)`` for ``case_0000.nii.gz`` (a four-digit channel suffix),
        ``("abc", None)`` for ``abc.png``.
    """
    stem = _stem(Path(path))
    match = _CHANNEL.match(stem)
    if match:
        return match["case"], int(match["channel"])
    return stem, None


@dataclass
class CaseFiles:
    """The files of one case.

    Attributes:
        case_id: Identifier shared by the image and mask files.
        images: Image files in channel order (nnU-Net ``_0000, _0001, ...``) or one file.
        mask: Mask file, or ``None`` when no masks were given.
        problem: Why the case's files cannot be used (e.g. a missing nnU-Net
            channel file), when :func:`pair_cases` was asked to report such
            cases instead of failing; ``None`` otherwise.
    """

    case_id: str
    images: list[Path]
    mask: Path | None
    problem: str | None = None


def _list_files(folder: Path, suffixes: Sequence[str], role: str) -> list[Path]:
    """Supported files directly inside ``folder``, sorted by name.

    Raises:
        InputError: The folder is missing, not a folder, or holds no supported file.
    """
    if not folder.exists():
        raise InputError(f"{folder}: {role} folder not found")
    if not folder.is_dir():
        raise InputError(f"{folder}: expected a folder of {role} files, found a file")
    # Dangling links and link loops are listed too, so that reading them gives a clear error.
    entries = sorted(p for p in folder.iterdir() if (p.is_file() or (p.is_symlink() and not p.exists()))
                     and not p.name.startswith("."))
    files = [p for p in entries if suffix_of(p) in suffixes]
    if role == "mask":
        jpeg = [p for p in entries if suffix_of(p) in JPEG_SUFFIXES]
        if jpeg:
            raise InputError(f"{jpeg[0]}: JPEG masks are lossy and change label values; "
                             f"save masks as {', '.join(suffixes)}")
    if not files:
        found = f"{len(entries)} other file(s)" if entries else "nothing"
        raise InputError(f"{folder}: no {role} files; expected files ending in {', '.join(suffixes)}, found {found}")
    ignored = [p for p in entries if suffix_of(p) not in suffixes]
    if ignored:
        logger.warning("%s: ignoring %d file(s) with unsupported suffixes, e.g. %s", folder, len(ignored),
                       ignored[0].name)
    return files


def _unique_stems(files: Sequence[Path]) -> dict[str, Path]:
    """Map file stem -> file, rejecting one stem with two suffixes."""
    by_stem: dict[str, Path] = {}
    for path in files:
        stem = _stem(path)
        if stem in by_stem:
            raise InputError(f"{path}: case id {stem!r} also used by {by_stem[stem].name}; keep one file per case")
        by_stem[stem] = path
    return by_stem


def _use_nnunet_names(stems: Sequence[str]) -> bool:
    """Whether image stems without masks to match read as nnU-Net channels.

    True when every stem ends in ``_dddd``, every case has the same channels
    ``0..C-1`` and there are more cases than channels (``train_0000 ...
    train_0049`` is 50 cases, not one case with 50 channels).
    """
    parsed = [_CHANNEL.match(stem) for stem in stems]
    if not all(parsed):
        return False
    channels: dict[str, set[int]] = {}
    for match in parsed:
        channels.setdefault(match["case"], set()).add(int(match["channel"]))  # type: ignore[index]
    sets = list(channels.values())
    return all(s == set(range(len(sets[0]))) for s in sets) and len(sets) > len(sets[0])


def _assign_images(images: dict[str, Path], masks: dict[str, Path] | None) -> tuple[dict[str, dict[int | None, Path]],
                                                                                     list[str]]:
    """Group image files into cases.

    Returns:
        Files per case id keyed by channel (``None`` for a single-file case),
        and the stems of images that match no mask.
    """
    nnunet = masks is None and _use_nnunet_names(list(images))
    cases: dict[str, dict[int | None, Path]] = {}
    orphans = []
    for stem, path in images.items():
        case_id, channel = case_id_of(path)
        matches_mask = masks is not None and channel is not None and case_id in masks
        if (masks is not None and stem in masks) or (masks is None and not nnunet):
            case_id, channel = stem, None
        elif masks is not None and not matches_mask:
            orphans.append(stem)
            continue
        files = cases.setdefault(case_id, {})
        if channel in files or (files and (channel is None or None in files)):
            other = next(iter(files.values()))
            raise InputError(f"{path}: case id {case_id!r} also used by {other.name}; "
                             f"use either one file or nnU-Net channels {case_id}_0000, {case_id}_0001, ...")
        files[channel] = path
    return cases, orphans


def _channel_list(case_id: str, files: dict[int | None, Path]) -> list[Path]:
    """Image files of a case in channel order (none for a mask without image), rejecting gaps in nnU-Net channels."""
    if not files:
        return []
    if None in files:
        return [files[None]]
    channels = sorted(c for c in files if c is not None)
    missing = sorted(set(range(channels[-1] + 1)) - set(channels))
    if missing:
        folder = files[channels[0]].parent
        raise InputError(f"{folder}: case {case_id!r} lacks channel file {case_id}_{missing[0]:04d} "
                         f"(found channels {', '.join(f'{c:04d}' for c in channels)})")
    return [files[c] for c in channels]


def _few(names: Sequence[str]) -> str:
    """Up to three names and the count, e.g. ``"5 (a, b, c, ...)"``."""
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(names)} ({shown})"


def pair_cases(images_dir: Path, masks_dir: Path | None, require_masks: bool = True,
               require_images: bool = True) -> list[CaseFiles]:
    """Pair image files with mask files by case id.

    Args:
        images_dir: Folder of image files (see :data:`IMAGE_SUFFIXES`).
        masks_dir: Folder of mask files (see :data:`MASK_SUFFIXES`), or ``None``.
        require_masks: Whether an image without a mask is an error; when
            false such cases get ``mask=None``.
        require_images: Whether a mask without an image, or a case with a
            gap in its nnU-Net channels, is an error; when false such cases
            get ``images=[]`` (and the reason in ``problem``).

    Returns:
        The cases sorted by case id.

    Raises:
        InputError: A folder is missing or holds no supported file, an image
            has no mask or a mask no image, a case id is used by two files, or
            nnU-Net channels have a gap.
    """
    images_dir = Path(images_dir)
    images = _unique_stems(_list_files(images_dir, IMAGE_SUFFIXES, "image"))
    masks = None if masks_dir is None else _unique_stems(_list_files(Path(masks_dir), MASK_SUFFIXES, "mask"))
    grouped, orphans = _assign_images(images, masks)
    if masks is not None and orphans:
        if require_masks:
            raise InputError(f"{masks_dir}: no mask for {_few(orphans)} image case(s) of {images_dir}; "
                             f"expected mask files with the same case id")
        grouped.update({stem: {None: images[stem]} for stem in orphans})
    if masks is not None:
        unmatched = sorted(set(masks) - set(grouped))
        if unmatched and require_images:
            raise InputError(f"{images_dir}: no image for {_few(unmatched)} mask case(s) of {masks_dir}; "
                             f"expected image files with the same case id (or nnU-Net <case>_0000)")
        grouped.update({stem: {} for stem in unmatched})
    cases = []
    for case_id, files in sorted(grouped.items()):
        mask = None if masks is None else masks.get(case_id)
        try:
            cases.append(CaseFiles(case_id, _channel_list(case_id, files), mask))
        except InputError as err:
            if require_images:
                raise
            cases.append(CaseFiles(case_id, [], mask, problem=str(err)))
    return cases


def data_spatial_dims(images_dir: Path, masks_dir: Path) -> int:
    """Spatial axes (2 or 3) of a labelled set, from the mask of its first case.

    Raises:
        InputError: The folders cannot be paired (see :func:`pair_cases`) or the mask cannot be read.
    """
    first = pair_cases(Path(images_dir), Path(masks_dir))[0]
    return read_mask(first.mask).array.ndim - 1  # type: ignore[arg-type]
