"""The routing table: the one contract between data sources and everything else.

One row per (user, query, llm) observation::

    user_id, query_id, query, task, llm, performance, cost   [, reward] [, split]

- ``user_id``: any hashable id (int or str); a source without users has no ``user_id``
  column until a user simulator (:mod:`proute.data.users`) adds one.
- ``query_id``: identifies the query *text*; two users asking the same text share it, so a
  split by ``query_id`` keeps a text on one side for every user.
- ``performance``: the measured quality of ``llm`` on the query (usually in [0, 1]).
- ``cost``: the cost of the call (dollars, or the source's own unit), ``>= 0``.
- ``reward``: what this user gets from this outcome (written by the user simulator).
- ``split``: one of ``train``, ``val``, ``test``.

Missing LLMs: a query need not have a row for every LLM. Nothing is imputed: the graph
has no edge for an unobserved (query, llm) pair, and evaluation chooses among the LLMs
observed for that (user, query) — the oracle and every router are compared on the same
candidate set.

Besides the table, a :class:`RoutingData` carries the LLM table (one row per candidate
LLM: description, prices, size, family) and the task table (one row per task with a
description). Both are needed to build LLM and task node features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("query_id", "query", "task", "llm", "performance", "cost")
USER_COLUMN = "user_id"
OPTIONAL_COLUMNS = ("reward", "split")
SPLITS = ("train", "val", "test")
LLM_COLUMNS = ("description", "input_price", "output_price", "size", "family")


class DataError(ValueError):
    """A data source or table is not what proute expects.

    The message names the source (file), the row or key, the field and what was expected.
    """


def _row_label(df: pd.DataFrame, pos: int) -> str:
    idx = df.index[pos]
    return f"row {idx}" if not isinstance(idx, tuple) else f"row {idx!r}"


def validate_table(
    df: pd.DataFrame,
    source: str,
    llms: Iterable[str] | None = None,
    require_users: bool = True,
) -> pd.DataFrame:
    """Check a routing table and return it with canonical dtypes.

    Raises :class:`DataError` naming ``source``, the first offending row (the frame's index
    label, which readers set to the line/record number of the file) and the field for:
    missing columns, empty query text, NaN/inf performance, cost or reward, duplicate
    (user, query, llm) rows, an LLM not in ``llms``, and an unknown split name.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"user_id": [0], "query_id": ["q0"], "query": ["hi"], "task": ["t"],
    ...                   "llm": ["a"], "performance": [1.0], "cost": [0.1]})
    >>> len(validate_table(t, "example", llms=["a"]))
    1
    """
    required = ((USER_COLUMN,) if require_users else ()) + REQUIRED_COLUMNS
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {missing}; a routing table needs {list(required)} "
            f"(optional: {list(OPTIONAL_COLUMNS)}); found {list(df.columns)}"
        )
    if len(df) == 0:
        raise DataError(f"{source}: the routing table has no rows")
    df = df.copy()
    _check_text_and_ids(df, source, require_users)
    _check_numbers(df, source)
    _check_llms_and_splits(df, source, llms)
    _check_unique(df, source, require_users)
    return df


def _first(bad: np.ndarray) -> int:
    """Position of the first true entry."""
    return int(np.flatnonzero(bad)[0])


def as_text(series: pd.Series) -> pd.Series:
    """``series`` as text; a categorical stays categorical (its categories become text), so
    a large table keeps one copy of each distinct string (see ``proute.data.users``)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.rename_categories(series.cat.categories.astype(str))
    return series.astype(str)


def _check_text_and_ids(df: pd.DataFrame, source: str, require_users: bool) -> None:
    """Query text: a non-empty string; ids present; task and llm as text (in place)."""
    text = df["query"]
    missing = text.isna().to_numpy()
    text = as_text(text)
    bad = missing | (text.str.strip() == "").to_numpy(dtype=bool, na_value=True)
    if bad.any():
        raise DataError(
            f"{source}: {_row_label(df, _first(bad))}: field 'query' is empty; expected non-empty text"
        )
    df["query"] = text

    for col in ("query_id", "task", "llm") + ((USER_COLUMN,) if require_users else ()):
        bad = df[col].isna().to_numpy()
        if bad.any():
            raise DataError(f"{source}: {_row_label(df, _first(bad))}: field {col!r} is missing")
    df["task"] = as_text(df["task"])
    df["llm"] = as_text(df["llm"])


def _check_numbers(df: pd.DataFrame, source: str) -> None:
    """Performance, cost (>= 0) and reward: finite floats (in place)."""
    numeric = ["performance", "cost"] + (["reward"] if "reward" in df.columns else [])
    for col in numeric:
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            pos = _first(bad)
            raise DataError(
                f"{source}: {_row_label(df, pos)}: field {col!r} is {df[col].iloc[pos]!r}; "
                "expected a finite number"
            )
        df[col] = values
    if (df["cost"] < 0).any():
        pos = _first((df["cost"] < 0).to_numpy())
        raise DataError(
            f"{source}: {_row_label(df, pos)}: field 'cost' is {df['cost'].iloc[pos]}; expected a cost >= 0"
        )


def _check_llms_and_splits(df: pd.DataFrame, source: str, llms: Iterable[str] | None) -> None:
    """LLMs in ``llms`` (when given); split names known, as text (in place)."""
    if llms is not None:
        known = set(map(str, llms))
        unknown = ~df["llm"].isin(known).to_numpy()
        if unknown.any():
            pos = _first(unknown)
            raise DataError(
                f"{source}: {_row_label(df, pos)}: field 'llm' is {df['llm'].iloc[pos]!r}, "
                f"which is not in the LLM table; expected one of {sorted(known)}"
            )

    if "split" in df.columns:
        split = as_text(df["split"])
        bad = ~split.isin(SPLITS).to_numpy()
        if bad.any():
            pos = _first(bad)
            raise DataError(
                f"{source}: {_row_label(df, pos)}: field 'split' is {df['split'].iloc[pos]!r}; "
                f"expected one of {list(SPLITS)}"
            )
        df["split"] = split


def _check_unique(df: pd.DataFrame, source: str, require_users: bool) -> None:
    """One row per (user, query, llm)."""
    key = ([USER_COLUMN] if require_users else []) + ["query_id", "llm"]
    dup = df.duplicated(subset=key, keep="first").to_numpy()
    if dup.any():
        pos = _first(dup)
        values = {k: df[k].iloc[pos] for k in key}
        raise DataError(
            f"{source}: {_row_label(df, pos)}: duplicate observation for {values}; "
            f"expected one row per ({', '.join(key)})"
        )


@dataclass
class RoutingData:
    """A routing table with the LLM and task tables it refers to.

    ``llms`` is indexed by LLM name with columns :data:`LLM_COLUMNS`; ``tasks`` is indexed
    by task name with a ``description`` column. ``name`` says where the data came from.
    """

    table: pd.DataFrame
    llms: pd.DataFrame
    tasks: pd.DataFrame
    name: str = "data"
    meta: dict = field(default_factory=dict)

    @property
    def has_users(self) -> bool:
        return USER_COLUMN in self.table.columns

    def validate(self) -> "RoutingData":
        self.table = validate_table(self.table, self.name, llms=self.llms.index, require_users=self.has_users)
        missing_tasks = sorted(set(self.table["task"]) - set(self.tasks.index))
        if missing_tasks:
            raise DataError(
                f"{self.name}: task(s) {missing_tasks[:5]} appear in the routing table but "
                "not in the task table"
            )
        return self


def make_llm_table(records: dict[str, dict]) -> pd.DataFrame:
    """Build the LLM table from ``{name: {description, input_price, ...}}``.

    Missing fields get neutral defaults (empty description -> the name, prices 0,
    size ``""``, family from the name: the first of ``llama, qwen, mistral, mixtral,
    gemma, gpt, claude`` that occurs in it, else ``"other"``).
    """
    rows = []
    for name, rec in records.items():
        rows.append(
            {
                "llm": str(name),
                "description": rec.get("description") or str(name),
                "input_price": float(rec.get("input_price", 0.0) or 0.0),
                "output_price": float(rec.get("output_price", 0.0) or 0.0),
                "size": str(rec.get("size", "") or ""),
                "family": rec.get("family") or guess_family(str(name)),
            }
        )
    return pd.DataFrame(rows).set_index("llm")


_FAMILIES = ("mixtral", "mistral", "codegemma", "gemma", "llama", "qwen", "gpt", "claude", "palmyra")


def guess_family(name: str) -> str:
    """The model family named in an LLM name (``codegemma`` counts as ``gemma``)."""
    low = name.lower()
    for fam in _FAMILIES:
        if fam in low:
            return "gemma" if fam == "codegemma" else fam
    return "other"


def make_task_table(descriptions: dict[str, str]) -> pd.DataFrame:
    rows = [{"task": str(t), "description": d or str(t)} for t, d in descriptions.items()]
    return pd.DataFrame(rows).set_index("task")


def best_mask(table: pd.DataFrame, value: str = "reward", atol: float = 1e-9) -> np.ndarray:
    """True on the rows whose ``value`` is the best of their (user, query).

    Ties all count as best (18% of (user, query) pairs of the bundled data have a tied
    best reward): never break ties by LLM order.
    """
    key = [c for c in (USER_COLUMN, "query_id") if c in table.columns]
    best = table.groupby(key, sort=False)[value].transform("max").to_numpy(dtype=float)
    return table[value].to_numpy(dtype=float) >= best - atol
