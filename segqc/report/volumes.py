"""The report's volume content: a card per volume, the structures ranked by predicted Dice, heat volumes.

* :func:`card_png`: the worst slice of each of a volume's weakest structures,
  with the prediction (solid), segqc's reconstruction (dashed) and the ground
  truth (dotted, when given) drawn as contours, and a profile of each
  structure's predicted Dice along the slices;
* :func:`region_heat_nifti`: the heat map of a 3D-route region in the file's grid;
* :func:`volume_section`: what ``report.html`` shows of volumes (the partial
  template ``templates/volumes.html.j2``): the structures ranked by predicted
  Dice over the run, and the cards of the volumes that need a look first.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd

from segqc.data.preprocess import PreprocessConfig
from segqc.data.regions import Region
from segqc.jsonable import finite_number
from segqc.report.cards import embedded_image

CARDS_DIR = "volumes"
CARDS_SHOWN = 24
"""Volume cards embedded in ``report.html`` (fail first, then review, then lowest predicted Dice); every card is
in ``volumes/``."""
_STYLES = (("prediction", "solid"), ("segqc", "dashed"), ("ground truth", "dotted"))


@dataclass
class CardPanel:
    """One picture of a card: a 2D slice with its masks (class indices, same shape).

    Attributes:
        caption: What and where (structure, slice, predicted Dice).
        image: ``(X, Y)`` image slice.
        prediction: ``(X, Y)`` predicted classes.
        reconstruction: ``(X, Y)`` segqc's reconstruction.
        truth: ``(X, Y)`` ground truth, or ``None``.
    """

    caption: str
    image: np.ndarray
    prediction: np.ndarray
    reconstruction: np.ndarray
    truth: np.ndarray | None = None


def card_png(title: str, panels: Sequence[CardPanel], profiles: Sequence[tuple[str, np.ndarray, np.ndarray]],
             num_classes: int) -> bytes:
    """A volume's card as PNG bytes: one panel per structure shown, then the profiles of predicted Dice.

    Args:
        title: The volume and its predicted Dice (or score).
        panels: The worst slice of each structure shown.
        profiles: ``(label, slice positions, predicted Dice)`` of each structure shown.
        num_classes: ``K`` (colours follow class indices, as in the gallery).

    Returns:
        The PNG file's bytes.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    colours = matplotlib.colormaps["tab10"]
    columns = len(panels) + 1
    figure = Figure(figsize=(2.6 * columns, 3.0), dpi=100)
    figure.suptitle(title, fontsize=9)
    for index, panel in enumerate(panels):
        axis = figure.add_subplot(1, columns, index + 1)
        axis.imshow(np.asarray(panel.image, float).T, cmap="gray", origin="lower")
        for mask, (_, style) in zip((panel.prediction, panel.reconstruction, panel.truth), _STYLES):
            if mask is None:
                continue
            for label in range(1, num_classes):
                region = (np.asarray(mask) == label).T.astype(float)
                if 0 < region.sum() < region.size:
                    axis.contour(region, levels=[0.5], colors=[colours(label % 10)], linestyles=style,
                                 linewidths=1.0)
        axis.set_title(panel.caption, fontsize=7)
        axis.set_axis_off()
    axis = figure.add_subplot(1, columns, columns)
    for label, positions, dice in profiles:
        axis.plot(positions, dice, marker=".", markersize=3, linewidth=1, label=f"label {label}")
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("slice", fontsize=7)
    axis.set_ylabel("predicted Dice", fontsize=7)
    axis.tick_params(labelsize=6)
    handles = [Line2D([], [], color="black", linestyle=style, label=name) for name, style in _STYLES]
    axis.legend(handles=axis.get_legend_handles_labels()[0] + handles, fontsize=5, loc="lower left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def region_heat_nifti(heat: np.ndarray, region: Region, original_shape: tuple[int, ...], affine: np.ndarray,
                      config: PreprocessConfig) -> bytes:
    """The heat map of a region in the image file's grid, as ``.nii.gz`` bytes (0 outside the region).

    Args:
        heat: ``(*region)`` heat map.
        region: Where the region lies in the respaced volume.
        original_shape: Spatial shape of the image file.
        affine: ``(4, 4)`` affine of the image file.
        config: The preprocessing settings (orientation, spacing).
    """
    from segqc.report.heatmaps import heat_volume_nifti

    grid = np.zeros(region.grid_shape, np.float32)
    inside = tuple(slice(max(s, 0), min(s + n, g)) for s, n, g in zip(region.start, region.shape, region.grid_shape))
    grid[inside] = np.asarray(heat, np.float32)[tuple(slice(i.start - s, i.stop - s)
                                                      for i, s in zip(inside, region.start))]
    # the respaced grid is the model grid of the same settings without the patches
    return heat_volume_nifti(grid, original_shape, affine, replace(config, spatial_size=region.grid_shape,
                                                                     patches=False))


def structure_ranking(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Each structure's predicted Dice over the run's volumes, lowest first.

    Returns:
        Per structure: ``label``, ``volumes`` (where present), ``mean`` and ``min`` predicted Dice,
        and the counts of ``fail`` / ``review`` verdicts.
    """
    ok = table[table["status"] == "ok"]
    structures = []
    for column in ok.columns:
        label = column.removeprefix("predicted_dice_")
        if column == label or not label.lstrip("-").isdigit():
            continue
        values = pd.to_numeric(ok[column], errors="coerce").dropna()
        verdicts = ok.get(f"verdict_{label}", pd.Series(dtype=str))
        structures.append({"label": label, "volumes": len(values),
                           "mean": float(values.mean()) if len(values) else None,
                           "min": float(values.min()) if len(values) else None,
                           "fail": int((verdicts == "fail").sum()), "review": int((verdicts == "review").sum())})
    return sorted(structures, key=lambda s: (s["mean"] is None, s["mean"] or 0.0))


def _card_uri(report_dir: Path, relative: str) -> str | None:
    """A volume card embedded as a data URI (``None`` when the file is missing)."""
    image = embedded_image(report_dir, relative) if relative else None
    return image.uri if image is not None else None


def volume_section(report_dir: Path, table: pd.DataFrame) -> dict[str, Any] | None:
    """What ``templates/volumes.html.j2`` shows, or ``None`` when the rows are not volumes (no ``card`` column).

    Args:
        report_dir: The report directory (cards are embedded from ``volumes/``).
        table: ``scores.csv`` read as text.
    """
    if "card" not in table.columns:
        return None
    ok = table[table["status"] == "ok"].copy()
    ok["_severity"] = ok["verdict"].map({"fail": 0, "review": 1, "pass": 2}).fillna(3)
    ok["_dice"] = pd.to_numeric(ok.get("predicted_dice", pd.Series(np.nan, index=ok.index)), errors="coerce")
    ok = ok.sort_values(["_severity", "_dice"], na_position="last", kind="stable")
    cards = []
    for row in ok.head(CARDS_SHOWN).to_dict("records"):
        worst = {column.removeprefix("worst_slices_"): row[column] for column in row
                 if column.startswith("worst_slices_") and row[column]}
        cards.append({"case_id": row["case_id"], "verdict": row["verdict"],
                      "predicted_dice": finite_number(row.get("predicted_dice")), "worst": worst,
                      "uri": _card_uri(report_dir, row.get("card", ""))})
    return {"structures": structure_ranking(table), "cards": cards, "volumes": len(ok),
            "shown": len(cards)}
