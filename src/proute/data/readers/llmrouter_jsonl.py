"""Reader of the LLMRouter library's routing JSONL, one line per (query, model)
(``dataset=llmrouter_jsonl``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from proute.data.readers._io import (
    PathLike,
    as_number,
    as_text,
    existing_file,
    iter_jsonl,
    text_id,
    user_ids,
)
from proute.data.readers._tables import finish, load_llm_catalogue
from proute.data.table import PERFORMANCE_RANGE, USER_COLUMN, DataError, RoutingData

log = logging.getLogger(__name__)

#: The task of a line without ``task_name`` / ``task``.
DEFAULT_TASK = "default"


def _line_row(obj: dict[str, Any], where: str) -> dict[str, Any]:
    """The table row of one line; ``cost`` / ``task`` are ``None`` when the line has none."""
    if "query" not in obj:
        raise DataError(f"{where}: missing field 'query'; expected the query text")
    text = as_text(obj["query"], where, "'query'")
    key = "model_name" if "model_name" in obj else "llm"
    if key not in obj:
        raise DataError(f"{where}: missing field 'model_name' (or 'llm'); expected the LLM")
    llm = as_text(obj[key], where, repr(key))
    if "performance" not in obj:
        raise DataError(f"{where}: missing field 'performance'; expected a number")
    row: dict[str, Any] = {
        "query_id": text_id(text),
        "query": text,
        "llm": llm,
        "performance": as_number(obj["performance"], where, "'performance'"),
    }
    row["cost"] = None if obj.get("cost") is None else as_number(obj["cost"], where, "'cost'")
    task = obj.get("task_name", obj.get("task"))
    blank = task is None or (isinstance(task, str) and not task.strip())
    row["task"] = None if blank else str(task)
    return row


def _read_lines(p: Path) -> tuple[list[dict[str, Any]], list[int], int, int]:
    """The rows of a routing JSONL, their line numbers and the counts of lines without a
    cost (given 0.0) and without a task (given ``"default"``)."""
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    n_missing_cost = n_missing_task = 0
    has_users: bool | None = None
    for lineno, obj in iter_jsonl(p):
        where = f"file {p}, line {lineno}"
        row = _line_row(obj, where)
        if row["cost"] is None:
            n_missing_cost += 1
            row["cost"] = 0.0
        if row["task"] is None:
            n_missing_task += 1
            row["task"] = DEFAULT_TASK
        line_has_user = obj.get(USER_COLUMN) is not None
        if has_users is None:
            has_users = line_has_user
        elif line_has_user != has_users:
            raise DataError(
                f"{where}: field 'user_id' is {'present' if line_has_user else 'missing'}, "
                f"unlike line {lines[0]}; expected user_id on every line or on none"
            )
        if line_has_user:
            row[USER_COLUMN] = obj[USER_COLUMN]
        if obj.get("reward") is not None:
            row["reward"] = as_number(obj["reward"], where, "'reward'")
        if obj.get("split") is not None:
            row["split"] = obj["split"]
        rows.append(row)
        lines.append(lineno)
    if not rows:
        raise DataError(f"file {p}: no records")
    return rows, lines, n_missing_cost, n_missing_task


def read_llmrouter_jsonl(
    path: PathLike,
    candidates_path: PathLike | None = None,
    name: str | None = None,
    performance_range: Sequence[float] | None = PERFORMANCE_RANGE,
) -> RoutingData:
    """Read the LLMRouter library's routing JSONL: one line per (query, model).

    Fields per line: ``query``, ``model_name`` (or ``llm``), ``performance``; optional
    ``cost`` (missing -> 0.0, counted in ``meta["n_missing_cost"]``), ``task_name`` (or
    ``task``; missing -> ``"default"``), ``user_id`` (on every line or on none), ``reward``
    and ``split``. Other fields are ignored. The LLM table comes from ``candidates_path``
    (``llm_candidates.json`` format) when given, else from the names; an LLM the candidates
    do not list (a local model) is described by its name, as LLMRouter's candidates list
    only API models, and listed in ``meta["llms_not_in_llm_table"]``. ``performance`` must
    lie in ``performance_range`` (default [0, 1]). The index is the line number.
    """
    p = existing_file(path)
    source = f"file {p}"
    rows, lines, n_missing_cost, n_missing_task = _read_lines(p)
    table = pd.DataFrame(rows, index=pd.Index(lines, name="row"))
    if USER_COLUMN in table.columns:
        table[USER_COLUMN] = user_ids(table[USER_COLUMN], source)
    meta: dict[str, Any] = {
        "source": str(p),
        "n_missing_cost": n_missing_cost,
        "n_missing_task": n_missing_task,
    }
    if n_missing_cost:
        meta["cost_note"] = f"{n_missing_cost} of {len(rows)} lines have no cost; their cost is 0.0"
        log.warning("%s: %s", source, meta["cost_note"])
    catalogue = load_llm_catalogue(candidates_path) if candidates_path is not None else {}
    return finish(
        table, source, name or p.stem, meta, catalogue=catalogue, performance_range=performance_range
    )
