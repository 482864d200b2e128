"""What every reader shares to describe LLMs and tasks and to hand back its table.

- :func:`load_llm_catalogue` / :func:`load_task_descriptions`: the optional JSON LLM and task
  tables a reader may be given;
- :data:`TASK_DESCRIPTIONS`: built-in descriptions of the benchmark tasks;
- :func:`finish`: check the column names, order the columns, validate the table (errors name
  the source), check that no query text is in two splits, and build its LLM and task
  tables, sorted by name, so they do not depend on the order of rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from proute.data.readers._io import PathLike, as_number, existing_file, load_json, size_from_name
from proute.data.source_checks import check_column_names, check_cost_units
from proute.data.splits import check_query_disjoint
from proute.data.table import (
    OPTIONAL_COLUMNS,
    PERFORMANCE_RANGE,
    REQUIRED_COLUMNS,
    USER_COLUMN,
    DataError,
    RoutingData,
    make_llm_table,
    make_task_table,
    validate_table,
)

#: One sentence per benchmark: what it asks. Used for task node features; a task not listed
#: here is described by its name.
TASK_DESCRIPTIONS: dict[str, str] = {
    "math": (
        "MATH: competition mathematics problems (algebra, geometry, number theory, counting, "
        "precalculus) that need a worked solution ending in an exact answer."
    ),
    "gsm8k": (
        "GSM8K: grade-school math word problems requiring multi-step arithmetic reasoning "
        "to reach a numeric answer."
    ),
    "agentverse-mgsm": (
        "MGSM (AgentVerse): grade-school math word problems solved step by step, with the "
        "final number given in a box."
    ),
    "natural_qa": (
        "Natural Questions: real search-engine questions answered with a short factual span "
        "such as a name, date or place."
    ),
    "trivia_qa": ("TriviaQA: trivia questions answered from world knowledge with a short factual answer."),
    "mmlu": (
        "MMLU: multiple-choice questions across 57 academic and professional subjects "
        "testing broad knowledge and reasoning."
    ),
    "gpqa": (
        "GPQA: graduate-level multiple-choice questions in biology, physics and chemistry "
        "written by domain experts to resist web search."
    ),
    "commonsense_qa": (
        "CommonsenseQA: multiple-choice questions about everyday situations that need commonsense knowledge."
    ),
    "openbook_qa": (
        "OpenBookQA: multiple-choice elementary science questions that combine a core science "
        "fact with common knowledge."
    ),
    "arc_challenge": (
        "ARC-Challenge: hard multiple-choice grade-school science questions that simple "
        "retrieval and word matching fail on."
    ),
    "agentverse-logicgrid": (
        "Logic grid puzzles: deduce from a list of clues which house holds which person or "
        "attribute, then pick the right option."
    ),
    "mbpp": (
        "MBPP: write a short Python function from a one-sentence description; the answer is "
        "checked by unit tests."
    ),
    "human_eval": (
        "HumanEval: complete a Python function from its signature and docstring; the answer "
        "is checked by unit tests."
    ),
    "commongen": (
        "CommonGen: write a coherent sentence or short text that uses all of the given concept words."
    ),
}

#: Estimated output length (tokens) of an answer per task, for the dcrouter costs, which
#: come without token counts. What they rest on:
#: - short factual QA: measured on ``nq_router_data.json`` (real costs = tokens x price,
#:   prompt ~ query): the six LLMs answer Natural Questions in a mean of ~100 output tokens
#:   (medians 30-180, chatty models add explanations) -> 96;
#: - multiple choice: an option letter and usually a sentence of justification -> 64;
#: - commongen: one or two sentences over ~20 concept words -> 64;
#: - logic grid puzzles: a short deduction, then the option -> 128;
#: - math word problems (gsm8k, MATH, MGSM): a chain-of-thought solution -> 256;
#: - code (mbpp, human_eval): a function of 10-30 lines -> 256;


def load_llm_catalogue(path: PathLike) -> dict[str, dict[str, Any]]:
    """Read an LLM table from JSON: ``{name: {description|feature, input_price, ...}}``.

    The LLMRouter ``llm_candidates.json`` format works: ``feature`` is taken as the
    description when there is no ``description``; ``model`` (the API model id) is kept so
    readers can map API ids to names. Prices are in dollars per million tokens.
    """
    p = existing_file(path)
    raw = load_json(p)
    if not isinstance(raw, dict):
        raise DataError(
            f"file {p}: expected a JSON object {{llm_name: {{description, input_price, "
            f"output_price, size, family}}}}, got {type(raw).__name__}"
        )
    out: dict[str, dict[str, Any]] = {}
    for name, rec in raw.items():
        where = f"file {p}, key {name!r}"
        if not isinstance(rec, dict):
            raise DataError(
                f"{where}: expected an object with description/feature, input_price, "
                f"output_price, size; got {type(rec).__name__}"
            )
        entry: dict[str, Any] = {"description": rec.get("description") or rec.get("feature") or str(name)}
        for key in ("input_price", "output_price"):
            if rec.get(key) is not None:
                price = as_number(rec[key], where, repr(key))
                if price < 0:
                    raise DataError(f"{where}: field {key!r} is {price}; expected a price >= 0")
                entry[key] = price
        entry["size"] = str(rec["size"]) if rec.get("size") not in (None, "") else (size_from_name(str(name)))
        for key in ("family", "model"):
            if rec.get(key):
                entry[key] = str(rec[key])
        out[str(name)] = entry
    return out


def load_task_descriptions(path: PathLike) -> dict[str, str]:
    """Read task descriptions from JSON ``{task: description}``."""
    p = existing_file(path)
    raw = load_json(p)
    if not isinstance(raw, dict):
        raise DataError(f"file {p}: expected a JSON object {{task: description}}, got {type(raw).__name__}")
    for task, desc in raw.items():
        if not isinstance(desc, str):
            raise DataError(f"file {p}, key {task!r}: description is {desc!r}; expected text")
    return {str(k): v for k, v in raw.items()}


def llm_table(
    names: Iterable[str], catalogue: Mapping[str, Mapping[str, Any]]
) -> tuple[pd.DataFrame, list[str]]:
    """The LLM table for ``names`` (sorted) and the names missing from the catalogue.

    A name missing from the catalogue gets description = name, prices 0 and the size
    written in its name.
    """
    records: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for name in sorted(set(map(str, names))):
        if name in catalogue:
            records[name] = dict(catalogue[name])
        else:
            records[name] = {"description": name, "size": size_from_name(name)}
            missing.append(name)
    return make_llm_table(records), missing


def task_table(names: Iterable[str], descriptions: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The task table for ``names`` (sorted): description from ``descriptions``, else the
    built-in :data:`TASK_DESCRIPTIONS`, else the task name."""
    descriptions = descriptions or {}
    return make_task_table(
        {t: descriptions.get(t) or TASK_DESCRIPTIONS.get(t) or t for t in sorted(set(map(str, names)))}
    )


def order_columns(table: pd.DataFrame) -> pd.DataFrame:
    first = ([USER_COLUMN] if USER_COLUMN in table.columns else []) + list(REQUIRED_COLUMNS)
    first += list(OPTIONAL_COLUMNS)
    first = [c for c in first if c in table.columns]
    rest = [c for c in table.columns if c not in first]
    return table[first + rest]


def check_query_ids(table: pd.DataFrame, source: str) -> None:
    """Each ``query_id`` must name one query text."""
    first = table.groupby("query_id", sort=False)["query"].transform("first")
    bad = (table["query"] != first).to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        qid = table["query_id"].iloc[pos]
        raise DataError(
            f"{source}: row {table.index[pos]}: field 'query_id' is {qid!r}, which an earlier "
            "row uses for a different query text; expected one text per query_id"
        )


def _check_catalogue_covers(
    table: pd.DataFrame, source: str, missing: Sequence[str], catalogue_path: PathLike
) -> None:
    """An LLM table file given explicitly must list every LLM of the routing table."""
    if not missing:
        return
    llm = missing[0]
    rows = np.flatnonzero((table["llm"] == llm).to_numpy())
    n_rows = int(table["llm"].isin(set(missing)).sum())
    raise DataError(
        f"{source}: row {table.index[rows[0]]}: field 'llm' is {llm!r}, which is not in the LLM "
        f"table file {catalogue_path}; expected every LLM of the routing table there "
        f"({len(missing)} missing: {list(missing)[:5]}, {n_rows} rows): add them to "
        f"{catalogue_path}, or leave the LLM table out to describe each LLM by its name"
    )


def finish(
    table: pd.DataFrame,
    source: str,
    name: str,
    meta: dict[str, Any],
    catalogue: Mapping[str, Mapping[str, Any]] | None = None,
    task_descriptions: Mapping[str, str] | None = None,
    catalogue_path: PathLike | None = None,
    performance_range: Sequence[float] | None = PERFORMANCE_RANGE,
) -> RoutingData:
    """Validate ``table`` (errors name ``source``), build the LLM and task tables.

    ``catalogue_path``: the LLM table file the user gave (``llms_path``); every LLM of the
    table must then be in it (README, "Data"). Without it, LLMs missing from ``catalogue``
    are described by their name and listed in ``meta["llms_not_in_llm_table"]``.
    ``performance_range`` is the range ``performance`` must lie in; it is kept in ``meta``
    so the pipeline's later validation uses the same. Costs that look like another unit
    than dollars are a logged warning, kept in ``meta["cost_unit_warning"]``.
    """
    check_column_names(table.columns, source)
    table = order_columns(table)
    table = validate_table(
        table, source, require_users=USER_COLUMN in table.columns, performance_range=performance_range
    )
    if "split" in table.columns:
        check_query_disjoint(table, source)
    llms, no_entry = llm_table(table["llm"].unique(), catalogue or {})
    if catalogue_path is not None:
        _check_catalogue_covers(table, source, no_entry, catalogue_path)
    elif catalogue and no_entry:
        meta["llms_not_in_llm_table"] = no_entry
    if performance_range is None:
        meta["performance_range"] = None
    elif tuple(float(x) for x in performance_range) != PERFORMANCE_RANGE:
        meta["performance_range"] = [float(x) for x in performance_range]
    warning = check_cost_units(table, llms, source)
    if warning:
        meta["cost_unit_warning"] = warning
    tasks = task_table(table["task"].unique(), task_descriptions)
    return RoutingData(table=table, llms=llms, tasks=tasks, name=name, meta=meta)
