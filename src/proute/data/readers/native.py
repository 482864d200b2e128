"""Reader of a table already in proute's shape: CSV, JSONL or Parquet (``dataset=table``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from proute.data.readers._io import (
    PathLike,
    blank_to_na,
    column_floats,
    existing_file,
    is_missing,
    iter_jsonl,
    read_csv_text,
    text_id,
    user_ids,
)
from proute.data.readers._tables import (
    check_query_ids,
    finish,
    load_llm_catalogue,
    load_task_descriptions,
)
from proute.data.table import PERFORMANCE_RANGE, USER_COLUMN, DataError, RoutingData

#: File suffixes :func:`read_table` understands.
NATIVE_SUFFIXES = (".csv", ".jsonl", ".parquet")


def _read_native_frame(p: Path) -> pd.DataFrame:
    """Read CSV / JSONL / Parquet into a frame indexed by 1-based row (JSONL: line) number."""
    suffix = p.suffix.lower()
    if suffix == ".csv":
        df = read_csv_text(p)
    elif suffix == ".jsonl":
        lines: list[int] = []
        records: list[dict[str, Any]] = []
        for lineno, obj in iter_jsonl(p):
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
        raise DataError(f"file {p}: unknown suffix {p.suffix!r}; expected one of {list(NATIVE_SUFFIXES)}")
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
            df[col] = blank_to_na(df[col])
    for col in ("query_id", "task", "llm", "split"):
        if col in df.columns:
            df[col] = df[col].map(lambda v: v if is_missing(v) else str(v))
    if USER_COLUMN in df.columns:
        df[USER_COLUMN] = user_ids(df[USER_COLUMN], source)
    for col in ("performance", "cost", "reward"):
        if col in df.columns:
            df[col] = column_floats(df[col], source, col)
    return df


def read_table(
    path: PathLike,
    llms_path: PathLike | None = None,
    tasks_path: PathLike | None = None,
    name: str | None = None,
    performance_range: Sequence[float] | None = PERFORMANCE_RANGE,
) -> RoutingData:
    """Read a table already in proute's shape from CSV, JSONL or Parquet (by suffix).

    Columns: ``query_id, query, task, llm, performance, cost`` and optionally ``user_id``,
    ``reward``, ``split`` (other columns are kept as they are). ``query_id`` may be left out:
    it is then :func:`~proute.data.readers.text_id` of the query. User ids that are all
    integers become int64, other ids text, so the same table gives the same frame from any of
    the three formats. The index is the 1-based data row (CSV, Parquet) or line number (JSONL).

    - Columns named ``new_user`` or ``new_llm`` (written by the splits), or a known column's
      name in another case or with spaces (``Split``), are an error
      (:func:`proute.data.source_checks.check_column_names`).
    - ``performance`` must lie in ``performance_range`` (default [0, 1]; ``None``: any finite
      number).
    - Query ids: one text per ``query_id``; one text under several ids is kept as several
      queries, but with a ``split`` column they must share a split
      (:mod:`proute.data.splits`).
    - LLM table: from ``llms_path`` (JSON ``{name: {description|feature, input_price,
      output_price, size, family}}``; ``llm_candidates.json`` works) when given, else from
      the LLM names in the file. An LLM missing from ``llms_path`` is an error naming the
      LLM, its first row and both files.
    - Task table: from ``tasks_path`` (JSON ``{task: description}``) when given, else the
      built-in :data:`~proute.data.readers.TASK_DESCRIPTIONS`, else the task name.
    """
    p = existing_file(path)
    source = f"file {p}"
    df = _canonical_types(_read_native_frame(p), source)
    catalogue = load_llm_catalogue(llms_path) if llms_path is not None else {}
    descriptions = load_task_descriptions(tasks_path) if tasks_path is not None else {}
    data = finish(
        df,
        source,
        name or p.stem,
        {"source": str(p), "format": p.suffix.lower().lstrip(".")},
        catalogue=catalogue,
        task_descriptions=descriptions,
        catalogue_path=llms_path,
        performance_range=performance_range,
    )
    check_query_ids(data.table, source)
    return data
