"""Heat-map files: PNG overlays for 2D cases, NIfTI volumes in the original grid for 3D.

The heat map of a case is the per-pixel squared score norm (divided by tau^2,
averaged over noise levels) from :meth:`segqc.scoremodels.image.ImageScoreModel.embed`:
where it is bright, the mask disagrees with what the model learned.
"""

from __future__ import annotations

import gzip
import io

import matplotlib
import nibabel as nib
import numpy as np
import torch
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from segqc.data.preprocess import PreprocessConfig, fit_input_shape, restore_spatial

MASK_COLOURS = matplotlib.colormaps["tab10"]


def hottest_slice(heat: np.ndarray) -> int:
    """Index along the last axis with the most heat (for showing a 3D case in 2D)."""
    return int(np.argmax(heat.reshape(-1, heat.shape[-1]).sum(0)))


def _to_2d(image: np.ndarray, masks: list[np.ndarray | None], heat: np.ndarray):
    """First image channel ``(*spatial)``, masks and heat as 2D arrays (3D: the hottest slice)."""
    channel = image[0]
    if channel.ndim == 3:
        index = hottest_slice(heat)
        return channel[..., index], [m[..., index] if m is not None else None for m in masks], heat[..., index]
    return channel, masks, heat


_PANEL_PIXELS = 288  # the longer side of an overlay PNG and of each gallery panel
_HEAT_ALPHA = 0.45
_GAP = 6  # pixels between gallery panels
_OUTLINE = 2  # outline width in display pixels


def _unit(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to ``[0, 1]`` (a constant array becomes 0)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values, dtype=np.float64)


def _display(array: np.ndarray, scale: int) -> np.ndarray:
    """Model-grid ``(X, Y, ...)`` to display orientation (first axis right, second up), each pixel ``scale`` wide."""
    shown = np.flipud(np.swapaxes(array, 0, 1))
    return np.repeat(np.repeat(shown, scale, 0), scale, 1)


def _panel(channel: np.ndarray, outlines: list[tuple[np.ndarray | None, str]], num_classes: int,
           heat: np.ndarray | None = None) -> np.ndarray:
    """One picture: the image in grey, optionally the heat map (inferno) blended in, and mask outlines.

    Outlines are drawn inside each class region at display resolution; the mask
    is taken as surrounded by background, so a mask filling the whole frame
    still shows its outline. Dashed outlines mark segqc's own reconstruction.

    Args:
        channel: ``(X, Y)`` image.
        outlines: ``(mask (X, Y) class indices or None, "solid" | "dashed")`` pairs.
        num_classes: ``K``.
        heat: ``(X, Y)`` heat map, or ``None``.

    Returns:
        ``(H, W, 3)`` uint8 in display orientation, longer side about :data:`_PANEL_PIXELS`.
    """
    from scipy import ndimage

    rgb = np.repeat(_unit(np.asarray(channel, np.float64))[..., None], 3, axis=-1)
    if heat is not None:
        peak = max(float(heat.max()), 1e-12)
        hot = matplotlib.colormaps["inferno"](np.clip(heat / peak, 0, 1))[..., :3]
        rgb = (1 - _HEAT_ALPHA) * rgb + _HEAT_ALPHA * hot
    scale = max(1, _PANEL_PIXELS // max(channel.shape))
    rgb = _display(np.rint(rgb * 255).astype(np.uint8), scale)
    rows, cols = np.indices(rgb.shape[:2])
    dashes = ((rows + cols) // 6) % 2 == 0
    for mask, style in outlines:
        if mask is None:
            continue
        shown = _display(mask, scale)
        for label in range(1, num_classes):
            region = shown == label
            if region.any():
                edge = region & ~ndimage.binary_erosion(region, iterations=_OUTLINE, border_value=0)
                rgb[edge & dashes if style == "dashed" else edge] = np.rint(
                    np.asarray(MASK_COLOURS(label % 10)[:3]) * 255).astype(np.uint8)
    return rgb


def _png(picture) -> bytes:
    """A Pillow image as PNG bytes."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _picture(pixels: np.ndarray, empty: bool):
    """A Pillow image of ``pixels``, labelled "empty mask" when the prediction has no foreground."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(pixels)
    if empty:
        ImageDraw.Draw(picture).text((4, picture.height - 14), "empty mask", fill=(255, 255, 255))
    return picture


def overlay_png(image: np.ndarray, prediction: np.ndarray, heat: np.ndarray, num_classes: int) -> bytes:
    """A PNG of image (grey) + heat map (inferno) + prediction outlines.

    Composed with NumPy and Pillow (no matplotlib figure: one is written per
    scored case, and figures were most of the scoring time). 3D cases show
    their hottest slice.

    Args:
        image: ``(C, *spatial)`` model-grid image.
        prediction: ``(*spatial)`` class indices.
        heat: ``(*spatial)`` heat map.
        num_classes: ``K``.

    Returns:
        The PNG file's bytes.
    """
    channel, (mask,), heat2d = _to_2d(image, [prediction], heat)
    return _png(_picture(_panel(channel, [(mask, "solid")], num_classes, heat2d), not (mask > 0).any()))


def gallery_png(title: str, image: np.ndarray, prediction: np.ndarray, truth: np.ndarray | None,
                heat: np.ndarray, num_classes: int, reconstruction: np.ndarray | None = None) -> bytes:
    """A PNG of the panels image | prediction (and segqc's reconstruction) | ground truth | heat overlay.

    Masks are drawn as outlines over the image (solid: the prediction and the
    ground truth; dashed: segqc's own reconstruction), so a reviewer sees an
    empty or a full mask at a glance. Composed with NumPy and Pillow, like
    :func:`overlay_png`.

    Args:
        title: Title line (rank, case, score, predicted Dice, verdict).
        image: ``(C, *spatial)`` model-grid image.
        prediction: ``(*spatial)`` class indices.
        truth: ``(*spatial)`` ground truth, or ``None``.
        heat: ``(*spatial)`` heat map.
        num_classes: ``K``.
        reconstruction: ``(*spatial)`` segqc's reconstruction, or ``None``.

    Returns:
        The PNG file's bytes.
    """
    from PIL import Image, ImageDraw, ImageFont

    channel, (pred2d, truth2d, rebuilt2d), heat2d = _to_2d(image, [prediction, truth, reconstruction], heat)
    panels = [("image", _panel(channel, [], num_classes)),
              ("prediction" + (" / segqc (dashed)" if rebuilt2d is not None else ""),
               _panel(channel, [(pred2d, "solid"), (rebuilt2d, "dashed")], num_classes))]
    if truth2d is not None:
        panels.append(("ground truth", _panel(channel, [(truth2d, "solid")], num_classes)))
    panels.append(("anomaly heat map", _panel(channel, [], num_classes, heat2d)))
    font, title_font = ImageFont.load_default(size=13), ImageFont.load_default(size=14)
    height, width = panels[0][1].shape[:2]
    top = 44
    canvas = Image.new("RGB", (len(panels) * (width + _GAP) + _GAP, height + top + _GAP), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((_GAP, 4), title, fill=(20, 20, 20), font=title_font)
    for index, (name, pixels) in enumerate(panels):
        left = _GAP + index * (width + _GAP)
        draw.text((left, top - 18), name, fill=(60, 60, 60), font=font)
        canvas.paste(_picture(pixels, index == 1 and not (pred2d > 0).any()), (left, top))
    return _png(canvas)


def heat_volume_nifti(heat: np.ndarray, original_shape: tuple[int, ...], affine: np.ndarray,
                      config: PreprocessConfig) -> bytes:
    """A 3D heat map in the original image grid, as ``.nii.gz`` bytes.

    The heat map lives in the model grid (reoriented to ``config.orientation``,
    respaced to ``config.spacing``, then resized or centre-cropped/padded). It
    goes back to the grid it had before fitting (:func:`restore_spatial`:
    trilinear for ``resize``, exact un-crop/un-pad for ``crop_or_pad``), then
    (when respaced) trilinear to the reoriented original shape, and is
    reoriented back to the file's orientation and saved with the file's affine.

    Args:
        heat: ``(*spatial_size)`` model-grid heat map.
        original_shape: Spatial shape ``(X, Y, Z)`` of the image file.
        affine: ``(4, 4)`` affine of the image file.
        config: The preprocessing settings that made the model grid.

    Returns:
        The gzip-compressed NIfTI-1 file's bytes.
    """
    to_file = None
    oriented_shape = tuple(original_shape)
    if config.orientation:
        from_file = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(config.orientation)))
        oriented_shape = apply_orientation(np.zeros(original_shape, dtype=np.uint8), from_file).shape
        to_file = ornt_transform(axcodes2ornt(tuple(config.orientation)), io_orientation(affine))
    restored = restore_spatial(heat[None], config, fit_input_shape(original_shape, affine, config))[0]
    if restored.shape != oriented_shape:  # respaced: back to the file's voxel size
        restored = torch.nn.functional.interpolate(torch.from_numpy(restored)[None, None], size=oriented_shape,
                                                   mode="trilinear", align_corners=False)[0, 0].numpy()
    if to_file is not None:
        restored = apply_orientation(restored, to_file)
    volume = nib.Nifti1Image(np.ascontiguousarray(restored, dtype=np.float32), affine)
    return gzip.compress(volume.to_bytes(), compresslevel=6)
