"""Readers: turn each source format into a :class:`~proute.data.table.RoutingData`.

Every reader returns a validated :class:`RoutingData` whose table has the columns
``query_id, query, task, llm, performance, cost`` (see :mod:`proute.data.table`), plus
``user_id`` only when the source has users and ``reward`` / ``split`` when the source has
them. Hydra builds a reader from ``conf/dataset/<name>.yaml`` through ``_target_``.

Conventions shared by all readers:

- ``query_id`` is :func:`text_id` of the exact query text, so the same text gets the same
  id in every source and every run.
- Every error is a :class:`~proute.data.table.DataError` naming the file, the record / line /
  row / key, the field and what was expected, e.g.
  ``file data.jsonl, line 12: invalid JSON: Expecting ',' delimiter (column 40)``.
- The table's index says where a row came from: the 1-based line number for JSONL sources,
  the 1-based data row number for CSV and Parquet sources (the header is not counted), so the
  messages of :func:`~proute.data.table.validate_table` name the row of the file. Sources with
  one JSON record per *query* and several rows per record (the dcrouter files, the NQ file)
  are checked record by record while they are parsed (messages say ``record i``, 0-based, as
  a position in the JSON list) and get a plain unique ``RangeIndex``: a record index repeated
  on every LLM's row would make the index non-unique.
- The LLM and task tables hold exactly the LLMs and tasks of the routing table, sorted by
  name, so they do not depend on the order of rows in the file.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from proute.data.table import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    USER_COLUMN,
    DataError,
    RoutingData,
    make_llm_table,
    make_task_table,
    validate_table,
)
from proute.data.users import cost_efficiency_reward, normalize_cost

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "NATIVE_SUFFIXES",
    "TASK_DESCRIPTIONS",
    "load_llm_catalogue",
    "load_task_descriptions",
    "read_llmrouter",
    "read_llmrouter_jsonl",
    "read_nq",
    "read_personalizedrouter_csv",
    "read_table",
    "text_id",
]

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: File suffixes :func:`read_table` understands.
NATIVE_SUFFIXES = (".csv", ".jsonl", ".parquet")

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
    "trivia_qa": (
        "TriviaQA: trivia questions answered from world knowledge with a short factual answer."
    ),
    "mmlu": (
        "MMLU: multiple-choice questions across 57 academic and professional subjects "
        "testing broad knowledge and reasoning."
    ),
    "gpqa": (
        "GPQA: graduate-level multiple-choice questions in biology, physics and chemistry "
        "written by domain experts to resist web search."
    ),
    "commonsense_qa": (
        "CommonsenseQA: multiple-choice questions about everyday situations that need "
        "commonsense knowledge."
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
        "CommonGen: write a coherent sentence or short text that uses all of the given "
        "concept words."
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
#: - ``default`` (any other task) -> 96.
#: Only the relative cost of LLMs and queries within a task matters to the paper's users
#: (cost is min-max normalised within each task); these set its query-to-query spread.
DEFAULT_OUTPUT_TOKENS: dict[str, int] = {
    "mmlu": 64,
    "gpqa": 64,
    "commonsense_qa": 64,
    "openbook_qa": 64,
    "arc_challenge": 64,
    "natural_qa": 96,
    "trivia_qa": 96,
    "commongen": 64,
    "agentverse-logicgrid": 128,
    "gsm8k": 256,
    "math": 256,
    "agentverse-mgsm": 256,
    "mbpp": 256,
    "human_eval": 256,
    "default": 96,
}

_DUPLICATE_RULES = ("mean", "first")


# --------------------------------------------------------------------------- helpers


def text_id(text: str) -> str:
    """The stable id of a query text: ``"q"`` + the first 16 hex digits of its SHA-1.

    The text is hashed exactly as given (UTF-8, no stripping or case folding), so two
    sources share a ``query_id`` exactly when they share the text.

    >>> text_id("hello")
    'qaaf4c61ddcc5e8a2'
    """
    return "q" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _existing_file(path: PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a folder" if p.is_dir() else "not found"
        raise DataError(f"file {p}: {what}; expected a data file")
    return p


def _load_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"file {path}, line {exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"file {path}: not UTF-8 text ({exc})") from None


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line (1-based line numbers)."""
    try:
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line.rstrip("\r\n"))
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"file {path}, line {lineno}: invalid JSON: {exc.msg} "
                        f"(column {exc.colno})"
                    ) from None
                if not isinstance(obj, dict):
                    raise DataError(
                        f"file {path}, line {lineno}: expected a JSON object per line, "
                        f"got {type(obj).__name__}"
                    )
                yield lineno, obj
    except UnicodeDecodeError as exc:
        raise DataError(f"file {path}: not UTF-8 text ({exc})") from None


def _number(value: Any, where: str, field: str) -> float:
    """A finite float from a JSON value (a number or a numeric string), else DataError."""
    if isinstance(value, bool) or value is None:
        raise DataError(f"{where}: field {field} is {value!r}; expected a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: field {field} is {value!r}; expected a number") from None
    if not math.isfinite(x):
        raise DataError(f"{where}: field {field} is {value!r}; expected a finite number")
    return x


def _text(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field {field} is {_short(value)!r}; expected non-empty text")
    return value


def _short(value: Any, n: int = 60) -> Any:
    if isinstance(value, str) and len(value) > n:
        return value[:n] + "..."
    return value


def _column_floats(series: pd.Series, source: str, field: str, finite: bool = False) -> np.ndarray:
    """Parse a column to floats; a value that is not a number raises naming its row."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        out = series.to_numpy(dtype=float)
    else:
        out = np.empty(len(series), dtype=float)
        for pos, value in enumerate(series.tolist()):
            try:
                if isinstance(value, bool):
                    raise TypeError
                out[pos] = float(value)
            except (TypeError, ValueError):
                raise DataError(
                    f"{source}: row {series.index[pos]}: field {field!r} is {value!r}; "
                    "expected a number"
                ) from None
    if finite:
        bad = ~np.isfinite(out)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: row {series.index[pos]}: field {field!r} is "
                f"{series.iloc[pos]!r}; expected a finite number"
            )
    return out


_INT_TEXT = re.compile(r"-?(0|[1-9][0-9]*)")


def _user_ids(series: pd.Series) -> pd.Series:
    """User ids as int64 when every id is an integer (as number or digits), else as str.

    The same ids read from CSV (text), JSONL (numbers) or Parquet (typed) come out equal.
    Missing ids stay missing (``validate_table`` reports them).
    """
    if series.isna().any():
        return series
    if pd.api.types.is_integer_dtype(series):
        return series.astype("int64")
    values = series.tolist()
    if all(
        (isinstance(v, (int, np.integer)) and not isinstance(v, bool))
        or (isinstance(v, str) and _INT_TEXT.fullmatch(v) is not None)
        for v in values
    ):
        return pd.Series([int(v) for v in values], index=series.index, dtype="int64")
    return series.astype(str)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _blank_to_na(series: pd.Series) -> pd.Series:
    """Empty or whitespace-only text ids become missing, so validation names them."""
    if pd.api.types.is_numeric_dtype(series):
        return series
    blank = series.map(lambda v: isinstance(v, str) and not v.strip())
    return series.mask(blank.astype(bool))


def _size_from_name(name: str) -> str:
    """The parameter count written in a model name (``gemma-2-27b-it`` -> ``27B``), or ``""``."""
    m = re.search(r"(?<![a-z0-9.])(\d+(?:\.\d+)?(?:x\d+(?:\.\d+)?)?)b(?![a-z])", name.lower())
    return m.group(1) + "B" if m else ""


def load_llm_catalogue(path: PathLike) -> dict[str, dict[str, Any]]:
    """Read an LLM table from JSON: ``{name: {description|feature, input_price, ...}}``.

    The LLMRouter ``llm_candidates.json`` format works: ``feature`` is taken as the
    description when there is no ``description``; ``model`` (the API model id) is kept so
    readers can map API ids to names. Prices are in dollars per million tokens.
    """
    p = _existing_file(path)
    raw = _load_json(p)
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
        entry: dict[str, Any] = {
            "description": rec.get("description") or rec.get("feature") or str(name)
        }
        for key in ("input_price", "output_price"):
            if rec.get(key) is not None:
                price = _number(rec[key], where, repr(key))
                if price < 0:
                    raise DataError(f"{where}: field {key!r} is {price}; expected a price >= 0")
                entry[key] = price
        entry["size"] = str(rec["size"]) if rec.get("size") not in (None, "") else (
            _size_from_name(str(name))
        )
        for key in ("family", "model"):
            if rec.get(key):
                entry[key] = str(rec[key])
        out[str(name)] = entry
    return out


def load_task_descriptions(path: PathLike) -> dict[str, str]:
    """Read task descriptions from JSON ``{task: description}``."""
    p = _existing_file(path)
    raw = _load_json(p)
    if not isinstance(raw, dict):
        raise DataError(
            f"file {p}: expected a JSON object {{task: description}}, got {type(raw).__name__}"
        )
    for task, desc in raw.items():
        if not isinstance(desc, str):
            raise DataError(
                f"file {p}, key {task!r}: description is {desc!r}; expected text"
            )
    return {str(k): v for k, v in raw.items()}


def _llm_table(
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
            records[name] = {"description": name, "size": _size_from_name(name)}
            missing.append(name)
    return make_llm_table(records), missing


def _task_table(
    names: Iterable[str], descriptions: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The task table for ``names`` (sorted): description from ``descriptions``, else the
    built-in :data:`TASK_DESCRIPTIONS`, else the task name."""
    descriptions = descriptions or {}
    return make_task_table(
        {
            t: descriptions.get(t) or TASK_DESCRIPTIONS.get(t) or t
            for t in sorted(set(map(str, names)))
        }
    )


def _order_columns(table: pd.DataFrame) -> pd.DataFrame:
    first = ([USER_COLUMN] if USER_COLUMN in table.columns else []) + list(REQUIRED_COLUMNS)
    first += list(OPTIONAL_COLUMNS)
    first = [c for c in first if c in table.columns]
    rest = [c for c in table.columns if c not in first]
    return table[first + rest]


def _check_query_ids(table: pd.DataFrame, source: str) -> None:
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


def _finish(
    table: pd.DataFrame,
    source: str,
    name: str,
    meta: dict[str, Any],
    catalogue: Mapping[str, Mapping[str, Any]] | None = None,
    task_descriptions: Mapping[str, str] | None = None,
) -> RoutingData:
    """Validate ``table`` (errors name ``source``), build the LLM and task tables."""
    table = _order_columns(table)
    table = validate_table(table, source, require_users=USER_COLUMN in table.columns)
    llms, no_entry = _llm_table(table["llm"].unique(), catalogue or {})
    if catalogue and no_entry:
        meta["llms_not_in_llm_table"] = no_entry
    tasks = _task_table(table["task"].unique(), task_descriptions)
    return RoutingData(table=table, llms=llms, tasks=tasks, name=name, meta=meta)


# --------------------------------------------------------------------------- llmrouter


def _pick_task(candidates: Iterable[str], n_texts: Mapping[str, int]) -> str:
    """Among the tasks a text is listed under, the one with the fewest distinct texts in the
    query files (the more specific benchmark), ties broken by name."""
    return min(candidates, key=lambda t: (n_texts[t], t))


def _query_tasks(paths: list[Path]) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Map each query text of the query files to its candidate tasks (sorted), and count the
    distinct texts of each task."""
    candidates: dict[str, set[str]] = defaultdict(set)
    texts: dict[str, set[str]] = defaultdict(set)
    for p in paths:
        for lineno, obj in _iter_jsonl(p):
            where = f"file {p}, line {lineno}"
            if "task_name" not in obj:
                raise DataError(f"{where}: missing field 'task_name'; expected the task's name")
            if "query" not in obj:
                raise DataError(f"{where}: missing field 'query'; expected the query text")
            task = _text(obj["task_name"], where, "'task_name'")
            query = obj["query"]
            if not isinstance(query, str):
                raise DataError(f"{where}: field 'query' is {query!r}; expected text")
            candidates[query].add(task)
            texts[task].add(query)
    return {q: sorted(ts) for q, ts in candidates.items()}, {t: len(s) for t, s in texts.items()}


def _output_token_table(output_tokens: Mapping[str, Any] | None) -> dict[str, float]:
    table = dict(DEFAULT_OUTPUT_TOKENS if output_tokens is None else output_tokens)
    out: dict[str, float] = {}
    for task, n in table.items():
        value = _number(n, "output_tokens", repr(str(task)))
        if value < 0:
            raise DataError(f"output_tokens: field {str(task)!r} is {n!r}; expected a count >= 0")
        out[str(task)] = value
    return out


def _dcrouter_record(rec: Any, where: str) -> tuple[str, dict[str, float]]:
    if not isinstance(rec, dict):
        raise DataError(
            f"{where}: expected an object {{question, scores}}, got {type(rec).__name__}"
        )
    for key in ("question", "scores"):
        if key not in rec:
            raise DataError(
                f"{where}: missing field {key!r}; expected {{question, scores: {{llm: score}}}}"
            )
    text = _text(rec["question"], where, "'question'")
    scores = rec["scores"]
    if not isinstance(scores, dict) or not scores:
        raise DataError(
            f"{where}: field 'scores' is {_short(scores)!r}; expected a non-empty object "
            "{llm: score}"
        )
    return text, {str(k): _number(v, where, f"'scores'[{k!r}]") for k, v in scores.items()}


def read_llmrouter(
    data_dir: PathLike,
    output_tokens: Mapping[str, Any] | None = None,
    chars_per_token: float = 4.0,
    duplicate_rule: str = "mean",
    name: str = "llmrouter",
) -> RoutingData:
    """Read the LLMRouter dcrouter benchmark (the project's default dataset).

    Files in ``data_dir``: ``dcrouter_train.json`` and ``dcrouter_test.json`` (lists of
    ``{question, scores: {llm: quality}}``), ``query_train.jsonl`` and ``query_test.jsonl``
    (``task_name`` and ``query`` per line) and ``llm_candidates.json`` (prices).

    Rules:

    - **Tasks**: each dcrouter record is joined to the query files on the *exact* question
      text. A record whose text is in no query file is an error.
    - **Texts under several tasks** (six in the bundled data, always ``mmlu`` and another):
      the task with the fewest distinct texts in the query files wins (the more specific
      benchmark), ties broken by name. In the bundled data this gives ``openbook_qa`` (549
      texts) over ``mmlu`` (550) for four texts and ``arc_challenge`` over ``mmlu`` (550 each,
      tie broken by name) for two.
    - **Duplicate texts** (the same question in more than one record; 119 texts occur in
      both dcrouter files): one query. ``duplicate_rule="mean"`` averages each LLM's score
      over the records that have it; ``"first"`` keeps the first record (train file first).
      The bundled data gives 5,989 queries x 9 LLMs = 53,901 rows over 14 tasks.
    - **Cost** in dollars: ``(in_tokens * input_price + out_tokens * output_price) / 1e6``
      with prices per million tokens from ``llm_candidates.json``,
      ``in_tokens = ceil(len(query) / chars_per_token)`` and ``out_tokens =
      output_tokens[task]`` (else ``output_tokens["default"]``; see
      :data:`DEFAULT_OUTPUT_TOKENS`). The query text does not hold the answer options of
      multiple-choice tasks, so their input is underestimated by a few tokens.
    - **LLM table**: the LLMs present in the scores, with description = ``feature``, prices
      and size from ``llm_candidates.json``; a scored LLM missing there is an error (its
      price is needed). **Task table**: :data:`TASK_DESCRIPTIONS`, else the task name.

    ``meta`` records the rules used: duplicate rule and counts, the multi-task texts with
    their candidate tasks (and counts) and the task chosen, and the token estimate.
    """
    d = Path(data_dir).expanduser()
    if duplicate_rule not in _DUPLICATE_RULES:
        raise DataError(
            f"read_llmrouter: duplicate_rule is {duplicate_rule!r}; expected one of "
            f"{list(_DUPLICATE_RULES)}"
        )
    if not (isinstance(chars_per_token, (int, float)) and chars_per_token > 0):
        raise DataError(
            f"read_llmrouter: chars_per_token is {chars_per_token!r}; expected a number > 0"
        )
    tokens_out = _output_token_table(output_tokens)
    cat_path = _existing_file(d / "llm_candidates.json")
    catalogue = load_llm_catalogue(cat_path)
    query_files = [_existing_file(d / "query_train.jsonl"), _existing_file(d / "query_test.jsonl")]
    candidates, n_texts = _query_tasks(query_files)

    # text -> list of (where, scores) in file order, train file first
    records: dict[str, list[tuple[str, dict[str, float]]]] = {}
    first_seen: dict[str, str] = {}  # llm -> first record naming it
    n_records: dict[str, int] = {}
    for fname in ("dcrouter_train.json", "dcrouter_test.json"):
        p = _existing_file(d / fname)
        raw = _load_json(p)
        if not isinstance(raw, list):
            raise DataError(
                f"file {p}: expected a JSON list of {{question, scores}} records, "
                f"got {type(raw).__name__}"
            )
        n_records[fname] = len(raw)
        for i, rec in enumerate(raw):
            where = f"file {p}, record {i}"
            text, scores = _dcrouter_record(rec, where)
            if text not in candidates:
                raise DataError(
                    f"{where}: field 'question' ({_short(text)!r}) is in no query file "
                    f"({', '.join(q.name for q in query_files)}); expected every question to "
                    "be listed there with its task_name"
                )
            for llm in scores:
                first_seen.setdefault(llm, where)
            records.setdefault(text, []).append((where, scores))

    unknown = [llm for llm in first_seen if llm not in catalogue]
    if unknown:
        llm = unknown[0]
        raise DataError(
            f"{first_seen[llm]}: field 'scores' names LLM {llm!r}, which is not in {cat_path}; "
            "expected every scored LLM there (its prices give the cost)"
        )

    rows_query: list[str] = []
    rows_llm: list[str] = []
    rows_perf: list[float] = []
    task_of: dict[str, str] = {}
    multi: list[dict[str, Any]] = []
    n_dup = n_dup_differ = 0
    for text, recs in records.items():
        cands = candidates[text]
        task = _pick_task(cands, n_texts)
        task_of[text] = task
        if len(cands) > 1:
            multi.append(
                {
                    "query_id": text_id(text),
                    "query": _short(text, 80),
                    "candidates": {t: n_texts[t] for t in cands},
                    "task": task,
                }
            )
        if len(recs) > 1:
            n_dup += 1
            n_dup_differ += any(s != recs[0][1] for _, s in recs[1:])
        if duplicate_rule == "first" or len(recs) == 1:
            merged = recs[0][1]
        else:
            values: dict[str, list[float]] = defaultdict(list)
            for _, scores in recs:
                for llm, v in scores.items():
                    values[llm].append(v)
            merged = {llm: float(np.mean(v)) for llm, v in values.items()}
        for llm in sorted(merged):
            rows_query.append(text)
            rows_llm.append(llm)
            rows_perf.append(merged[llm])

    tasks_used = sorted(set(task_of.values()))
    missing_tokens = [t for t in tasks_used if t not in tokens_out and "default" not in tokens_out]
    if missing_tokens:
        raise DataError(
            f"read_llmrouter: output_tokens has no entry for task {missing_tokens[0]!r} and no "
            "'default'; expected a token count per task or a 'default' key"
        )
    out_of_task = {t: tokens_out.get(t, tokens_out.get("default", 0.0)) for t in tasks_used}

    table = pd.DataFrame(
        {
            "query_id": [text_id(q) for q in rows_query],
            "query": rows_query,
            "task": [task_of[q] for q in rows_query],
            "llm": rows_llm,
            "performance": rows_perf,
        }
    )
    in_tokens = np.ceil(table["query"].str.len().to_numpy(dtype=float) / chars_per_token)
    out_tokens = table["task"].map(out_of_task).to_numpy(dtype=float)
    in_price = table["llm"].map(lambda m: catalogue[m].get("input_price", 0.0)).to_numpy(float)
    out_price = table["llm"].map(lambda m: catalogue[m].get("output_price", 0.0)).to_numpy(float)
    table["cost"] = (in_tokens * in_price + out_tokens * out_price) / 1e6

    meta: dict[str, Any] = {
        "source": str(d),
        "n_records": n_records,
        "n_queries": len(records),
        "duplicate_rule": duplicate_rule,
        "n_duplicate_texts_merged": n_dup,
        "n_duplicates_with_different_scores": n_dup_differ,
        "multi_task_rule": (
            "a text listed under several tasks gets the task with the fewest distinct texts "
            "in the query files; ties broken by name"
        ),
        "multi_task_texts": multi,
        "cost": {
            "unit": "dollars",
            "formula": (
                "(ceil(len(query) / chars_per_token) * input_price + output_tokens[task] * "
                "output_price) / 1e6, prices in dollars per million tokens"
            ),
            "chars_per_token": float(chars_per_token),
            "output_tokens": out_of_task,
        },
    }
    return _finish(table, f"{name} ({d})", name, meta, catalogue=catalogue)


# --------------------------------------------------------------------------- NQ


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
                f"{where}: field {key!r} is {_short(rec[key])!r}, not a list literal "
                f"({type(exc).__name__}); expected a list"
            ) from None
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{where}: field {key!r} is {_short(value)!r}; expected a list")
    return list(value)


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
    p = _existing_file(path)
    raw = _load_json(p)
    if not isinstance(raw, list):
        raise DataError(f"file {p}: expected a JSON list of records, got {type(raw).__name__}")
    catalogue = load_llm_catalogue(candidates_path) if candidates_path is not None else {}
    by_model = {str(rec["model"]): llm for llm, rec in catalogue.items() if rec.get("model")}

    rows: list[tuple[str, str, float, float]] = []
    seen_text: dict[str, int] = {}
    ids: dict[str, str] = {}
    for i, rec in enumerate(raw):
        where = f"file {p}, record {i}"
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected an object, got {type(rec).__name__}")
        if "query" not in rec:
            raise DataError(f"{where}: missing field 'query'; expected the question text")
        text = _text(rec["query"], where, "'query'")
        if text in seen_text:
            raise DataError(
                f"{where}: field 'query' repeats the text of record {seen_text[text]}; "
                "expected one record per query"
            )
        seen_text[text] = i
        models = _list_field(rec, "llm_name_list", where)
        costs = _list_field(rec, "cost_list", where)
        perfs = _list_field(rec, "perf_list", where)
        if not (len(models) == len(costs) == len(perfs)) or not models:
            raise DataError(
                f"{where}: fields 'llm_name_list', 'cost_list', 'perf_list' have lengths "
                f"{len(models)}, {len(costs)}, {len(perfs)}; expected equal, non-zero lengths"
            )
        names: set[str] = set()
        for k, (model, c, perf) in enumerate(zip(models, costs, perfs)):
            if not isinstance(model, str) or not model.strip():
                raise DataError(
                    f"{where}: field 'llm_name_list'[{k}] is {model!r}; expected a model id"
                )
            llm = by_model.get(model) or model.rstrip("/").rsplit("/", 1)[-1]
            if llm in names:
                raise DataError(
                    f"{where}: field 'llm_name_list'[{k}] ({model!r}) names LLM {llm!r} a "
                    "second time; expected each LLM once per record"
                )
            names.add(llm)
            ids.setdefault(llm, model)
            cost = _number(c, where, f"'cost_list'[{k}]")
            if cost < 0:
                raise DataError(f"{where}: field 'cost_list'[{k}] is {c!r}; expected a cost >= 0")
            rows.append((text, llm, _number(perf, where, f"'perf_list'[{k}]"), cost * cost_scale))
    if not rows:
        raise DataError(f"file {p}: no records")

    table = pd.DataFrame(rows, columns=["query", "llm", "performance", "cost"])
    table.insert(0, "query_id", table["query"].map(text_id))
    table.insert(2, "task", "natural_qa")
    meta: dict[str, Any] = {
        "source": str(p),
        "n_records": len(raw),
        "task": "natural_qa",
        "llm_model_ids": dict(sorted(ids.items())),
        "cost": {
            "unit": "cost_list as stored x cost_scale (bundled file: micro-dollars, i.e. "
            "tokens x dollars per million tokens)",
            "cost_scale": float(cost_scale),
        },
    }
    data = _finish(table, f"file {p}", name, meta, catalogue=catalogue)
    if catalogue:
        data.meta["llms_not_in_candidates"] = data.meta.pop("llms_not_in_llm_table", [])
    return data


# --------------------------------------------------------------------------- native tables


def _read_native_frame(p: Path) -> pd.DataFrame:
    """Read CSV / JSONL / Parquet into a frame indexed by 1-based row (JSONL: line) number."""
    suffix = p.suffix.lower()
    if suffix == ".csv":
        try:
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"file {p}: cannot parse CSV: {exc}") from None
        df.index = pd.RangeIndex(1, len(df) + 1, name="row")
    elif suffix == ".jsonl":
        lines: list[int] = []
        records: list[dict[str, Any]] = []
        for lineno, obj in _iter_jsonl(p):
            lines.append(lineno)
            records.append(obj)
        df = pd.DataFrame.from_records(records, index=pd.Index(lines, name="row"))
    elif suffix == ".parquet":
        try:
            df = pd.read_parquet(p)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise DataError(f"file {p}: cannot read Parquet: {exc}") from None
        df = df.reset_index(drop=True)
        df.index = pd.RangeIndex(1, len(df) + 1, name="row")
    else:
        raise DataError(
            f"file {p}: unknown suffix {p.suffix!r}; expected one of {list(NATIVE_SUFFIXES)}"
        )
    if len(df) == 0:
        raise DataError(f"file {p}: no rows")
    return df


def _canonical_types(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Give the table columns the same types whichever format they were read from."""
    df = df.copy()
    if "query_id" not in df.columns and "query" in df.columns:
        df["query_id"] = [text_id(q) if isinstance(q, str) else q for q in df["query"]]
    for col in ("query_id", "task", "llm", USER_COLUMN):
        if col in df.columns:
            df[col] = _blank_to_na(df[col])
    for col in ("query_id", "task", "llm", "split"):
        if col in df.columns:
            df[col] = df[col].map(lambda v: v if _is_missing(v) else str(v))
    if USER_COLUMN in df.columns:
        df[USER_COLUMN] = _user_ids(df[USER_COLUMN])
    for col in ("performance", "cost", "reward"):
        if col in df.columns:
            df[col] = _column_floats(df[col], source, col)
    return df


def read_table(
    path: PathLike,
    llms_path: PathLike | None = None,
    tasks_path: PathLike | None = None,
    name: str | None = None,
) -> RoutingData:
    """Read a table already in proute's shape from CSV, JSONL or Parquet (by suffix).

    Columns: ``query_id, query, task, llm, performance, cost`` and optionally ``user_id``,
    ``reward``, ``split`` (other columns are kept as they are). ``query_id`` may be left out:
    it is then :func:`text_id` of the query. User ids that are all integers become int64,
    other ids text, so the same table gives the same frame from any of the three formats.
    The index is the 1-based data row (CSV, Parquet) or line number (JSONL).

    - LLM table: from ``llms_path`` (JSON ``{name: {description|feature, input_price,
      output_price, size, family}}``; ``llm_candidates.json`` works) when given, else from
      the LLM names in the file. An LLM missing from ``llms_path`` is described by its name
      and listed in ``meta["llms_not_in_llm_table"]``.
    - Task table: from ``tasks_path`` (JSON ``{task: description}``) when given, else the
      built-in :data:`TASK_DESCRIPTIONS`, else the task name.
    """
    p = _existing_file(path)
    source = f"file {p}"
    df = _canonical_types(_read_native_frame(p), source)
    catalogue = load_llm_catalogue(llms_path) if llms_path is not None else {}
    descriptions = load_task_descriptions(tasks_path) if tasks_path is not None else {}
    data = _finish(
        df,
        source,
        name or p.stem,
        {"source": str(p), "format": p.suffix.lower().lstrip(".")},
        catalogue=catalogue,
        task_descriptions=descriptions,
    )
    _check_query_ids(data.table, source)
    return data


# --------------------------------------------------------------------------- LLMRouter JSONL


def read_llmrouter_jsonl(
    path: PathLike,
    candidates_path: PathLike | None = None,
    name: str | None = None,
) -> RoutingData:
    """Read the LLMRouter library's routing JSONL: one line per (query, model).

    Fields per line: ``query``, ``model_name`` (or ``llm``), ``performance``; optional
    ``cost`` (missing -> 0.0, counted in ``meta["n_missing_cost"]``), ``task_name`` (or
    ``task``; missing -> ``"default"``), ``user_id`` (on every line or on none), ``reward``
    and ``split``. Other fields are ignored. The LLM table comes from ``candidates_path``
    (``llm_candidates.json`` format) when given, else from the names. The index is the line
    number.
    """
    p = _existing_file(path)
    source = f"file {p}"
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    n_missing_cost = n_missing_task = 0
    has_users: bool | None = None
    extra: dict[str, bool] = {}
    for lineno, obj in _iter_jsonl(p):
        where = f"file {p}, line {lineno}"
        if "query" not in obj:
            raise DataError(f"{where}: missing field 'query'; expected the query text")
        text = _text(obj["query"], where, "'query'")
        key = "model_name" if "model_name" in obj else "llm"
        if key not in obj:
            raise DataError(f"{where}: missing field 'model_name' (or 'llm'); expected the LLM")
        llm = _text(obj[key], where, repr(key))
        if "performance" not in obj:
            raise DataError(f"{where}: missing field 'performance'; expected a number")
        row: dict[str, Any] = {
            "query_id": text_id(text),
            "query": text,
            "llm": llm,
            "performance": _number(obj["performance"], where, "'performance'"),
        }
        if obj.get("cost") is None:
            n_missing_cost += 1
            row["cost"] = 0.0
        else:
            row["cost"] = _number(obj["cost"], where, "'cost'")
        task = obj.get("task_name", obj.get("task"))
        if task is None or (isinstance(task, str) and not task.strip()):
            n_missing_task += 1
            task = "default"
        row["task"] = str(task)
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
            row["reward"] = _number(obj["reward"], where, "'reward'")
            extra["reward"] = True
        if obj.get("split") is not None:
            row["split"] = obj["split"]
            extra["split"] = True
        rows.append(row)
        lines.append(lineno)
    if not rows:
        raise DataError(f"file {p}: no records")
    table = pd.DataFrame(rows, index=pd.Index(lines, name="row"))
    if USER_COLUMN in table.columns:
        table[USER_COLUMN] = _user_ids(table[USER_COLUMN])
    meta: dict[str, Any] = {"source": str(p), "n_missing_cost": n_missing_cost,
                            "n_missing_task": n_missing_task}
    if n_missing_cost:
        meta["cost_note"] = (
            f"{n_missing_cost} of {len(rows)} lines have no cost; their cost is 0.0"
        )
        log.warning("%s: %s", source, meta["cost_note"])
    catalogue = load_llm_catalogue(candidates_path) if candidates_path is not None else {}
    return _finish(table, source, name or p.stem, meta, catalogue=catalogue)


# --------------------------------------------------------------------------- PersonalizedRouter


_PR_REQUIRED = ("user_id", "performance_preference", "query", "llm", "effect", "cost")


def read_personalizedrouter_csv(
    path: PathLike,
    llms_path: PathLike | None = None,
    name: str | None = None,
) -> RoutingData:
    """Read the PersonalizedRouter paper's router CSV (``router_user_data_v1.csv`` shape).

    Columns used: ``user_id, performance_preference, task_id, query, llm, effect, cost`` and,
    when present, ``task_name`` (preferred over ``task_id`` as the task), ``task_description``
    (task table), ``reward`` and ``split``. ``performance`` = ``effect``; the task is the
    text of ``task_id``; ``performance_preference`` is kept as a column. Embedding columns
    (``query_embedding``, ``*_embedding``) are not read: proute computes its own. Other
    columns (``ground_truth``, ``metric``, ``response``, ``best_llm`` ...) are dropped.

    ``reward``: the file's column when present, else the paper's cost-efficiency reward
    ``p * effect - (1 - p) * cost_norm`` with ``p = performance_preference`` and ``cost_norm``
    the cost min-max normalised within each task
    (:func:`proute.data.users.cost_efficiency_reward`, :func:`proute.data.users.normalize_cost`).
    The index is the 1-based data row.
    """
    p = _existing_file(path)
    source = f"file {p}"
    try:
        df = pd.read_csv(
            p,
            dtype=str,
            keep_default_na=False,
            usecols=lambda c: not str(c).endswith("_embedding"),
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"file {p}: cannot parse CSV: {exc}") from None
    df.index = pd.RangeIndex(1, len(df) + 1, name="row")
    task_col = "task_name" if "task_name" in df.columns else "task_id"
    missing = [c for c in _PR_REQUIRED + (task_col,) if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {missing}; expected the PersonalizedRouter columns "
            f"{list(_PR_REQUIRED[:2]) + ['task_id'] + list(_PR_REQUIRED[2:])}"
        )
    if len(df) == 0:
        raise DataError(f"{source}: no rows")
    table = pd.DataFrame(
        {
            USER_COLUMN: _user_ids(_blank_to_na(df["user_id"])),
            "query_id": df["query"].map(text_id),
            "query": df["query"],
            "task": _blank_to_na(df[task_col]),
            "llm": _blank_to_na(df["llm"]),
            "performance": _column_floats(df["effect"], source, "effect", finite=True),
            "cost": _column_floats(df["cost"], source, "cost", finite=True),
            "performance_preference": _column_floats(
                df["performance_preference"], source, "performance_preference", finite=True
            ),
        },
        index=df.index,
    )
    meta: dict[str, Any] = {"source": str(p), "task_column": task_col}
    if "split" in df.columns:
        table["split"] = df["split"]
    if "reward" in df.columns:
        table["reward"] = _column_floats(df["reward"], source, "reward", finite=True)
        meta["reward"] = "read from the file"
    else:
        # Validate first, so a missing task or cost is reported by row, not as a NaN reward.
        table = validate_table(table, source)
        cost_norm = normalize_cost(table)
        table["reward"] = cost_efficiency_reward(
            table["performance"].to_numpy(dtype=float),
            np.asarray(cost_norm, dtype=float),
            table["performance_preference"].to_numpy(dtype=float),
        )
        meta["reward"] = (
            "computed: performance_preference * effect - (1 - performance_preference) * "
            "cost_norm, cost min-max normalised within each task"
        )
    descriptions: dict[str, str] = {}
    if "task_description" in df.columns:
        for task, desc in zip(df[task_col], df["task_description"]):
            if desc.strip() and task not in descriptions:
                descriptions[task] = desc
    catalogue = load_llm_catalogue(llms_path) if llms_path is not None else {}
    return _finish(
        table,
        source,
        name or p.stem,
        meta,
        catalogue=catalogue,
        task_descriptions=descriptions,
    )
