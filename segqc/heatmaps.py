"""Heat-map files: PNG overlays for 2D cases, NIfTI volumes in the original grid for 3D.

The heat map of a case is the per-pixel squared score norm (divided by tau^2,
averaged over noise levels) from :meth:`segqc.scoremodels.image.ImageScoreModel.embed`:
where it is bright, the mask disagrees with what the model learned.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform  # noqa: E402

from segqc.data.preprocess import PreprocessConfig, fit_input_shape, restore_spatial  # noqa: E402

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


def _show_mask(axis, mask: np.ndarray, num_classes: int, style: str = "solid") -> None:
    """Contours of each foreground class over an image (``mask`` in display orientation).

    The mask is padded with background first, so a mask filling the whole frame
    still shows its outline; an empty mask is labelled "empty".
    """
    rows, cols = mask.shape
    for label in range(1, num_classes):
        region = np.pad(mask == label, 1)
        if region.any():
            axis.contour(np.arange(-1, cols + 1), np.arange(-1, rows + 1), region, levels=[0.5],
                         colors=[MASK_COLOURS(label % 10)], linewidths=1.2, linestyles=style)
    if not (mask > 0).any() and style == "solid":
        axis.text(0.5, 0.06, "empty mask", color="white", fontsize=8, ha="center", transform=axis.transAxes)


_OVERLAY_PIXELS = 288  # the longer side of an overlay PNG
_HEAT_ALPHA = 0.45


def _unit(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to ``[0, 1]`` (a constant array becomes 0)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values, dtype=np.float64)


def overlay_png(path: Path, image: np.ndarray, prediction: np.ndarray, heat: np.ndarray, num_classes: int) -> None:
    """Write image (grey) + heat map (inferno) + prediction outlines to ``path``.

    Composed with NumPy and Pillow (no matplotlib figure: one is written per
    scored case, and figures were most of the scoring time). Display
    orientation as in the gallery panels: first array axis to the right,
    second axis up; 3D cases show their hottest slice.

    Args:
        path: Target PNG.
        image: ``(C, *spatial)`` model-grid image.
        prediction: ``(*spatial)`` class indices.
        heat: ``(*spatial)`` heat map.
        num_classes: ``K``.
    """
    from PIL import Image, ImageDraw
    from scipy import ndimage

    channel, (mask,), heat2d = _to_2d(image, [prediction], heat)
    grey = np.repeat(_unit(np.asarray(channel, np.float64))[..., None], 3, axis=-1)
    peak = max(float(heat2d.max()), 1e-12)
    hot = matplotlib.colormaps["inferno"](np.clip(heat2d / peak, 0, 1))[..., :3]
    rgb = (1 - _HEAT_ALPHA) * grey + _HEAT_ALPHA * hot
    for label in range(1, num_classes):
        region = mask == label
        rgb[region & ~ndimage.binary_erosion(region, border_value=0)] = MASK_COLOURS(label % 10)[:3]
    pixels = np.flipud(np.transpose(np.rint(rgb * 255).astype(np.uint8), (1, 0, 2)))  # x right, y up
    scale = max(1, _OVERLAY_PIXELS // max(pixels.shape[:2]))
    picture = Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale), Image.NEAREST)
    if not (mask > 0).any():
        ImageDraw.Draw(picture).text((4, picture.height - 14), "empty mask", fill=(255, 255, 255))
    picture.save(path)


def gallery_png(path: Path, title: str, image: np.ndarray, prediction: np.ndarray, truth: np.ndarray | None,
                heat: np.ndarray, num_classes: int, reconstruction: np.ndarray | None = None) -> None:
    """Write the panels image | prediction (and segqc's reconstruction) | ground truth | heat overlay.

    Masks are drawn as contours over the image (solid: the prediction and the
    ground truth; dashed: segqc's own reconstruction), so a reviewer sees an
    empty or a full mask at a glance.

    Args:
        path: Target PNG.
        title: Title line (rank, case, score, predicted Dice, verdict).
        image: ``(C, *spatial)`` model-grid image.
        prediction: ``(*spatial)`` class indices.
        truth: ``(*spatial)`` ground truth, or ``None``.
        heat: ``(*spatial)`` heat map.
        num_classes: ``K``.
        reconstruction: ``(*spatial)`` segqc's reconstruction, or ``None``.
    """
    channel, (pred2d, truth2d, rebuilt2d), heat2d = _to_2d(image, [prediction, truth, reconstruction], heat)
    panels = [("image", []), ("prediction" + (" / segqc (dashed)" if rebuilt2d is not None else ""),
                              [(pred2d, "solid"), (rebuilt2d, "dashed")])]
    if truth2d is not None:
        panels.append(("ground truth", [(truth2d, "solid")]))
    figure, axes = plt.subplots(1, len(panels) + 1, figsize=(2.6 * (len(panels) + 1), 2.8), dpi=100)
    for axis, (name, masks) in zip(axes, panels):
        axis.imshow(channel.T, cmap="gray", origin="lower")
        for mask, style in masks:
            if mask is not None:
                _show_mask(axis, mask.T, num_classes, style)
        axis.set_title(name, fontsize=9)
        axis.set_axis_off()
    axes[-1].imshow(channel.T, cmap="gray", origin="lower")
    axes[-1].imshow(heat2d.T, cmap="inferno", alpha=0.5, origin="lower", vmin=0, vmax=max(float(heat2d.max()), 1e-12))
    axes[-1].set_title("anomaly heat map", fontsize=9)
    axes[-1].set_axis_off()
    figure.suptitle(title, fontsize=10)
    figure.savefig(path, bbox_inches="tight", pad_inches=0.05)
    plt.close(figure)


def heat_volume_nifti(path: Path, heat: np.ndarray, original_shape: tuple[int, ...], affine: np.ndarray,
                      config: PreprocessConfig) -> None:
    """Write a 3D heat map in the original image grid.

    The heat map lives in the model grid (reoriented to ``config.orientation``,
    respaced to ``config.spacing``, then resized or centre-cropped/padded). It
    goes back to the grid it had before fitting (:func:`restore_spatial`:
    trilinear for ``resize``, exact un-crop/un-pad for ``crop_or_pad``), then
    (when respaced) trilinear to the reoriented original shape, and is
    reoriented back to the file's orientation and saved with the file's affine.

    Args:
        path: Target ``.nii.gz``.
        heat: ``(*spatial_size)`` model-grid heat map.
        original_shape: Spatial shape ``(X, Y, Z)`` of the image file.
        affine: ``(4, 4)`` affine of the image file.
        config: The preprocessing settings that made the model grid.
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
    nib.save(nib.Nifti1Image(np.ascontiguousarray(restored, dtype=np.float32), affine), str(path))
