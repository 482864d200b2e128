"""README's "Where things live" map is current: every package folder and root module of
``src/proute`` has a row, and every path the map names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "proute"
TOP_LEVEL = ("src/", "conf/", "scripts/", "tests/", "notebooks/", "experiments/", "data/")


def map_section(readme: str) -> str:
    start = readme.index("## Where things live")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def row_paths(section: str) -> list[str]:
    """The first cell of each table row: the path the row is about."""
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.match(r"\| `([^`]+)`", line).group(1) for line in rows]


def unmapped(paths: list[str]) -> list[str]:
    """Package folders and root modules of src/proute that no row names."""
    wanted = [f"src/proute/{p.name}/" for p in sorted(PACKAGE.iterdir()) if (p / "__init__.py").is_file()]
    wanted += [f"src/proute/{p.name}" for p in sorted(PACKAGE.glob("*.py")) if p.name != "__init__.py"]
    return [w for w in wanted if w not in paths]


def test_every_package_folder_and_root_module_has_a_row():
    missing = unmapped(row_paths(map_section((ROOT / "README.md").read_text())))
    assert not missing, f"README.md 'Where things live' has no row for {missing}"


def test_every_path_the_map_names_exists():
    section = map_section((ROOT / "README.md").read_text())
    named = [p for p in re.findall(r"`([^`\s]+)`", section) if p.startswith(TOP_LEVEL)]
    assert len(named) >= 10
    gone = [p for p in named if not (ROOT / p).exists()]
    assert not gone, f"README.md 'Where things live' names paths that do not exist: {gone}"


def test_the_check_sees_a_missing_row():
    assert "src/proute/router/" in unmapped(["src/proute/serving/"])
