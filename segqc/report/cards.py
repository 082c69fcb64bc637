"""The report's gallery cards: a caption in HTML, the embedded panels and what their PNG text chunks say.

A gallery panel (:func:`segqc.report.heatmaps.gallery_png`) carries no text;
its PNG text chunks say where each panel lies, the heat map's colour scale and
the slice shown, and a card turns them into HTML captions placed over the
picture in percent of its width (so they stay aligned at any size, the enlarged
view included). Panels of older reports (captions drawn into the image, no
text chunks) are shown as they are.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from PIL import Image

from segqc.jsonable import finite_number
from segqc.report.heatmaps import HEAT_COLOURMAP, HEAT_RANGE_KEY, PANELS_KEY, SLICE_KEY

IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}


@dataclass
class EmbeddedImage:
    """An image file as a data URI, with its size and its segqc text chunks.

    Attributes:
        uri: ``data:image/...;base64,...``.
        width: Width in pixels.
        height: Height in pixels.
        text: The ``segqc:*`` text chunks, JSON-decoded (empty for other images).
    """

    uri: str
    width: int
    height: int
    text: dict[str, Any] = field(default_factory=dict)


def _decoded(info: Mapping[str, Any]) -> dict[str, Any]:
    text = {}
    for key, value in info.items():
        if isinstance(key, str) and key.startswith("segqc:") and isinstance(value, str):
            try:
                text[key] = json.loads(value)
            except json.JSONDecodeError:
                continue
    return text


def embedded_image(report_dir: Path, relative: str) -> EmbeddedImage | None:
    """Embed a PNG or JPEG file of a report directory.

    Args:
        report_dir: The report directory that ``relative`` is relative to.
        relative: The path from the table; empty for none.

    Returns:
        The embedded image, or ``None`` when the path is empty or the file is
        missing, unreadable or not a valid PNG/JPEG image.
    """
    if not relative:
        return None
    try:
        data = (report_dir / relative).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            kind, size, text = IMAGE_TYPES.get(image.format or ""), image.size, _decoded(image.info)
            image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    if kind is None:
        return None
    return EmbeddedImage(f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}", *size, text)


def heat_gradient(stops: int = 9) -> str:
    """A CSS ``linear-gradient`` of the heat colour map (the colour scale drawn under heat maps)."""
    colours = matplotlib.colormaps[HEAT_COLOURMAP](np.linspace(0, 1, stops))
    parts = [f"{matplotlib.colors.to_hex(colour)} {100 * index / (stops - 1):.0f}%"
             for index, colour in enumerate(colours)]
    return f"linear-gradient(to right, {', '.join(parts)})"


def _panels(image: EmbeddedImage) -> list[dict[str, Any]]:
    """Panel captions ``{kind, label, left, width}`` with ``left`` and ``width`` in percent of the image width."""
    boxes = image.text.get(PANELS_KEY)
    if not isinstance(boxes, list) or image.width <= 0:
        return []
    panels = []
    for box in boxes:
        left, width = finite_number((box or {}).get("left")), finite_number((box or {}).get("width"))
        if left is None or width is None:
            return []
        panels.append({"kind": str(box.get("kind", "")), "label": str(box.get("label", "")),
                       "left": round(100 * left / image.width, 3), "width": round(100 * width / image.width, 3)})
    return panels


def _heat_scale(image: EmbeddedImage | None, panels: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Where and over which range the heat colour scale is drawn, or ``None`` when the picture does not say."""
    scale = image.text.get(HEAT_RANGE_KEY) if image is not None else None
    if not isinstance(scale, list) or len(scale) != 2 or None in map(finite_number, scale):
        return None
    heat = next((panel for panel in panels if panel["kind"] == "heat"), {"left": 0.0, "width": 100.0})
    return {"low": float(scale[0]), "high": float(scale[1]), "left": heat["left"], "width": heat["width"]}


def gallery_card(row: Mapping[str, str], report_dir: Path, in_top: bool) -> dict[str, Any]:
    """What the template needs of one gallery case.

    Args:
        row: The case's ``scores.csv`` row (text values).
        report_dir: The report directory (its ``gallery/`` and ``heatmaps/`` files are embedded).
        in_top: Whether the case is among the top K by anomaly score.

    Returns:
        ``case_id``, ``rank``, ``score``, ``predicted`` (``{value, low, high}`` or ``None``),
        ``truth`` (true mean Dice or ``None``), ``verdict``, ``empty`` (the prediction has no
        foreground), ``reason``, ``panel`` (:class:`EmbeddedImage` or ``None``), ``panels``
        (captions), ``heat_scale``, ``slice``, ``heatmap`` (the overlay, shown without a panel),
        ``heatmap_file`` (a 3D heat map's path) and ``structures`` (see :func:`structures`).
    """
    heatmap = row.get("heatmap", "")
    is_volume = heatmap.lower().endswith((".nii", ".nii.gz"))
    panel = embedded_image(report_dir, row.get("gallery", ""))
    overlay = None if panel is not None or is_volume else embedded_image(report_dir, heatmap)
    panels = _panels(panel) if panel is not None else []
    value = finite_number(row.get("predicted_dice"))
    shown = panel or overlay
    slice_index = shown.text.get(SLICE_KEY) if shown is not None else None
    return {
        "case_id": row["case_id"],
        "rank": int(float(row["rank"])),
        "score": finite_number(row.get("score")),
        "predicted": None if value is None else {"value": value, "low": finite_number(row.get("predicted_dice_low")),
                                                 "high": finite_number(row.get("predicted_dice_high"))},
        "truth": finite_number(row.get("dice_mean")),
        "verdict": row["verdict"],
        "empty": finite_number(row.get("empty_prediction")) == 1,
        "reason": row.get("gallery_reason", "") or ("top-k" if in_top else ""),
        "panel": panel,
        "panels": panels,
        "heat_scale": _heat_scale(shown, panels),
        "slice": slice_index if isinstance(slice_index, int) else None,
        "heatmap": overlay,
        "heatmap_file": heatmap if is_volume else "",
        "structures": structures(row),
    }


def structures(row: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each structure's predicted Dice, interval and verdict from a ``scores.csv`` row, worst verdict first.

    Returns:
        ``label``, ``value``, ``low``, ``high`` and ``verdict`` of every structure with a verdict.
    """
    found = []
    for column, verdict in row.items():
        if column.startswith("verdict_") and verdict in ("pass", "review", "fail"):
            label = column.removeprefix("verdict_")
            found.append({"label": label, "value": finite_number(row.get(f"predicted_dice_{label}")),
                          "low": finite_number(row.get(f"predicted_dice_{label}_low")),
                          "high": finite_number(row.get(f"predicted_dice_{label}_high")), "verdict": verdict})
    return sorted(found, key=lambda s: ("fail", "review", "pass").index(s["verdict"]))


def gallery_cards(table: pd.DataFrame, report_dir: Path, top_k: int | None) -> list[dict[str, Any]]:
    """The gallery: the top-K cases and those near the fail line, lowest predicted Dice first.

    Without predicted Dice the cards follow the anomaly-score rank.

    Args:
        table: The ``scores.csv`` table (text values).
        report_dir: The report directory.
        top_k: Cases with ``rank <= top_k`` are shown; ``None``: only those with a ``gallery`` file.

    Returns:
        The cards (:func:`gallery_card`).
    """
    cards = []
    for row in table.to_dict("records"):
        rank = finite_number(row["rank"])
        if row["status"] != "ok" or rank is None:
            continue
        in_top = top_k is not None and rank <= top_k
        if in_top or row.get("gallery", ""):
            cards.append(gallery_card(row, report_dir, in_top))

    def order(card: dict[str, Any]) -> tuple[float, int]:
        predicted = card["predicted"]["value"] if card["predicted"] else math.inf
        return predicted, card["rank"]

    return sorted(cards, key=order)
