"""Reader of the PersonalizedRouter paper's router CSV (``dataset=personalizedrouter_csv``)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from proute.data.outcomes import cost_efficiency_reward, normalize_cost
from proute.data.readers._io import (
    PathLike,
    blank_to_na,
    column_floats,
    existing_file,
    read_csv_text,
    text_id,
    user_ids,
)
from proute.data.readers._tables import finish, load_llm_catalogue
from proute.data.table import PERFORMANCE_RANGE, USER_COLUMN, DataError, RoutingData, validate_table

_PR_REQUIRED = ("user_id", "performance_preference", "query", "llm", "effect", "cost")


def _routing_columns(df: pd.DataFrame, task_col: str, source: str) -> pd.DataFrame:
    """The routing table's columns (and ``performance_preference``) of the paper's frame."""
    return pd.DataFrame(
        {
            USER_COLUMN: user_ids(blank_to_na(df["user_id"]), source),
            "query_id": df["query"].map(text_id),
            "query": df["query"],
            "task": blank_to_na(df[task_col]),
            "llm": blank_to_na(df["llm"]),
            "performance": column_floats(df["effect"], source, "effect", finite=True),
            "cost": column_floats(df["cost"], source, "cost", finite=True),
            "performance_preference": column_floats(
                df["performance_preference"], source, "performance_preference", finite=True
            ),
        },
        index=df.index,
    )


def _add_reward(
    table: pd.DataFrame,
    df: pd.DataFrame,
    source: str,
    meta: dict[str, Any],
    performance_range: Sequence[float] | None,
) -> pd.DataFrame:
    """``table`` with the file's ``reward``, else the paper's cost-efficiency reward."""
    if "reward" in df.columns:
        table["reward"] = column_floats(df["reward"], source, "reward", finite=True)
        meta["reward"] = "read from the file"
        return table
    # Validate first, so a missing task or cost is reported by row, not as a NaN reward.
    table = validate_table(table, source, performance_range=performance_range)
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
    return table


def read_personalizedrouter_csv(
    path: PathLike,
    llms_path: PathLike | None = None,
    name: str | None = None,
    performance_range: Sequence[float] | None = PERFORMANCE_RANGE,
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
    (:func:`proute.data.outcomes.cost_efficiency_reward`,
    :func:`proute.data.outcomes.normalize_cost`). The index is the 1-based data row.

    ``llms_path`` (the paper's ``LLM_Descriptions_v1.json``), when given, must list every LLM
    of the file. ``effect`` must lie in ``performance_range`` (default [0, 1]).
    """
    p = existing_file(path)
    source = f"file {p}"
    df = read_csv_text(p, usecols=lambda c: not str(c).endswith("_embedding"))
    task_col = "task_name" if "task_name" in df.columns else "task_id"
    missing = [c for c in _PR_REQUIRED + (task_col,) if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {missing}; expected the PersonalizedRouter columns "
            f"{list(_PR_REQUIRED[:2]) + ['task_id'] + list(_PR_REQUIRED[2:])}"
        )
    if len(df) == 0:
        raise DataError(f"{source}: no rows")
    table = _routing_columns(df, task_col, source)
    meta: dict[str, Any] = {"source": str(p), "task_column": task_col}
    if "split" in df.columns:
        table["split"] = df["split"]
    table = _add_reward(table, df, source, meta, performance_range)
    descriptions: dict[str, str] = {}
    if "task_description" in df.columns:
        for task, desc in zip(df[task_col], df["task_description"], strict=True):
            if desc.strip() and task not in descriptions:
                descriptions[task] = desc
    catalogue = load_llm_catalogue(llms_path) if llms_path is not None else {}
    return finish(
        table,
        source,
        name or p.stem,
        meta,
        catalogue=catalogue,
        task_descriptions=descriptions,
        catalogue_path=llms_path,
        performance_range=performance_range,
    )
