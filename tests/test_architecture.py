"""The layering ARCHITECTURE.md writes down, checked against every import in the
source, and every file ARCHITECTURE.md names checked to exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "ARCHITECTURE.md"


def layers() -> dict[str, int]:
    """Each folder or top-level module (its import name) and its layer, read from
    ARCHITECTURE.md's table, the one place the layers are written."""
    found: dict[str, int] = {}
    for row in re.finditer(r"^\| (\d+) \| ([^|]+) \|", ARCHITECTURE.read_text(), re.M):
        for name in re.findall(r"`([\w.]+?)(?:/|\.py)`", row.group(2)):
            found[name] = int(row.group(1))
    return found


def source_files(names: dict[str, int]) -> list[Path]:
    files = []
    for name in names:
        path = ROOT / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [ROOT / f"{name}.py"]
    return files


def unit_of(path: Path) -> str:
    """The layer table's name for a file: its top-level folder, or its module."""
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else path.stem


def imported_units(path: Path, text: str, names: dict[str, int]) -> set[tuple[str, int]]:
    """(unit, line) of every import of our own code in `path`, inside functions too."""
    found = set()
    for node in ast.walk(ast.parse(text, str(path))):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        for module in modules:
            top = module.split(".")[0]
            if top in names:
                found.add((top, node.lineno))
    return found


def layering_violations(planted: dict[Path, str] | None = None) -> list[str]:
    """Every import against the layering, in the source (and in `planted` files, as
    if they were there)."""
    names = layers()
    texts = {path: path.read_text() for path in source_files(names)} | (planted or {})
    violations = []
    for path, text in texts.items():
        unit = unit_of(path)
        for imported, line in sorted(imported_units(path, text, names)):
            if imported == unit:
                continue
            if names[imported] >= names[unit]:
                where = path.relative_to(ROOT)
                violations.append(
                    f"{where}:{line} imports {imported} (layer {names[imported]}) "
                    f"from layer {names[unit]}"
                )
    return violations


def test_the_table_names_every_folder_and_module_of_the_source():
    names = layers()
    assert {"core", "accounts", "events", "outbox", "fleet", "webhooks", "integrations"} <= set(
        names
    )
    tracked = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} | {
        p.stem for p in ROOT.glob("*.py")
    }
    assert tracked - {"tests", "bench", "migrations"} == set(names)


def test_no_import_runs_against_the_layering():
    assert layering_violations() == []


def test_the_check_sees_an_import_upwards_and_one_across():
    """The test above can fail: an upward import and one between two folders of
    the same layer are both reported."""
    planted = {
        ROOT / "events" / "_planted.py": "from fleet.models import Vehicle\n",
        ROOT / "webhooks" / "_planted.py": "def f():\n    import integrations.models\n",
    }
    found = "\n".join(layering_violations(planted))
    assert "events/_planted.py:1 imports fleet (layer 6) from layer 4" in found
    assert "webhooks/_planted.py:2 imports integrations (layer 7) from layer 7" in found


@pytest.mark.parametrize(
    "named",
    sorted(
        set(
            re.findall(r"`((?:[\w.-]+/)+[\w.-]*|[\w-]+\.(?:py|md|html))`", ARCHITECTURE.read_text())
        )
    ),
)
def test_every_file_architecture_md_names_exists(named):
    assert (ROOT / named).exists(), f"ARCHITECTURE.md names {named}, which is not there"


# The source's modules stay small enough to read in one sitting.
MAX_MODULE_LINES = 600


def long_modules() -> dict[str, int]:
    """Source and benchmark modules over MAX_MODULE_LINES, by path."""
    files = source_files(layers()) + sorted((ROOT / "bench").rglob("*.py"))
    sizes = {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in files}
    return {path: lines for path, lines in sizes.items() if lines > MAX_MODULE_LINES}


def test_no_module_is_over_600_lines():
    assert long_modules() == {}
