"""From configs to a validated, user-level, split routing table with text embeddings.

``reader → users → split → validate → (encode)``; each step is a Hydra-instantiated object
(``dataset``, ``users``, ``split``, ``text_encoder`` config groups).

After the split the pipeline checks what training relies on, each a
:class:`~proute.data.table.DataError` naming the source: no input column with a reserved
name (:func:`~proute.data.source_checks.check_column_names`), no query text in two splits
(:func:`~proute.data.splits.check_query_disjoint`) and no empty split
(:func:`~proute.data.splits.check_split_sizes`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from proute.data.outcomes import with_reward
from proute.data.source_checks import check_column_names
from proute.data.splits import check_query_disjoint, check_split_sizes
from proute.data.table import USER_COLUMN, RoutingData

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def all_cores() -> Iterator[int]:
    """torch's intra-op threads raised to :func:`usable_cores` (never lowered), restored on
    exit: encoding a dataset's texts uses every core even where ``OMP_NUM_THREADS=1`` or
    torch's default left one. Only around whole-dataset encoding in :func:`prepare`: the
    thread count is process-wide, so a server's encoder (with its own setting) keeps it.
    MiniLM's embeddings were bit-identical on 1 and 2 threads (tests/test_pipeline.py)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(before, usable_cores()))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@dataclass
class PreparedData:
    """A routing dataset ready for graph construction.

    ``query_ids`` lists the distinct query ids, row-aligned with ``query_emb``;
    ``task_emb`` is row-aligned with ``data.tasks.index`` and ``llm_emb`` with
    ``data.llms.index``. Embeddings are ``None`` when loaded without a text encoder.
    """

    data: RoutingData
    query_ids: list[str]
    query_emb: np.ndarray | None = None
    task_emb: np.ndarray | None = None
    llm_emb: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def table(self) -> pd.DataFrame:
        return self.data.table

    def query_embedding_dict(self) -> dict[str, np.ndarray]:
        assert self.query_emb is not None, "loaded without a text encoder"
        return dict(zip(self.query_ids, self.query_emb, strict=True))


def prepare(
    reader: Callable[[], RoutingData] | RoutingData,
    users: Callable[[RoutingData], RoutingData] | None,
    split: Callable[[RoutingData], RoutingData] | None,
    text_encoder: Any | None = None,
) -> PreparedData:
    """Run the pipeline. ``reader`` is a zero-argument callable or a ready RoutingData."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = reader() if callable(reader) else reader
    timings["read"] = time.perf_counter() - t0

    t = time.perf_counter()
    check_column_names(data.table.columns, data.source)
    file_rows = data.has_users  # a simulator makes new rows; a table with users keeps its own
    if users is not None:
        data = users(data)
    else:
        data.table = with_reward(data.table)
    if split is not None:
        data = split(data)
    table = data.table
    # Keep only the LLMs and tasks the table refers to, in the LLM/task table's order.
    llms = data.llms[data.llms.index.isin(table["llm"].unique())]
    tasks = data.tasks[data.tasks.index.isin(table["task"].unique())]
    data = RoutingData(table, llms, tasks, data.name, data.meta).validate()
    if "split" in data.table.columns:
        check_query_disjoint(data.table, data.source, rows=file_rows)
        check_split_sizes(data.table, data.source, data.meta.get("split"))
    table = data.table.reset_index(drop=True)
    if USER_COLUMN in table.columns:
        table = table.sort_values([USER_COLUMN, "query_id", "llm"], kind="stable", ignore_index=True)
    data.table = table
    timings["users_split_validate"] = time.perf_counter() - t

    query_ids = list(pd.unique(data.table["query_id"].astype(str)))
    prepared = PreparedData(data, query_ids, timings=timings)
    if text_encoder is not None:
        t = time.perf_counter()
        texts = data.table.drop_duplicates("query_id").set_index("query_id")["query"]
        with all_cores():  # a cold cache encodes thousands of texts: every core, not one
            prepared.query_emb = text_encoder.encode([texts[q] for q in query_ids])
            prepared.task_emb = text_encoder.encode(list(tasks["description"]))
            prepared.llm_emb = text_encoder.encode(list(llms["description"]))
        timings["encode"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return prepared


def prepare_from_config(cfg, encode: bool = True) -> PreparedData:
    """Instantiate ``cfg.dataset``/``users``/``split``/``text_encoder`` and run :func:`prepare`."""
    from hydra.utils import instantiate

    reader = instantiate(cfg.dataset, _partial_=True)
    users = instantiate(cfg.users) if cfg.get("users") is not None else None
    split = instantiate(cfg.split) if cfg.get("split") is not None else None
    text_encoder = cfg.get("text_encoder")
    text_encoder = instantiate(text_encoder) if encode and text_encoder is not None else None
    return prepare(reader, users, split, text_encoder)
