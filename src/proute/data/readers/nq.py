"""Reader of LLMRouter's Natural Questions routing data, ``nq_router_data.json`` (``dataset=nq``)."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

import pandas as pd

from proute.data.readers._io import (
    PathLike,
    as_number,
    as_text,
    existing_file,
    load_json,
    short,
    text_id,
)
from proute.data.readers._tables import finish, load_llm_catalogue
from proute.data.table import DataError, RoutingData

#: The task of every NQ row.
NQ_TASK = "natural_qa"


def _list_field(rec: Mapping[str, Any], key: str, where: str) -> list[Any]:
    """A list stored as a JSON list or as a Python-literal string (``ast.literal_eval``)."""
    if key not in rec:
        raise DataError(f"{where}: missing field {key!r}; expected a list")
    value = rec[key]
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise DataError(
                f"{where}: field {key!r} is {short(rec[key])!r}, not a list literal "
                f"({type(exc).__name__}); expected a list"
            ) from None
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{where}: field {key!r} is {short(value)!r}; expected a list")
    return list(value)


def _record_text(rec: Any, where: str, seen_text: dict[str, int], i: int) -> str:
    """The query text of record ``i``, which must not repeat an earlier record's text."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected an object, got {type(rec).__name__}")
    if "query" not in rec:
        raise DataError(f"{where}: missing field 'query'; expected the question text")
    text = as_text(rec["query"], where, "'query'")
    if text in seen_text:
        raise DataError(
            f"{where}: field 'query' repeats the text of record {seen_text[text]}; "
            "expected one record per query"
        )
    seen_text[text] = i
    return text


def _record_outcomes(
    rec: Mapping[str, Any],
    text: str,
    where: str,
    by_model: Mapping[str, str],
    cost_scale: float,
    ids: dict[str, str],
) -> list[tuple[str, str, float, float]]:
    """``(query, llm, performance, cost)`` per LLM of one record; records LLM -> API id."""
    models = _list_field(rec, "llm_name_list", where)
    costs = _list_field(rec, "cost_list", where)
    perfs = _list_field(rec, "perf_list", where)
    if not (len(models) == len(costs) == len(perfs)) or not models:
        raise DataError(
            f"{where}: fields 'llm_name_list', 'cost_list', 'perf_list' have lengths "
            f"{len(models)}, {len(costs)}, {len(perfs)}; expected equal, non-zero lengths"
        )
    rows: list[tuple[str, str, float, float]] = []
    names: set[str] = set()
    for k, (model, c, perf) in enumerate(zip(models, costs, perfs, strict=True)):
        if not isinstance(model, str) or not model.strip():
            raise DataError(f"{where}: field 'llm_name_list'[{k}] is {model!r}; expected a model id")
        llm = by_model.get(model) or model.rstrip("/").rsplit("/", 1)[-1]
        if llm in names:
            raise DataError(
                f"{where}: field 'llm_name_list'[{k}] ({model!r}) names LLM {llm!r} a "
                "second time; expected each LLM once per record"
            )
        names.add(llm)
        ids.setdefault(llm, model)
        cost = as_number(c, where, f"'cost_list'[{k}]")
        if cost < 0:
            raise DataError(f"{where}: field 'cost_list'[{k}] is {c!r}; expected a cost >= 0")
        rows.append((text, llm, as_number(perf, where, f"'perf_list'[{k}]"), cost * cost_scale))
    return rows


def read_nq(
    path: PathLike,
    candidates_path: PathLike | None = None,
    cost_scale: float = 1.0,
    name: str = "nq",
) -> RoutingData:
    """Read ``nq_router_data.json``: Natural Questions records with real LLM outcomes.

    Each record has ``query`` and parallel lists ``llm_name_list`` (API model ids such as
    ``qwen/qwen2.5-7b-instruct``), ``cost_list`` and ``perf_list``, stored either as JSON
    lists (the bundled copy) or as Python-literal strings (parsed with
    :func:`ast.literal_eval`, never ``eval``). One row per (record, LLM); task =
    ``natural_qa``.

    - LLM names: an id is mapped to the candidate whose ``model`` field in
      ``candidates_path`` (``llm_candidates.json``) equals it, else to the id's last path
      part (``google/gemma-2-27b-it`` -> ``gemma-2-27b-it``). LLMs not in the candidates get
      description = name, prices 0 and the size written in the name.
    - Cost: the real ``cost_list`` values times ``cost_scale``. In the bundled file they are
      tokens x (dollars per million tokens), i.e. micro-dollars: ``cost_scale=1e-6`` gives
      dollars.
    - A query text must occur once; an LLM once per record.
    """
    p = existing_file(path)
    raw = load_json(p)
    if not isinstance(raw, list):
        raise DataError(f"file {p}: expected a JSON list of records, got {type(raw).__name__}")
    catalogue = load_llm_catalogue(candidates_path) if candidates_path is not None else {}
    by_model = {str(rec["model"]): llm for llm, rec in catalogue.items() if rec.get("model")}

    rows: list[tuple[str, str, float, float]] = []
    seen_text: dict[str, int] = {}
    ids: dict[str, str] = {}
    for i, rec in enumerate(raw):
        where = f"file {p}, record {i}"
        text = _record_text(rec, where, seen_text, i)
        rows += _record_outcomes(rec, text, where, by_model, cost_scale, ids)
    if not rows:
        raise DataError(f"file {p}: no records")

    table = pd.DataFrame(rows, columns=["query", "llm", "performance", "cost"])
    table.insert(0, "query_id", table["query"].map(text_id))
    table.insert(2, "task", NQ_TASK)
    meta: dict[str, Any] = {
        "source": str(p),
        "n_records": len(raw),
        "task": NQ_TASK,
        "llm_model_ids": dict(sorted(ids.items())),
        "cost": {
            "unit": "cost_list as stored x cost_scale (bundled file: micro-dollars, i.e. "
            "tokens x dollars per million tokens)",
            "cost_scale": float(cost_scale),
        },
    }
    data = finish(table, f"file {p}", name, meta, catalogue=catalogue)
    if catalogue:
        data.meta["llms_not_in_candidates"] = data.meta.pop("llms_not_in_llm_table", [])
    return data
