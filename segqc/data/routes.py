"""Which route a labelled set of volumes takes: 2D slices or 3D patches, and why.

* **2D slices** (``slice_axis``): when the voxels are much longer along one
  axis than in its plane (thick slices: 5 mm CT, 2D MR acquisitions), a 3D
  patch would see a few slices across and be resampled finely along an axis
  that holds no detail; a 2D model on the slices sees each acquired plane;
* **3D patches** (``patches``): otherwise; the volume keeps its 3D context and
  millimetre detail (:mod:`segqc.data.regions`).

Only the headers of a few masks are read (NIfTI); other formats have no
spacing and take the 3D route.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segqc.data.pairing import pair_cases

ANISOTROPY = 2.5
"""Slice thickness over in-plane voxel size from which a set takes the 2D-slice route."""
_SAMPLED = 5
_AXES = ("sagittal", "coronal", "axial")


@dataclass(frozen=True)
class Route:
    """How a set of volumes is modelled.

    Attributes:
        name: ``slices`` or ``patches``.
        slice_axis: The axis (after reorientation to RAS) the slices are cut along, for ``slices``.
        reason: One line saying why.
    """

    name: str
    slice_axis: int | None
    reason: str


def _ras_spacing(path: Path) -> tuple[float, ...] | None:
    """Voxel size along the RAS axes of a NIfTI file (from its header), or ``None`` for other formats."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return None
    import nibabel as nib
    from nibabel.orientations import io_orientation

    image = nib.load(str(path))
    zooms = image.header.get_zooms()[:3]
    spacing = [0.0, 0.0, 0.0]
    for file_axis, (ras_axis, _) in enumerate(io_orientation(image.affine)[:3]):
        spacing[int(ras_axis)] = float(zooms[file_axis])
    return tuple(spacing)


def volume_route(images_dir: Path, masks_dir: Path) -> Route:
    """The route of a set of 3D volumes, from the median voxel size of up to five of its masks.

    Args:
        images_dir: Folder of images.
        masks_dir: Folder of masks, paired with the images by case id.

    Returns:
        The route and why.
    """
    cases = pair_cases(Path(images_dir), Path(masks_dir))[:_SAMPLED]
    spacings = [s for s in (_ras_spacing(case.mask) for case in cases if case.mask is not None) if s is not None]
    if not spacings:
        return Route("patches", None, "3D patches: the files carry no voxel size (not NIfTI), so no axis is "
                                      "known to be coarser")
    spacing = np.median(np.asarray(spacings), axis=0)
    thick = int(np.argmax(spacing))
    in_plane = float(np.max(np.delete(spacing, thick)))
    shown = " x ".join(f"{s:.2g}" for s in spacing)
    if spacing[thick] >= ANISOTROPY * in_plane:
        return Route("slices", thick, f"2D slices along axis {thick} ({_AXES[thick]}): voxels {shown} mm, slices "
                                      f"{spacing[thick] / in_plane:.1f} times thicker than their in-plane size "
                                      f"(>= {ANISOTROPY})")
    return Route("patches", None, f"3D patches: voxels {shown} mm, no axis {ANISOTROPY} times coarser than the "
                                  f"others")
