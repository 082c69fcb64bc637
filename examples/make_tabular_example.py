"""Write the mixed-type example tables used by the README quick start.

``examples/data/visits.csv``: 2,000 clinic visits (department, visit type,
weekday, triage level, insurance, age, wait minutes) whose columns depend on
each other. ``examples/data/visits_new.csv``: 200 new visits, 10 of them
anomalous (impossible combinations or extreme values), with an ``is_anomaly``
column for checking.

Run: ``python examples/make_tabular_example.py``
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DEPARTMENTS = {"cardiology": ["ecg", "echo", "consult"], "radiology": ["ct", "mri", "xray"],
               "paediatrics": ["vaccination", "consult", "checkup"]}
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def normal_visits(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Visits that follow the clinic's usual patterns."""
    department = rng.choice(list(DEPARTMENTS), n, p=[0.3, 0.45, 0.25])
    visit = [rng.choice(DEPARTMENTS[d]) for d in department]
    age = np.where(department == "paediatrics", rng.uniform(0, 16, n), rng.normal(58, 14, n).clip(18, 95))
    triage = np.where(np.isin(visit, ["ct", "mri", "ecg"]), rng.integers(2, 4, n), rng.integers(3, 6, n))
    wait = rng.gamma(2.0, 8.0 + 4.0 * (department == "radiology"), n)
    return pd.DataFrame({
        "visit_id": [f"V{100000 + i}" for i in range(n)], "department": department, "visit_type": visit,
        "weekday": rng.choice(WEEKDAYS, n), "triage": triage,
        "insurance": rng.choice(["public", "private"], n, p=[0.7, 0.3]),
        "age": age.round(1), "wait_minutes": wait.round(1)})


def main(out: Path = Path(__file__).parent / "data", seed: int = 0) -> None:
    """Write the training table and the table to score."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    normal_visits(2000, rng).to_csv(out / "visits.csv", index=False)
    new = normal_visits(200, rng)
    new["visit_id"] = [f"N{100000 + i}" for i in range(len(new))]
    anomalous = rng.choice(len(new), 10, replace=False)
    for k, row in enumerate(anomalous):
        if k % 3 == 0:
            new.loc[row, ["department", "visit_type", "age"]] = ["paediatrics", "mri", 71.0]
        elif k % 3 == 1:
            new.loc[row, ["department", "visit_type"]] = ["cardiology", "vaccination"]
        else:
            new.loc[row, "wait_minutes"] = 600.0
    new["is_anomaly"] = np.isin(np.arange(len(new)), anomalous)
    new.to_csv(out / "visits_new.csv", index=False)


if __name__ == "__main__":
    main()
