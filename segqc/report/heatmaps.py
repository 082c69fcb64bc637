"""Heat-map files: PNG overlays for 2D cases, NIfTI volumes in the original grid for 3D.

The heat map of a case is the per-pixel squared score norm (divided by tau^2,
averaged over noise levels) from :meth:`segqc.scoremodels.image.ImageScoreModel.embed`:
where it is bright, the mask disagrees with what the model learned.
"""

from __future__ import annotations

import gzip
import io
import json

import matplotlib
import nibabel as nib
import numpy as np
import torch
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from segqc.data.preprocess import PreprocessConfig, fit_input_shape, restore_spatial

PREDICTION_COLOUR = "#56B4E9"
"""Outline colour of the predicted mask (Okabe-Ito sky blue: apart from the heat map's colours)."""
RECONSTRUCTION_COLOUR = "#F25CBD"
"""Outline colour of segqc's own reconstruction (drawn dashed)."""
TRUTH_COLOUR = "#F0E442"
"""Outline colour of the ground truth (Okabe-Ito yellow)."""
HEAT_COLOURMAP = "inferno"
HEAT_PERCENTILE = 99.0
"""The top of a heat map's display range: this percentile of its values, so a few hot pixels do not leave the
rest black."""
PANELS_KEY, HEAT_RANGE_KEY, SLICE_KEY = "segqc:panels", "segqc:heat_range", "segqc:slice"
"""PNG text chunks that tell the report what a picture shows (it draws no text into the pixels)."""


def hottest_slice(heat: np.ndarray) -> int:
    """Index along the last axis with the most heat (for showing a 3D case in 2D)."""
    return int(np.argmax(heat.reshape(-1, heat.shape[-1]).sum(0)))


def _to_2d(image: np.ndarray, masks: list[np.ndarray | None], heat: np.ndarray):
    """First image channel, masks and heat as 2D arrays (3D: the hottest slice), and that slice's index or None."""
    channel = image[0]
    if channel.ndim == 3:
        index = hottest_slice(heat)
        return (channel[..., index], [m[..., index] if m is not None else None for m in masks], heat[..., index],
                index)
    return channel, masks, heat, None


_PANEL_PIXELS = 288  # the longer side of an overlay PNG and of each gallery panel
_HEAT_ALPHA = 0.85  # opacity of the hottest heat colour over the image
_GAP = 6  # pixels between gallery panels
_OUTLINE = 2  # outline width in display pixels


def heat_range(heat: np.ndarray) -> tuple[float, float]:
    """Display range of a heat map: ``(0, top)`` with ``top`` its :data:`HEAT_PERCENTILE` th percentile.

    Args:
        heat: ``(*spatial)`` non-negative heat values.

    Returns:
        ``(0, top)``; ``top`` is the maximum when the percentile is 0, and 1 for an all-zero map.
    """
    values = np.asarray(heat, np.float64)
    top = float(np.percentile(values, HEAT_PERCENTILE)) if values.size else 0.0
    if top <= 0:
        top = float(values.max()) if values.size else 0.0
    return 0.0, top if top > 0 else 1.0


def _unit(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to ``[0, 1]`` (a constant array becomes 0)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values, dtype=np.float64)


def _display(array: np.ndarray, scale: int) -> np.ndarray:
    """Model-grid ``(X, Y, ...)`` to display orientation (first axis right, second up), each pixel ``scale`` wide."""
    shown = np.flipud(np.swapaxes(array, 0, 1))
    return np.repeat(np.repeat(shown, scale, 0), scale, 1)


def _rgb(colour: str) -> np.ndarray:
    """``#rrggbb`` as a uint8 ``(3,)`` array."""
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], np.uint8)


def _panel(channel: np.ndarray, outlines: list[tuple[np.ndarray | None, str, bool]], num_classes: int,
           heat: np.ndarray | None = None) -> np.ndarray:
    """One picture: the image in grey, optionally the heat map blended in, and mask outlines.

    The heat map is shown over :func:`heat_range` in :data:`HEAT_COLOURMAP`,
    more opaque where it is hotter, so cold regions show the image. Outlines
    are drawn inside each class region at display resolution, one colour per
    mask (classes are told apart by where they lie); the mask is taken as
    surrounded by background, so a mask filling the whole frame still shows its
    outline.

    Args:
        channel: ``(X, Y)`` image.
        outlines: ``(mask (X, Y) class indices or None, "#rrggbb", dashed)`` triples, drawn in order.
        num_classes: ``K``.
        heat: ``(X, Y)`` heat map, or ``None``.

    Returns:
        ``(H, W, 3)`` uint8 in display orientation, longer side about :data:`_PANEL_PIXELS`.
    """
    from scipy import ndimage

    rgb = np.repeat(_unit(np.asarray(channel, np.float64))[..., None], 3, axis=-1)
    if heat is not None:
        low, high = heat_range(heat)
        level = np.clip((np.asarray(heat, np.float64) - low) / (high - low), 0, 1)
        alpha = _HEAT_ALPHA * np.sqrt(level)[..., None]
        rgb = (1 - alpha) * rgb + alpha * matplotlib.colormaps[HEAT_COLOURMAP](level)[..., :3]
    scale = max(1, _PANEL_PIXELS // max(channel.shape))
    rgb = _display(np.rint(rgb * 255).astype(np.uint8), scale)
    rows, cols = np.indices(rgb.shape[:2])
    dashes = ((rows + cols) // 6) % 2 == 0
    for mask, colour, dashed in outlines:
        if mask is None:
            continue
        shown = _display(mask, scale)
        for label in range(1, num_classes):
            region = shown == label
            if region.any():
                edge = region & ~ndimage.binary_erosion(region, iterations=_OUTLINE, border_value=0)
                rgb[edge & dashes if dashed else edge] = _rgb(colour)
    return rgb


def _png(pixels: np.ndarray, text: dict[str, object]) -> bytes:
    """``(H, W, 3)`` uint8 pixels as PNG bytes, with ``text`` as JSON in PNG text chunks."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        if value is not None:
            info.add_text(key, json.dumps(value))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def overlay_png(image: np.ndarray, prediction: np.ndarray, heat: np.ndarray, num_classes: int) -> bytes:
    """A PNG of image (grey) + heat map + prediction outlines.

    Composed with NumPy and Pillow (no matplotlib figure: one is written per
    scored case, and figures were most of the scoring time). 3D cases show
    their hottest slice. Text chunks: :data:`HEAT_RANGE_KEY` (the colour
    scale's ``[low, high]``) and, for 3D, :data:`SLICE_KEY`.

    Args:
        image: ``(C, *spatial)`` model-grid image.
        prediction: ``(*spatial)`` class indices.
        heat: ``(*spatial)`` heat map.
        num_classes: ``K``.

    Returns:
        The PNG file's bytes.
    """
    channel, (mask,), heat2d, index = _to_2d(image, [prediction], heat)
    pixels = _panel(channel, [(mask, PREDICTION_COLOUR, False)], num_classes, heat2d)
    return _png(pixels, {HEAT_RANGE_KEY: list(heat_range(heat2d)), SLICE_KEY: index})


def gallery_png(image: np.ndarray, prediction: np.ndarray, truth: np.ndarray | None, heat: np.ndarray,
                num_classes: int, reconstruction: np.ndarray | None = None) -> bytes:
    """A PNG of the panels image | prediction and reconstruction | ground truth and prediction | heat map.

    Masks are drawn as outlines over the image in one colour each
    (:data:`PREDICTION_COLOUR`, :data:`RECONSTRUCTION_COLOUR` dashed,
    :data:`TRUTH_COLOUR`), so a reviewer sees an empty or a full mask at a
    glance. No text is drawn: the text chunk :data:`PANELS_KEY` lists each
    panel's ``kind``, ``label``, ``left`` and ``width`` in pixels, for the
    report to caption in HTML; :data:`HEAT_RANGE_KEY` holds the heat map's
    colour scale and, for 3D, :data:`SLICE_KEY` the slice shown.

    Args:
        image: ``(C, *spatial)`` model-grid image.
        prediction: ``(*spatial)`` class indices.
        truth: ``(*spatial)`` ground truth, or ``None``.
        heat: ``(*spatial)`` heat map.
        num_classes: ``K``.
        reconstruction: ``(*spatial)`` segqc's reconstruction, or ``None``.

    Returns:
        The PNG file's bytes.
    """
    channel, (pred2d, truth2d, rebuilt2d), heat2d, index = _to_2d(image, [prediction, truth, reconstruction], heat)
    predicted = (pred2d, PREDICTION_COLOUR, False)
    panels = [("image", "image", _panel(channel, [], num_classes)),
              ("prediction", "prediction" + (" + reconstruction" if rebuilt2d is not None else ""),
               _panel(channel, [(rebuilt2d, RECONSTRUCTION_COLOUR, True), predicted], num_classes))]
    if truth2d is not None:
        panels.append(("truth", "ground truth + prediction",
                       _panel(channel, [(truth2d, TRUTH_COLOUR, False), predicted], num_classes)))
    panels.append(("heat", "anomaly heat map", _panel(channel, [], num_classes, heat2d)))
    height, width = panels[0][2].shape[:2]
    canvas = np.full((height + 2 * _GAP, len(panels) * (width + _GAP) + _GAP, 3), 255, np.uint8)
    boxes = []
    for number, (kind, label, pixels) in enumerate(panels):
        left = _GAP + number * (width + _GAP)
        canvas[_GAP:_GAP + height, left:left + width] = pixels
        boxes.append({"kind": kind, "label": label, "left": left, "width": width})
    return _png(canvas, {PANELS_KEY: boxes, HEAT_RANGE_KEY: list(heat_range(heat2d)), SLICE_KEY: index})


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
