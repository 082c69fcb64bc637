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


def _show_mask(axis, mask: np.ndarray, num_classes: int) -> None:
    for label in range(1, num_classes):
        if (mask == label).any():
            axis.contour(mask == label, levels=[0.5], colors=[MASK_COLOURS(label % 10)], linewidths=1.2)


def overlay_png(path: Path, image: np.ndarray, prediction: np.ndarray, heat: np.ndarray, num_classes: int) -> None:
    """Write image (grey) + prediction contours + heat map to ``path``.

    Args:
        path: Target PNG.
        image: ``(C, *spatial)`` model-grid image.
        prediction: ``(*spatial)`` class indices.
        heat: ``(*spatial)`` heat map.
        num_classes: ``K``.
    """
    channel, (mask,), heat2d = _to_2d(image, [prediction], heat)
    figure, axis = plt.subplots(figsize=(3, 3), dpi=100)
    axis.imshow(channel.T, cmap="gray", origin="lower")
    axis.imshow(heat2d.T, cmap="inferno", alpha=0.45, origin="lower", vmin=0, vmax=max(float(heat2d.max()), 1e-12))
    _show_mask(axis, mask.T, num_classes)
    axis.set_axis_off()
    figure.savefig(path, bbox_inches="tight", pad_inches=0.02)
    plt.close(figure)


def gallery_png(path: Path, title: str, image: np.ndarray, prediction: np.ndarray, truth: np.ndarray | None,
                heat: np.ndarray, num_classes: int) -> None:
    """Write the panels image | prediction | ground truth (when given) | heat overlay."""
    channel, (pred2d, truth2d), heat2d = _to_2d(image, [prediction, truth], heat)
    panels = [("image", None), ("prediction", pred2d)] + ([("ground truth", truth2d)] if truth2d is not None else [])
    figure, axes = plt.subplots(1, len(panels) + 1, figsize=(2.6 * (len(panels) + 1), 2.8), dpi=100)
    for axis, (name, mask) in zip(axes, panels):
        axis.imshow(channel.T, cmap="gray", origin="lower")
        if mask is not None:
            axis.imshow(np.ma.masked_equal(mask.T, 0), cmap="tab10", vmin=0, vmax=9, alpha=0.5, origin="lower",
                        interpolation="nearest")
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
