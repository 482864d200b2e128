"""Reader of the LLMRouter dcrouter benchmark, the project's default dataset (``dataset=llmrouter``).

The per-task output lengths behind its estimated costs live here, in
:data:`DEFAULT_OUTPUT_TOKENS`, and only here: ``conf/dataset/llmrouter.yaml`` leaves
``output_tokens`` null to use them, and an override replaces the whole table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from proute.data.readers._io import (
    PathLike,
    as_number,
    as_text,
    existing_file,
    iter_jsonl,
    load_json,
    short,
    text_id,
)
from proute.data.readers._tables import finish, load_llm_catalogue
from proute.data.table import DataError, RoutingData

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
        for lineno, obj in iter_jsonl(p):
            where = f"file {p}, line {lineno}"
            if "task_name" not in obj:
                raise DataError(f"{where}: missing field 'task_name'; expected the task's name")
            if "query" not in obj:
                raise DataError(f"{where}: missing field 'query'; expected the query text")
            task = as_text(obj["task_name"], where, "'task_name'")
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
        value = as_number(n, "output_tokens", repr(str(task)))
        if value < 0:
            raise DataError(f"output_tokens: field {str(task)!r} is {n!r}; expected a count >= 0")
        out[str(task)] = value
    return out


def _dcrouter_record(rec: Any, where: str) -> tuple[str, dict[str, float]]:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected an object {{question, scores}}, got {type(rec).__name__}")
    for key in ("question", "scores"):
        if key not in rec:
            raise DataError(f"{where}: missing field {key!r}; expected {{question, scores: {{llm: score}}}}")
    text = as_text(rec["question"], where, "'question'")
    scores = rec["scores"]
    if not isinstance(scores, dict) or not scores:
        raise DataError(
            f"{where}: field 'scores' is {short(scores)!r}; expected a non-empty object {{llm: score}}"
        )
    return text, {str(k): as_number(v, where, f"'scores'[{k!r}]") for k, v in scores.items()}


def _check_options(duplicate_rule: str, chars_per_token: float) -> None:
    if duplicate_rule not in _DUPLICATE_RULES:
        raise DataError(
            f"read_llmrouter: duplicate_rule is {duplicate_rule!r}; expected one of {list(_DUPLICATE_RULES)}"
        )
    if not (isinstance(chars_per_token, (int, float)) and chars_per_token > 0):
        raise DataError(f"read_llmrouter: chars_per_token is {chars_per_token!r}; expected a number > 0")


#: text -> ``(where, scores)`` of each of its records, in file order (train file first).
_Records = dict[str, list[tuple[str, dict[str, float]]]]


def _read_scores(
    d: Path, candidates: Mapping[str, list[str]], query_files: list[Path]
) -> tuple[_Records, dict[str, str], dict[str, int]]:
    """The dcrouter records by text, the first record naming each LLM, and the record count
    per file. A question in no query file is an error."""
    records: _Records = {}
    first_seen: dict[str, str] = {}  # llm -> first record naming it
    n_records: dict[str, int] = {}
    for fname in ("dcrouter_train.json", "dcrouter_test.json"):
        p = existing_file(d / fname)
        raw = load_json(p)
        if not isinstance(raw, list):
            raise DataError(
                f"file {p}: expected a JSON list of {{question, scores}} records, got {type(raw).__name__}"
            )
        n_records[fname] = len(raw)
        for i, rec in enumerate(raw):
            where = f"file {p}, record {i}"
            text, scores = _dcrouter_record(rec, where)
            if text not in candidates:
                raise DataError(
                    f"{where}: field 'question' ({short(text)!r}) is in no query file "
                    f"({', '.join(q.name for q in query_files)}); expected every question to "
                    "be listed there with its task_name"
                )
            for llm in scores:
                first_seen.setdefault(llm, where)
            records.setdefault(text, []).append((where, scores))
    return records, first_seen, n_records


def _check_priced(first_seen: Mapping[str, str], catalogue: Mapping[str, Any], cat_path: Path) -> None:
    unknown = [llm for llm in first_seen if llm not in catalogue]
    if unknown:
        llm = unknown[0]
        raise DataError(
            f"{first_seen[llm]}: field 'scores' names LLM {llm!r}, which is not in {cat_path}; "
            "expected every scored LLM there (its prices give the cost)"
        )


def _merged_scores(recs: list[tuple[str, dict[str, float]]], duplicate_rule: str) -> dict[str, float]:
    """One score per LLM over the records of one text."""
    if duplicate_rule == "first" or len(recs) == 1:
        return recs[0][1]
    values: dict[str, list[float]] = defaultdict(list)
    for _, scores in recs:
        for llm, v in scores.items():
            values[llm].append(v)
    return {llm: float(np.mean(v)) for llm, v in values.items()}


def _merge(
    records: _Records,
    candidates: Mapping[str, list[str]],
    n_texts: Mapping[str, int],
    duplicate_rule: str,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The query-level table (without cost) and the meta of the task and duplicate rules."""
    rows: list[tuple[str, str, str, str, float]] = []
    multi: list[dict[str, Any]] = []
    n_dup = n_dup_differ = 0
    for text, recs in records.items():
        cands = candidates[text]
        task = _pick_task(cands, n_texts)
        if len(cands) > 1:
            multi.append(
                {
                    "query_id": text_id(text),
                    "query": short(text, 80),
                    "candidates": {t: n_texts[t] for t in cands},
                    "task": task,
                }
            )
        if len(recs) > 1:
            n_dup += 1
            n_dup_differ += any(s != recs[0][1] for _, s in recs[1:])
        merged = _merged_scores(recs, duplicate_rule)
        qid = text_id(text)
        rows += [(qid, text, task, llm, merged[llm]) for llm in sorted(merged)]
    table = pd.DataFrame(rows, columns=["query_id", "query", "task", "llm", "performance"])
    meta = {
        "n_queries": len(records),
        "duplicate_rule": duplicate_rule,
        "n_duplicate_texts_merged": n_dup,
        "n_duplicates_with_different_scores": n_dup_differ,
        "multi_task_rule": (
            "a text listed under several tasks gets the task with the fewest distinct texts "
            "in the query files; ties broken by name"
        ),
        "multi_task_texts": multi,
    }
    return table, meta


def _task_output_tokens(tasks: Iterable[str], tokens_out: Mapping[str, float]) -> dict[str, float]:
    """The output length of each task (sorted), from its entry or ``default``."""
    tasks_used = sorted(set(tasks))
    missing_tokens = [t for t in tasks_used if t not in tokens_out and "default" not in tokens_out]
    if missing_tokens:
        raise DataError(
            f"read_llmrouter: output_tokens has no entry for task {missing_tokens[0]!r} and no "
            "'default'; expected a token count per task or a 'default' key"
        )
    return {t: tokens_out.get(t, tokens_out.get("default", 0.0)) for t in tasks_used}


def _estimated_cost(
    table: pd.DataFrame,
    catalogue: Mapping[str, Mapping[str, Any]],
    chars_per_token: float,
    out_of_task: Mapping[str, float],
) -> np.ndarray:
    """Dollars: ``(in_tokens * input_price + out_tokens * output_price) / 1e6``."""
    in_tokens = np.ceil(table["query"].str.len().to_numpy(dtype=float) / chars_per_token)
    out_tokens = table["task"].map(out_of_task).to_numpy(dtype=float)
    in_price = table["llm"].map(lambda m: catalogue[m].get("input_price", 0.0)).to_numpy(float)
    out_price = table["llm"].map(lambda m: catalogue[m].get("output_price", 0.0)).to_numpy(float)
    return (in_tokens * in_price + out_tokens * out_price) / 1e6


def _cost_meta(chars_per_token: float, out_of_task: Mapping[str, float]) -> dict[str, Any]:
    """How the costs were estimated, for ``meta["cost"]``."""
    return {
        "unit": "dollars",
        "formula": (
            "(ceil(len(query) / chars_per_token) * input_price + output_tokens[task] * "
            "output_price) / 1e6, prices in dollars per million tokens"
        ),
        "chars_per_token": float(chars_per_token),
        "output_tokens": out_of_task,
    }


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
      output_tokens[task]`` (else ``output_tokens["default"]``). ``output_tokens=None`` (the
      default, and ``conf/dataset/llmrouter.yaml``'s) uses :data:`DEFAULT_OUTPUT_TOKENS`. The
      query text does not hold the answer options of multiple-choice tasks, so their input is
      underestimated by a few tokens.
    - **LLM table**: the LLMs present in the scores, with description = ``feature``, prices
      and size from ``llm_candidates.json``; a scored LLM missing there is an error (its
      price is needed). **Task table**: :data:`~proute.data.readers.TASK_DESCRIPTIONS`, else
      the task name.

    ``meta`` records the rules used: duplicate rule and counts, the multi-task texts with
    their candidate tasks (and counts) and the task chosen, and the token estimate.
    """
    d = Path(data_dir).expanduser()
    _check_options(duplicate_rule, chars_per_token)
    tokens_out = _output_token_table(output_tokens)
    cat_path = existing_file(d / "llm_candidates.json")
    catalogue = load_llm_catalogue(cat_path)
    query_files = [existing_file(d / "query_train.jsonl"), existing_file(d / "query_test.jsonl")]
    candidates, n_texts = _query_tasks(query_files)
    records, first_seen, n_records = _read_scores(d, candidates, query_files)
    _check_priced(first_seen, catalogue, cat_path)

    table, rules = _merge(records, candidates, n_texts, duplicate_rule)
    out_of_task = _task_output_tokens(table["task"], tokens_out)
    table["cost"] = _estimated_cost(table, catalogue, chars_per_token, out_of_task)
    cost = _cost_meta(chars_per_token, out_of_task)
    meta: dict[str, Any] = {"source": str(d), "n_records": n_records, **rules, "cost": cost}
    return finish(table, f"{name} ({d})", name, meta, catalogue=catalogue)
