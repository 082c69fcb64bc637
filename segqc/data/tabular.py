"""Tables as the tabular model sees them: column types inferred, rows encoded (files: :mod:`segqc.data.tables`).

Column types (overridable with ``categorical=``, ``continuous=``, ``ignore=``):

* strings, booleans, pandas categories -> categorical;
* integers with at most ``max_integer_categories`` distinct values -> categorical,
  other integers and all floats -> continuous;
* dates, all-missing columns and constant columns are dropped with a warning;
  text columns with more than ``max_categories`` distinct values look like
  identifiers or free text and are dropped with a warning.

Missing values: in a categorical column a missing value is its own category
(``<missing>``), because missingness is often informative. In a continuous
column it is replaced by the training median, and when the training data had
missing values in that column a binary "is missing" indicator joins the
categorical variables. Categories unseen at fit time are encoded as ``-1``: the
score model gives them a uniform location, which it has never seen, so they
raise the anomaly score; a warning counts them.

Continuous values are standardised, or (``gaussianize=True``) mapped through
their training quantiles onto standard-normal quantiles, so that a value's
distance from 0 says how far out in its column's tail it lies whatever the
column's shape (skewed incomes, counts); beyond the training range the map
continues with slope ``1 / std``.

Values a model cannot score: infinite values (``inf``, or ``1e309`` which
overflows) and values more than :data:`MAX_STANDARD_UNITS` standard units
out are marked in :attr:`EncodedTable.beyond` (and fed to the network clipped
at that bound), so that the detector flags their rows naming the column,
instead of giving a NaN score or a saturated network's wrong explanation. In
training data such values are refused. A modelled column that is entirely
empty in a scored table (and had no missing values at fit time) is refused,
rather than filled in and passed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from segqc.data.tables import Progress
from segqc.errors import ConfigError, SchemaError, did_you_mean

logger = logging.getLogger(__name__)

MISSING = "<missing>"
GAUSSIANIZE_KNOTS = 256
"""Most quantile knots of a gaussianised continuous column."""
MAX_STANDARD_UNITS = 100.0
"""Standard units beyond which a continuous value is out of the score model's reach (flagged, fed clipped)."""


def category_key(value: object) -> str:
    """Canonical string of a category value (``3``, ``3.0`` and ``"3"`` agree)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT:
        return MISSING
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    return str(value)


@dataclass
class CategoricalColumn:
    """A categorical column and its categories (``category_key`` strings)."""

    name: str
    categories: list[str]


@dataclass
class ContinuousColumn:
    """A continuous column with its standardisation and missing-value fill.

    Attributes:
        name: Column name.
        mean: Training mean (after filling).
        std: Training standard deviation.
        fill: Value used for missing entries (training median).
        missing_indicator: Whether a binary "is missing" variable is added.
        knots: Increasing training quantiles of a gaussianised column (empty:
            the column is standardised).
        normal_scores: Standard-normal quantile of each knot.
    """

    name: str
    mean: float
    std: float
    fill: float
    missing_indicator: bool = False
    knots: list[float] = field(default_factory=list)
    normal_scores: list[float] = field(default_factory=list)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Standardised or gaussianised values of filled raw values ``(N,)`` -> ``(N,)``."""
        scale = self.std or 1.0
        if not self.knots:
            return (values - self.mean) / scale
        knots, scores = np.asarray(self.knots), np.asarray(self.normal_scores)
        inside = np.interp(values, knots, scores)
        above = scores[-1] + (values - knots[-1]) / scale
        below = scores[0] + (values - knots[0]) / scale
        return np.where(values > knots[-1], above, np.where(values < knots[0], below, inside))


def normal_score_knots(values: np.ndarray, max_knots: int = GAUSSIANIZE_KNOTS) -> tuple[list[float], list[float]]:
    """Quantile knots of ``values`` and their standard-normal scores (ties averaged).

    Args:
        values: Training values of one column, shape ``(N,)``, no missing values.
        max_knots: Most quantiles used.

    Returns:
        Increasing knots and the normal quantile of each (``(k,)`` lists).
    """
    n = len(values)
    probabilities = np.linspace(0.5 / n, 1 - 0.5 / n, min(max_knots, n))
    quantiles = np.quantile(values, probabilities)
    knots, inverse = np.unique(quantiles, return_inverse=True)
    scores = np.bincount(inverse, stats.norm.ppf(probabilities)) / np.bincount(inverse)
    return knots.tolist(), scores.tolist()


@dataclass
class TabularSchema:
    """What the model knows about the table's columns (stored in the bundle)."""

    categorical: list[CategoricalColumn] = field(default_factory=list)
    continuous: list[ContinuousColumn] = field(default_factory=list)
    id_column: str | None = None
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def cardinalities(self) -> list[int]:
        """Categories per categorical variable, missing indicators (2) last."""
        return [len(c.categories) for c in self.categorical] + [2] * sum(c.missing_indicator for c in self.continuous)

    @property
    def columns(self) -> list[str]:
        """Names of the modelled columns."""
        return [c.name for c in self.categorical] + [c.name for c in self.continuous]

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TabularSchema:
        """Inverse of :meth:`to_dict`."""
        return cls([CategoricalColumn(**c) for c in data["categorical"]],
                   [ContinuousColumn(**c) for c in data["continuous"]], data.get("id_column"),
                   dict(data.get("dropped", {})))


def _check_names(frame: pd.DataFrame, names: Sequence[str], option: str, where: str) -> None:
    for name in names:
        if name not in frame.columns:
            columns = [str(c) for c in frame.columns]
            raise SchemaError(f"{option} {name!r}: no such column in {where}{did_you_mean(name, columns)}; "
                              f"columns are: {', '.join(columns)}")


def infer_schema(frame: pd.DataFrame, categorical: Sequence[str] = (), continuous: Sequence[str] = (),
                 ignore: Sequence[str] = (), id_column: str | None = None, max_integer_categories: int = 20,
                 max_categories: int = 200, where: str = "table", gaussianize: bool = False,
                 on_progress: Progress | None = None) -> TabularSchema:
    """Decide each column's type and learn its categories or standardisation.

    Args:
        frame: The training table.
        categorical: Columns forced to categorical.
        continuous: Columns forced to continuous.
        ignore: Columns left out.
        id_column: Column of row identifiers (left out, used in outputs).
        max_integer_categories: Integer columns with at most this many distinct
            values are categorical.
        max_categories: Text columns with more distinct values are dropped
            (unless forced categorical).
        where: Name of the table for messages (e.g. the file path).
        gaussianize: Map continuous columns through their quantiles onto
            normal scores instead of standardising them.
        on_progress: Called with ``(columns done, columns)``.

    Returns:
        The schema.

    Raises:
        SchemaError: An option names an unknown column, a continuous column
            holds text, infinite values or values too large to standardise,
            or no usable column remains.
    """
    for option, names in (("--categorical", categorical), ("--continuous", continuous), ("--ignore", ignore),
                          ("--id-column", [id_column] if id_column else [])):
        _check_names(frame, names, option, where)
    both = set(categorical) & set(continuous)
    if both:
        raise ConfigError(f"columns given as both --categorical and --continuous: {', '.join(sorted(both))}")
    schema = TabularSchema(id_column=id_column)
    skip = set(ignore) | ({id_column} if id_column else set())
    for done, name in enumerate(frame.columns, start=1):
        if on_progress is not None:
            on_progress(done, frame.shape[1])
        if name in skip:
            continue
        column = frame[name]
        kind, reason = _column_kind(column, name in categorical, name in continuous, max_integer_categories,
                                    max_categories)
        if kind == "categorical":
            keys = column.map(category_key)
            schema.categorical.append(CategoricalColumn(str(name), sorted(keys.unique().tolist())))
        elif kind == "continuous":
            values = _numeric(column, str(name), where)
            missing = bool(values.isna().any())
            fill = float(values.median())
            filled = values.fillna(fill)
            with np.errstate(over="ignore", invalid="ignore"):
                mean, std = float(filled.mean()), float(filled.std(ddof=0))
            if not (np.isfinite(mean) and np.isfinite(std)):
                raise SchemaError(f"column {name!r} in {where}: values too large to standardise (up to "
                                  f"{filled.abs().max():g}); rescale the column (e.g. other units) and fit again")
            knots, scores = normal_score_knots(filled.to_numpy()) if gaussianize else ([], [])
            schema.continuous.append(ContinuousColumn(str(name), mean, std, fill, missing, knots, scores))
        else:
            schema.dropped[str(name)] = reason
    if not schema.columns:
        details = "; ".join(f"{k}: {v}" for k, v in schema.dropped.items()) or "all columns ignored"
        raise SchemaError(f"{where}: no usable columns ({details})")
    for name, reason in schema.dropped.items():
        logger.warning("%s: column %r dropped: %s", where, name, reason)
    return schema


_NESTED = (list, tuple, dict, set, np.ndarray)
"""Values of a nested column (Parquet list, struct or map), which no variable kind fits."""


def _column_kind(column: pd.Series, force_categorical: bool, force_continuous: bool,
                 max_integer_categories: int, max_categories: int) -> tuple[str, str]:
    """``("categorical"|"continuous"|"drop", reason)`` for one column.

    Raises:
        SchemaError: A column of nested values (lists, records) was named with ``--categorical`` / ``--continuous``.
    """
    if column.isna().all():
        return "drop", "every value is missing"
    if column.dtype == object and column.map(lambda value: isinstance(value, _NESTED)).any():
        if force_categorical or force_continuous:
            raise SchemaError(f"column {column.name!r}: holds lists or records (a nested Parquet column), which "
                              "segqc cannot use as a variable; drop it from --categorical / --continuous")
        return "drop", "holds lists or records (a nested Parquet column); segqc cannot use it"
    if column.nunique(dropna=False) <= 1:
        return "drop", f"constant column (only {category_key(column.dropna().iloc[0])!r})"
    if force_categorical:
        return "categorical", ""
    if force_continuous:
        return "continuous", ""
    if pd.api.types.is_datetime64_any_dtype(column) or pd.api.types.is_timedelta64_dtype(column):
        return "drop", "date/time column; convert it to numbers and pass --continuous to use it"
    if pd.api.types.is_bool_dtype(column) or isinstance(column.dtype, pd.CategoricalDtype):
        return "categorical", ""
    if pd.api.types.is_numeric_dtype(column):
        values = column.dropna()
        integral = pd.api.types.is_integer_dtype(column) or bool(np.all(np.mod(values, 1) == 0))
        if integral and values.nunique() <= max_integer_categories:
            return "categorical", ""
        return "continuous", ""
    if column.nunique() > max_categories:
        return "drop", (f"text with {column.nunique()} distinct values looks like an identifier; "
                        "pass --categorical to keep it or --id-column to use it as row id")
    return "categorical", ""


def _numeric(column: pd.Series, name: str, where: str, allow_infinite: bool = False) -> pd.Series:
    """The column as float64 (missing values NaN), refusing text and (unless allowed) infinite values."""
    values = pd.to_numeric(column, errors="coerce").astype("float64")
    bad = values.isna() & column.notna()
    if bad.any():
        example = column[bad].iloc[0]
        raise SchemaError(f"column {name!r} in {where}: expected numbers, found {example!r} "
                          f"({int(bad.sum())} non-numeric values)")
    infinite = np.flatnonzero(np.isinf(values.to_numpy()))
    if infinite.size and not allow_infinite:
        raise SchemaError(f"column {name!r} in {where}: {infinite.size} infinite value(s), the first in data row "
                          f"{infinite[0] + 1} ({column.iloc[infinite[0]]!r}); expected finite numbers (leave a cell "
                          f"empty for a missing value)")
    return values


@dataclass
class EncodedTable:
    """Model-ready arrays of a table.

    Attributes:
        codes: Category codes, ``(N, D_cat)`` int64, ``-1`` for unseen categories;
            missing indicators are the last columns.
        continuous: Standardised (or gaussianised) continuous values, ``(N, D_cont)`` float32.
        ids: Row identifiers (the id column, or the row index), ``(N,)``.
        unseen: Count of unseen-category values per column.
        beyond: Continuous values the model cannot score (infinite, or further
            out than :data:`MAX_STANDARD_UNITS`), ``(N, D_cont)`` bool.
    """

    codes: np.ndarray
    continuous: np.ndarray
    ids: np.ndarray
    unseen: dict[str, int]
    beyond: np.ndarray


def encode(frame: pd.DataFrame, schema: TabularSchema, where: str = "input",
           on_progress: Progress | None = None) -> EncodedTable:
    """Encode a table with a fitted schema.

    Args:
        frame: The table; extra columns are ignored.
        schema: The fitted schema.
        where: Name of the table for messages (e.g. the file path).
        on_progress: Called with ``(columns done, modelled columns)``.

    Returns:
        The encoded table.

    Raises:
        SchemaError: Modelled columns are missing or entirely empty (when
            their training values had no gaps), or continuous values are text.
    """
    missing = [c for c in schema.columns + ([schema.id_column] if schema.id_column else []) if c not in frame.columns]
    if missing:
        raise SchemaError(f"{where}: missing column(s) {', '.join(map(repr, missing))} that the model was "
                          f"trained on; expected columns: {', '.join(schema.columns)}")
    rows = len(frame)
    codes, unseen, beyond = [], {}, []
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, len(schema.columns))

    for column in schema.categorical:
        advance()
        if rows and MISSING not in column.categories:
            _check_not_empty(frame[column.name], column.name, where)
        lookup = {key: i for i, key in enumerate(column.categories)}
        keys = frame[column.name].map(category_key)
        col_codes = keys.map(lookup).fillna(-1).astype(np.int64).to_numpy()
        if (col_codes < 0).any():
            unseen[column.name] = int((col_codes < 0).sum())
            examples = sorted(set(keys[col_codes < 0]))[:3]
            logger.warning("%s: column %r has %d value(s) unseen at fit time (e.g. %s); scored as anomalous",
                           where, column.name, unseen[column.name], ", ".join(map(repr, examples)))
        codes.append(col_codes)
    continuous = []
    for column in schema.continuous:
        advance()
        if rows and not column.missing_indicator:
            _check_not_empty(frame[column.name], column.name, where)
        values = _numeric(frame[column.name], column.name, where, allow_infinite=True)
        if column.missing_indicator:
            codes.append(values.isna().to_numpy().astype(np.int64))
        elif values.isna().any():
            logger.warning("%s: column %r has %d missing value(s), none seen at fit time; filled with %g",
                           where, column.name, int(values.isna().sum()), column.fill)
        with np.errstate(over="ignore", invalid="ignore"):
            standard = column.transform(values.fillna(column.fill).to_numpy())
        beyond.append(~(np.abs(standard) <= MAX_STANDARD_UNITS))
        continuous.append(np.clip(standard, -MAX_STANDARD_UNITS, MAX_STANDARD_UNITS))
    ids = frame[schema.id_column].to_numpy() if schema.id_column else np.arange(rows)
    return EncodedTable(
        np.stack(codes, 1) if codes else np.zeros((rows, 0), np.int64),
        np.stack(continuous, 1).astype(np.float32) if continuous else np.zeros((rows, 0), np.float32),
        ids, unseen, np.stack(beyond, 1) if beyond else np.zeros((rows, 0), bool))


def _check_not_empty(column: pd.Series, name: str, where: str) -> None:
    """Refuse a modelled column whose every value is missing (filling it in would pass any row)."""
    if column.isna().all():
        raise SchemaError(f"{where}: column {name!r} is empty (every value missing), but the model was fitted on "
                          f"its values; fill it in, or score a table that has them")
