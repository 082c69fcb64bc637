"""Sources of cases and splits that keep a source on one side.

Slices of one volume, tiles of one image or augmented copies of one case are
one **source**: a held-out (validation, calibration, evaluation) case never
shares a source with a training case, or the held-out figures flatter the model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from segqc.data.cases import PreparedCase
from segqc.errors import ConfigError


def group_regex(pattern: str | None) -> re.Pattern[str] | None:
    """The compiled ``--group-pattern`` (``None`` without one).

    Raises:
        ConfigError: ``pattern`` is not a valid regular expression.
    """
    try:
        return re.compile(pattern) if pattern else None
    except re.error as err:
        raise ConfigError(f"--group-pattern {pattern!r}: not a regular expression ({err})") from None


def source_groups(cases: Sequence[PreparedCase], pattern: str | None = None) -> list[str]:
    """The source of each prepared case, for splits that keep a source on one side.

    Slices of one volume share their file's case id. With ``pattern`` (a regular
    expression searched in the case id; its first group, or the whole match,
    names the source) cases already cut into files, e.g. ``patient7_slice012``
    with ``pattern="(patient\\d+)"``, are grouped too.

    Raises:
        ConfigError: ``pattern`` is not a valid regular expression.
    """
    compiled = group_regex(pattern)
    groups = []
    for case in cases:
        name = case.source.case_id
        match = compiled.search(name) if compiled else None
        groups.append((match.group(1) if match.groups() else match.group(0)) if match else name)
    return groups


def split_rows(num_rows: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split into sorted training and validation indices."""
    order = np.random.default_rng(seed).permutation(num_rows)
    num_val = int(round(num_rows * val_fraction))
    return np.sort(order[num_val:]), np.sort(order[:num_val])


def split_groups(groups: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split by source: every case of a group lands on the same side.

    Whole groups, in random order, go to validation until it holds about
    ``val_fraction`` of the cases; at least one group stays for training.

    Args:
        groups: Source of each case, ``(N,)``.
        val_fraction: Share of cases to hold out.
        seed: Seed of the group order.

    Returns:
        Sorted training and validation indices.
    """
    groups = np.asarray(groups)
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    target = int(round(len(groups) * val_fraction))
    held, total = [], 0
    for name in np.random.default_rng(seed).permutation(len(names))[:-1]:
        if total >= target:
            break
        held.append(name)
        total += counts[name]
    is_val = np.isin(inverse, held)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
