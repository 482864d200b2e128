"""One home per constant (issue 15): the task modes, the unknown-user policies and the
listwise temperature are each defined once; other modules import them. A second literal
definition in src/ fails here, naming the file and line."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "proute"

#: Files that still write a literal they should import, each to be fixed (then removed
#: here: a fixed file left in the list fails). Empty: every file imports its constants.
PENDING: dict[str, list[str]] = {}


def _sources() -> dict[str, str]:
    return {str(p.relative_to(SRC)): p.read_text() for p in sorted(SRC.rglob("*.py"))}


def _string_literals(text: str, values: set[str]) -> list[tuple[int, str]]:
    """(line, value) of each string token that is exactly one of ``values`` (docstrings and
    longer strings that mention them do not count)."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.STRING and tok.string[:1] in "\"'" and tok.string[1:-1] in values:
            if len(tok.string) == len(tok.string[1:-1]) + 2:
                out.append((tok.start[0], tok.string[1:-1]))
    return out


def _offenders(values: set[str], home: str) -> list[str]:
    """``file:line: 'value'`` for each literal outside ``home`` (and not excused by PENDING)."""
    return [
        f"{name}:{line}: {value!r}"
        for name, text in _sources().items()
        if name != home
        for line, value in _string_literals(text, values)
        if value not in PENDING.get(name, [])
    ]


def test_the_task_modes_have_one_home():
    found = _offenders({"hard", "soft"}, "router/task_inference.py")
    assert not found, (
        f"task modes written outside router/task_inference.py; import TASK_MODES, HARD, SOFT: {found}"
    )


def test_the_unknown_user_policies_have_one_home():
    # serving/schemas.py spells the wire format's enum out (pydantic's Literal needs literals)
    found = [o for o in _offenders({"average"}, "schema.py") if not o.startswith("serving/schemas.py:")]
    assert not found, f'"average" written outside schema.py; import UNKNOWN_USER_POLICIES: {found}'
    pattern = re.compile(r"""unknown_user\b[^\n]*(==|!=|=)\s*["']error["']""")
    lines = [
        f"{name}:{i}"
        for name, text in _sources().items()
        for i, line in enumerate(text.splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith("#") and "``" not in line
    ]
    assert not lines, f'unknown_user compared with or defaulting to "error"; use UNKNOWN_USER_ERROR: {lines}'


def test_pending_files_still_owe_their_fix():
    """The PENDING list only shrinks: a file fixed must leave it."""
    for name, values in PENDING.items():
        text = (SRC / name).read_text()
        assert {v for _, v in _string_literals(text, set(values))}, f"{name} is fixed: remove it from PENDING"


def test_the_listwise_temperature_has_one_definition_and_the_config_agrees():
    from proute.router.state import DEFAULT_LISTWISE_TEMPERATURE
    from proute.training.losses import LISTWISE_TEMPERATURE

    definition = re.compile(r"^\s*\w*LISTWISE_TEMPERATURE\s*(:\s*\w+\s*)?=\s*[\d.]", re.M)
    homes = [name for name, text in _sources().items() if definition.search(text)]
    assert homes == ["router/state.py"], homes
    assert LISTWISE_TEMPERATURE is DEFAULT_LISTWISE_TEMPERATURE
    conf = yaml.safe_load((ROOT / "conf" / "trainer" / "fullgraph.yaml").read_text())
    assert conf["listwise_temperature"] == DEFAULT_LISTWISE_TEMPERATURE, (
        "conf/trainer/fullgraph.yaml: listwise_temperature differs from "
        "proute.router.state.DEFAULT_LISTWISE_TEMPERATURE; change both or neither"
    )
