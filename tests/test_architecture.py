"""The house rules of docs/architecture.md, checked on the code: imports point down the floors, modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "segqc"
FLOORS = {
    0: ("errors", "fields", "jsonable", "atomic", "threads", "torchfile", "config", "outputs", "presets", "noise",
        "losses", "csvfiles", "inputs", "signals", "manifests", "metrics", "verdicts"),
    1: ("nets", "data", "synthetic", "density", "bundle", "history", "marginals", "evidence", "contamination"),
    2: ("scoremodels", "fitting", "quality"),
    3: ("detectors", "segmenters"),
    4: ("report",),
    5: ("jobs",),
    6: ("cli", "__main__"),
}
"""Each top-level module or package of segqc and its floor: a module imports only from its floor and below."""
MAX_LINES = 500


def floor_of(dotted: str) -> int:
    """The floor of ``segqc.<name>...``."""
    top = dotted.split(".")[1]
    return next(level for level, names in FLOORS.items() if top in names)


def modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if path != PACKAGE / "__init__.py")


def imported_segqc_modules(path: Path) -> set[str]:
    """Every ``segqc.x`` module imported anywhere in a file (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("segqc."):
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module == "segqc":
            found.update(f"segqc.{alias.name}" for alias in node.names if alias.name != "__version__")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("segqc."))
    return found


def dotted(path: Path) -> str:
    return ".".join(("segqc", *path.relative_to(PACKAGE).with_suffix("").parts))


def test_every_module_has_a_floor() -> None:
    for path in modules():
        floor_of(dotted(path))  # raises StopIteration for a module the map does not know


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    own = floor_of(dotted(path))
    upward = sorted(name for name in imported_segqc_modules(path) if floor_of(name) > own)
    assert not upward, f"{dotted(path)} (floor {own}) imports from a higher floor: {upward}"


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines; split it by concept"
