"""The routing table: the one contract between data sources and everything else.

One row per (user, query, llm) observation::

    user_id, query_id, query, task, llm, performance, cost   [, reward] [, split]

- ``user_id``: an int or a text id; a source without users has no ``user_id`` column until
  a user simulator (:mod:`proute.data.users`) adds one. Ids are normalised so that one user
  has one id whatever the file format: when every id is a whole number (``3``, ``3.0``,
  ``"3"``) they become int64, else text; a float id that is not a whole number (``0.5``) is
  an error naming its row (:func:`normalize_user_ids`).
- ``query_id``: identifies the query *text*; two users asking the same text share it, so a
  split by ``query_id`` keeps a text on one side for every user.
- ``performance``: the measured quality of ``llm`` on the query, in [0, 1] unless the reader
  declares another range (``performance_range``, kept in ``meta``); a value outside it is an
  error with the count of such rows and the first of them.
- ``cost``: the cost of the call, ``>= 0`` (a negative cost is an error), in dollars or the
  source's own unit. When the LLM table lists prices, a cost that looks like another unit
  is a logged warning (:func:`proute.data.source_checks.check_cost_units`): proute compares
  costs only within a task, so a unit shared by all rows does not change training, but it
  does the reported costs.
- ``reward``: what this user gets from this outcome (written by the user simulator).
- ``split``: one of ``train``, ``val``, ``test``.

Reserved names: ``new_user`` and ``new_llm`` are written by the splits
(:data:`RESERVED_COLUMNS`); an input column of either name, or a column whose name is a
known column's up to case and spaces (``Split``, ``" cost"``), would silently change what a
run does, so readers reject them (:func:`proute.data.source_checks.check_column_names`).

Missing LLMs: a query need not have a row for every LLM. Nothing is imputed: the graph
has no edge for an unobserved (query, llm) pair, and evaluation chooses among the LLMs
observed for that (user, query) — the oracle and every router are compared on the same
candidate set.

Besides the table, a :class:`RoutingData` carries the LLM table (one row per candidate
LLM: description, prices, size, family) and the task table (one row per task with a
description). Both are needed to build LLM and task node features.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("query_id", "query", "task", "llm", "performance", "cost")
USER_COLUMN = "user_id"
OPTIONAL_COLUMNS = ("reward", "split")
SPLITS = ("train", "val", "test")
LLM_COLUMNS = ("description", "input_price", "output_price", "size", "family")
#: Columns the pipeline writes itself -> what writes them. An input column of one of these
#: names would be taken for proute's own, so readers reject it.
RESERVED_COLUMNS = {
    "new_user": "split=new_users writes it to mark held-out users, and metrics report the "
    "users it marks apart",
    "new_llm": "split=new_llms writes it to mark held-out LLMs",
}
#: The range ``performance`` must lie in unless a reader declares another.
PERFORMANCE_RANGE = (0.0, 1.0)


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
    performance_range: Sequence[float] | None = PERFORMANCE_RANGE,
) -> pd.DataFrame:
    """Check a routing table and return it with canonical dtypes.

    Raises :class:`DataError` naming ``source``, the first offending row (the frame's index
    label, which readers set to the line/record number of the file) and the field for:
    missing columns, empty query text, NaN/inf performance, cost or reward, performance
    outside ``performance_range`` (``None``: any finite value), negative cost, a float user
    id that is not a whole number, duplicate (user, query, llm) rows, an LLM not in
    ``llms``, and an unknown split name. User ids are normalised
    (:func:`normalize_user_ids`).

    >>> import pandas as pd
    >>> t = pd.DataFrame({"user_id": [0.0], "query_id": ["q0"], "query": ["hi"], "task": ["t"],
    ...                   "llm": ["a"], "performance": [1.0], "cost": [0.1]})
    >>> out = validate_table(t, "example", llms=["a"])
    >>> len(out), out["user_id"].tolist()
    (1, [0])
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
    _check_numbers(df, source, performance_range)
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
    if require_users:
        df[USER_COLUMN] = normalize_user_ids(df[USER_COLUMN], source)


_INT_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.0*)?")


def _whole(value: float, series: pd.Series, pos: int, source: str) -> int:
    """A float id as an int; a NaN, infinite or fractional one is an error naming its row."""
    if not (np.isfinite(value) and float(value).is_integer()):
        raise DataError(
            f"{source}: row {series.index[pos]}: field {USER_COLUMN!r} is {value!r}; expected "
            "an integer or a text id (a float id must be a whole number: 3.0 is user 3)"
        )
    return int(value)


def normalize_user_ids(series: pd.Series, source: str = "user_id") -> pd.Series:
    """User ids as int64 when every id is a whole number, else as text.

    A whole number may be an int, a float (``3.0``: a column pandas made float) or digits
    (``"3"``, ``"3.0"``; not ``"007"``, which stays text), so the same ids read from CSV
    (text), JSONL (numbers) or Parquet (typed) come out equal, and ``0.0`` and ``0`` are one
    user. In a column of text ids a whole float becomes its int's text (``3.0`` -> ``"3"``).
    A float that is not a whole number is an error naming its row. Missing ids stay missing
    (:func:`validate_table` reports them).

    >>> normalize_user_ids(pd.Series([0.0, 1.0])).tolist()
    [0, 1]
    >>> normalize_user_ids(pd.Series(["alice", 3.0])).tolist()
    ['alice', '3']
    """
    if series.isna().any():
        return series
    if pd.api.types.is_integer_dtype(series):
        return series.astype("int64")
    if pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype=float)
        for pos in np.flatnonzero(~np.isfinite(values) | (values != np.round(values))):
            _whole(float(values[pos]), series, int(pos), source)
        return series.astype("int64")
    out: list = []
    for pos, v in enumerate(series.tolist()):
        if isinstance(v, (float, np.floating)):
            v = _whole(float(v), series, pos, source)
        elif isinstance(v, np.integer):
            v = int(v)
        out.append(v)

    def whole(v) -> bool:
        return (isinstance(v, int) and not isinstance(v, bool)) or (
            isinstance(v, str) and _INT_TEXT.fullmatch(v) is not None
        )

    if all(whole(v) for v in out):
        return pd.Series(
            [int(v.split(".")[0]) if isinstance(v, str) else v for v in out],
            index=series.index,
            dtype="int64",
        )
    return pd.Series(out, index=series.index, dtype=object).astype(str)


def _check_numbers(df: pd.DataFrame, source: str, performance_range: Sequence[float] | None) -> None:
    """Performance (in ``performance_range``), cost (>= 0) and reward: finite floats (in
    place)."""
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
    negative = (df["cost"] < 0).to_numpy()
    if negative.any():
        pos = _first(negative)
        raise DataError(
            f"{source}: {_row_label(df, pos)}: field 'cost' is {df['cost'].iloc[pos]}; expected a cost "
            f">= 0 ({int(negative.sum())} of {len(df)} rows have a negative cost)"
        )
    if performance_range is not None:
        lo, hi = (float(x) for x in performance_range)
        perf = df["performance"].to_numpy()
        outside = (perf < lo - 1e-9) | (perf > hi + 1e-9)
        if outside.any():
            pos = _first(outside)
            raise DataError(
                f"{source}: {_row_label(df, pos)}: field 'performance' is {float(perf[pos])!r}, outside the "
                f"declared range [{lo:g}, {hi:g}] ({int(outside.sum())} of {len(df)} rows are; "
                f"observed {perf.min():g} to {perf.max():g}); expected the measured quality in "
                f"[{lo:g}, {hi:g}]: rescale it (a percentage / 100), or give the reader the "
                "source's own range (performance_range=[low, high])"
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

    @property
    def source(self) -> str:
        """The name, with the file or folder it was read from when known (for messages)."""
        where = self.meta.get("source")
        return f"{self.name} ({where})" if where and str(where) != self.name else self.name

    def validate(self) -> "RoutingData":
        self.table = validate_table(
            self.table,
            self.source,
            llms=self.llms.index,
            require_users=self.has_users,
            performance_range=self.meta.get("performance_range", PERFORMANCE_RANGE),
        )
        missing_tasks = sorted(set(self.table["task"].unique()) - set(self.tasks.index))
        if missing_tasks:
            raise DataError(
                f"{self.source}: task(s) {missing_tasks[:5]} appear in the routing table but "
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
