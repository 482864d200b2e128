"""The house's size limits and layering, read from the source with :mod:`ast` (nothing is
imported or run).

- No module in ``src/`` over :data:`MAX_MODULE_LINES` lines, no class over
  :data:`MAX_CLASS_LINES`, no function or method over :data:`MAX_FUNCTION_LINES` (a
  function's lines are ``end_lineno - lineno + 1``: decorators not counted, the docstring
  counted); each file in ``scripts/`` at most :data:`MAX_SCRIPT_LINES` lines (entry points
  only: the logic lives in the package).
- The layering: a lower room never imports a higher one, at module level or inside a
  function (a function-local import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "proute"

MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_SCRIPT_LINES = 100

#: room -> the rooms it must never import. A room is a subpackage (``proute.data``) or a
#: root module (``proute.train``); ``proute.config`` is left out: its registry check imports
#: the registries of every room on purpose (function-local, see ``proute.config.checks``).
FORBIDDEN: dict[str, set[str]] = {
    "schema": {"data", "graph", "models", "baselines", "router", "training", "evaluation", "serving"},
    "_deps": {"data", "graph", "models", "baselines", "router", "training", "evaluation", "serving"},
    "data": {"graph", "models", "baselines", "router", "training", "evaluation", "serving", "train", "cli"},
    "graph": {"models", "baselines", "router", "training", "evaluation", "serving", "train", "cli"},
    "models": {"baselines", "router", "training", "evaluation", "serving", "train", "cli"},
    "router": {"training", "serving", "store", "train", "cli"},
    "store": {"training", "serving", "train", "cli"},
    "serving": {"training", "train"},
}


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def _where(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _size_offenders() -> list[str]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        n = _lines(path)
        if n > MAX_MODULE_LINES:
            out.append(f"{_where(path)}:1 module: {n} lines (max {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ClassDef):
                kind, limit = "class", MAX_CLASS_LINES
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                kind, limit = "function", MAX_FUNCTION_LINES
            else:
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                out.append(f"{_where(path)}:{node.lineno} {kind} {node.name}: {length} lines (max {limit})")
    return out


#: Rooms still over the limits while issue 15 is open: a ratchet, not an exemption. A new
#: offender fails the test, and so does a listed one that has been fixed (remove it here),
#: so this list only shrinks. Keys: "path kind name" (no line numbers or lengths).
KNOWN_OFFENDERS: set[str] = set()


def _key(offender: str) -> str:
    """``"path:line kind name: ..."`` -> ``"path kind name"``; a module's name is its file."""
    where, _, rest = offender.partition(" ")
    path = where.split(":")[0]
    if rest.startswith("module"):
        return f"{path} module {Path(path).name}"
    return f"{path} {' '.join(rest.split(':')[0].split()[:2])}"


def _check_ratchet(offenders: list[str], known: set[str]) -> None:
    new = [o for o in offenders if _key(o) not in known]
    fixed = sorted(known - {_key(o) for o in offenders})
    msg = []
    if new:
        msg.append(f"{len(new)} over the size limits:\n" + "\n".join(new))
    if fixed:
        msg.append("now within the limits, remove from KNOWN_OFFENDERS:\n" + "\n".join(fixed))
    if msg:
        pytest.fail("\n".join(msg), pytrace=False)


def test_modules_classes_and_functions_stay_small():
    known = {k for k in KNOWN_OFFENDERS if k.startswith("src/")}
    _check_ratchet(_size_offenders(), known)


def test_the_ratchet_catches_new_and_fixed_offenders():
    with pytest.raises(pytest.fail.Exception, match="1 over the size limits"):
        _check_ratchet(["src/proute/x.py:3 function f: 61 lines (max 60)"], set())
    with pytest.raises(pytest.fail.Exception, match="remove from KNOWN_OFFENDERS"):
        _check_ratchet([], {"src/proute/x.py function f"})
    _check_ratchet(["src/proute/x.py:1 module: 401 lines (max 400)"], {"src/proute/x.py module x.py"})


def test_scripts_are_thin_entry_points():
    offenders = {
        _where(p): f"{_where(p)}: {_lines(p)} lines (max {MAX_SCRIPT_LINES})"
        for p in sorted((ROOT / "scripts").glob("*.py"))
        if _lines(p) > MAX_SCRIPT_LINES
    }
    new = [msg for path, msg in offenders.items() if path not in KNOWN_OFFENDERS]
    fixed = sorted(k for k in KNOWN_OFFENDERS if k.startswith("scripts/") and k not in offenders)
    if new or fixed:
        pytest.fail(
            f"scripts holding package logic: {new}; now thin, remove from KNOWN_OFFENDERS: {fixed}",
            pytrace=False,
        )


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (module level and inside functions), with its line;
    relative imports resolved against the module's package."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.append((node.lineno, base))
            # ``from proute import router`` imports the room ``router``
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if base == "proute"]
    return out


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "proute" else None


def test_rooms_import_only_downwards():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        room = _room(_module_name(path))
        for lineno, target in _imports(path):
            other = _room(target)
            if room in FORBIDDEN and other in FORBIDDEN[room]:
                offenders.append(f"{_where(path)}:{lineno} proute.{room} imports {target}")
    if offenders:
        pytest.fail("imports against the layering:\n" + "\n".join(offenders), pytrace=False)


def test_the_checks_see_what_they_check():
    """The checks are not vacuous: they find the package, its functions and its imports."""
    files = list(PACKAGE.rglob("*.py"))
    assert len(files) > 30
    assert any(target == "proute.data.table" for f in files for _, target in _imports(f))
    assert _room("proute.graph.builder") == "graph" and _room("proute.train") == "train"
