"""From per-slice or per-patch evidence to the predicted Dice of a whole volume (DESIGN.md §3.7).

Dice is a ratio of sums, not a mean of ratios. A volume is cut into units
``s`` (the slices a 2D model scores, or the tiles a 3D model scores); for one
structure, with ``d_s`` the unit's predicted Dice, ``P_s`` its predicted area
and ``G_s`` an estimate of its true area (segqc's reconstruction), the volume's
predicted Dice is::

    D = sum_s d_s (P_s + G_s) / sum_s (P_s + G_s)

which is exactly the 3D Dice when ``d_s`` is each unit's true Dice and
``G_s`` its true area (``d_s (P_s + G_s) = 2 |P_s and G_s|``). A unit where
the structure is absent from both the prediction and the estimate weighs
nothing; a structure absent from the whole volume in both has Dice 1 and is
left out of the mean, as in :func:`segqc.metrics.mean_dice`.

**Interval.** Each end of a unit's interval is aggregated with the same
weights. A weighted mean of interval ends is the interval of the volume when
the units' errors move together (one segmenter, one scan: the usual case); if
they were independent, the volume's interval would be narrower, so this one is
conservative. Its coverage on whole real volumes is measured, not assumed
(``docs/benchmarks-volumes.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORST_UNITS = 3
"""Units listed per structure as the worst (lowest predicted Dice)."""


@dataclass
class VolumeEstimate:
    """Predicted Dice of one volume, per structure and overall.

    Attributes:
        dice: Mean over present structures, a float.
        low: Lower end of the interval of ``dice``.
        high: Upper end of the interval of ``dice``.
        per_structure: ``(K-1,)`` predicted Dice of each structure.
        per_structure_low: ``(K-1,)`` lower interval ends.
        per_structure_high: ``(K-1,)`` upper interval ends.
        present: ``(K-1,)`` whether the structure is in the prediction or the estimate of the truth.
        worst: Per structure, the indices of up to :data:`WORST_UNITS` units where it
            is present, lowest predicted Dice first.
    """

    dice: float
    low: float
    high: float
    per_structure: np.ndarray
    per_structure_low: np.ndarray
    per_structure_high: np.ndarray
    present: np.ndarray
    worst: list[np.ndarray]


def overlap_weighted(values: np.ndarray, predicted_area: np.ndarray, reference_area: np.ndarray) -> np.ndarray:
    """``sum_s v_s (P_s + G_s) / sum_s (P_s + G_s)`` along the first axis; 1 where every weight is 0.

    Args:
        values: ``(S, ...)`` per-unit Dice values (or interval ends).
        predicted_area: ``(S, ...)`` predicted voxels per unit.
        reference_area: ``(S, ...)`` estimated true voxels per unit.

    Returns:
        ``(...)`` volume values.
    """
    weights = np.asarray(predicted_area, np.float64) + np.asarray(reference_area, np.float64)
    total = weights.sum(0)
    return np.where(total > 0, (np.asarray(values, np.float64) * weights).sum(0) / np.maximum(total, 1e-12), 1.0)


def volume_estimate(dice: np.ndarray, low: np.ndarray, high: np.ndarray, predicted_area: np.ndarray,
                    reference_area: np.ndarray, worst_units: int = WORST_UNITS) -> VolumeEstimate:
    """Aggregate per-unit predicted Dice of each structure into the volume's.

    Args:
        dice: ``(S, K-1)`` predicted Dice of each structure in each unit.
        low: ``(S, K-1)`` lower interval ends.
        high: ``(S, K-1)`` upper interval ends.
        predicted_area: ``(S, K-1)`` voxels of each structure in the prediction.
        reference_area: ``(S, K-1)`` voxels of each structure in the estimate of the truth.
        worst_units: Units listed per structure.

    Returns:
        The volume's estimate.
    """
    weights = np.asarray(predicted_area, np.float64) + np.asarray(reference_area, np.float64)
    present = weights.sum(0) > 0
    per = [overlap_weighted(v, predicted_area, reference_area) for v in (dice, low, high)]
    mean = [float(v[present].mean()) if present.any() else 1.0 for v in per]
    worst = []
    for structure in range(weights.shape[1]):
        units = np.flatnonzero(weights[:, structure] > 0)
        worst.append(units[np.argsort(np.asarray(dice)[units, structure], kind="stable")][:worst_units])
    return VolumeEstimate(*mean, *per, present, worst)
