"""JSON encoding of the values segqc writes (numpy scalars and arrays, paths, pandas' missing values); numbers
read back from them."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pandas as pd


def json_default(value: Any) -> Any:
    """The ``default`` of :func:`json.dumps`: what segqc's own values become in JSON.

    Raises:
        TypeError: ``value`` has no JSON form.
    """
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def finite_number(value: Any) -> float | None:
    """A value read back from ``scores.csv`` or ``summary.json`` as a finite float; ``None`` for text, NaN, inf."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
