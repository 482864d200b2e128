"""Train/val/test splits of a user-level routing table.

Every split is by **query text** (``query_id``): a text asked by several users lands in the
same split for all of them, so no test query's LLM outcomes are ever seen in training
(the LLM outcomes of a text are the same for every user). Within each task the query ids
are shuffled with the seed and cut by ``ratios`` (stratified by task), never by file order
(docs/DESIGN.md §7; §4, flaw 5).

- :class:`QuerySplit` — by query; a ``split`` column already in the data is honoured.
- :class:`ProvidedSplit` — the data's own ``split`` column, required.
- :class:`NewUserSplit` — by query, and a set of held-out users keep only
  ``support_queries`` of their training queries (a new user with a handful of
  interactions); column ``new_user`` marks them.
- :class:`NewLLMSplit` — by query, and held-out LLMs have no training rows at all (they are
  seen only through their description); column ``new_llm`` marks them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from proute.data.table import SPLITS, USER_COLUMN, DataError, RoutingData

log = logging.getLogger(__name__)


def _check_ratios(ratios: Sequence[float]) -> np.ndarray:
    r = np.asarray(list(ratios), dtype=float)
    if r.shape != (3,) or (r < 0).any() or not np.isclose(r.sum(), 1.0):
        raise DataError(
            f"split: split_ratio={list(ratios)}; expected three non-negative numbers "
            "[train, val, test] that sum to 1"
        )
    return r


def query_split_labels(table: pd.DataFrame, ratios: Sequence[float], seed: int) -> pd.Series:
    """A split label per row, assigned per ``query_id`` and stratified by task.

    In each task (the first task a query id appears under), the sorted query ids are
    shuffled with ``seed`` and the first ``round(r_train · n)`` go to train, the next
    ``round(r_val · n)`` to val, the rest to test.
    """
    r = _check_ratios(ratios)
    rng = np.random.default_rng(seed)
    first_task = table.drop_duplicates("query_id").set_index("query_id")["task"]
    label: dict = {}
    for task in sorted(first_task.unique()):
        ids = np.sort(first_task.index[first_task.to_numpy() == task].to_numpy().astype(str))
        ids = ids[rng.permutation(len(ids))]
        n_train = int(round(r[0] * len(ids)))
        n_val = int(round(r[1] * len(ids)))
        n_val = min(n_val, len(ids) - n_train)
        for i, qid in enumerate(ids):
            label[qid] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return table["query_id"].astype(str).map(label).astype("category").rename("split")


def check_query_disjoint(table: pd.DataFrame, source: str = "split") -> None:
    """Raise if a query text sits in more than one split."""
    per_query = table.groupby("query_id")["split"].nunique()
    bad = per_query[per_query > 1]
    if len(bad):
        qid = bad.index[0]
        splits = sorted(table.loc[table["query_id"] == qid, "split"].unique())
        raise DataError(
            f"{source}: query_id {qid!r} is in splits {splits}; a query text must be in one "
            f"split for every user ({len(bad)} such queries)"
        )


@dataclass
class QuerySplit:
    """Split by query text, stratified by task; an existing ``split`` column is honoured."""

    ratios: Sequence[float] = (0.6, 0.2, 0.2)
    seed: int = 42

    def base(self, data: RoutingData) -> pd.DataFrame:
        table = data.table
        if "split" in table.columns:
            log.info("%s: using the split column found in the data", data.name)
            return table
        return table.assign(
            split=query_split_labels(table, self.ratios, self.seed).to_numpy(dtype=object)
        ).astype({"split": "category"})

    def __call__(self, data: RoutingData) -> RoutingData:
        table = self.base(data)
        return RoutingData(table, data.llms, data.tasks, data.name, {**data.meta, "split": self.describe()})

    def describe(self) -> dict:
        return {"kind": type(self).__name__, "ratios": list(self.ratios), "seed": self.seed}


@dataclass
class ProvidedSplit(QuerySplit):
    """The data's own ``split`` column (an error if it has none)."""

    def base(self, data: RoutingData) -> pd.DataFrame:
        if "split" not in data.table.columns:
            raise DataError(
                f"{data.name}: split=provided, but the table has no 'split' column "
                f"(expected values {list(SPLITS)}); use split=by_query"
            )
        return data.table


def _choose(values: Sequence, explicit: Sequence | None, fraction: float, rng, what: str) -> list:
    values = list(values)
    if explicit:
        unknown = [v for v in explicit if v not in set(values)]
        if unknown:
            raise DataError(f"split: held-out {what} {unknown} are not in the data ({values})")
        return list(explicit)
    n = max(1, int(round(fraction * len(values))))
    if n >= len(values):
        raise DataError(f"split: holding out {n} of {len(values)} {what} leaves none to train on")
    return [values[i] for i in sorted(rng.choice(len(values), size=n, replace=False))]


@dataclass
class NewUserSplit(QuerySplit):
    """Hold out users: they keep only ``support_queries`` training queries each.

    The rest of their training rows are dropped; their val/test queries are evaluated as
    for everyone, and the ``new_user`` column lets metrics report them apart.
    """

    users: Sequence | None = None
    user_fraction: float = 0.2
    support_queries: int = 5

    def __call__(self, data: RoutingData) -> RoutingData:
        table = self.base(data)
        if USER_COLUMN not in table.columns:
            raise DataError(f"{data.name}: split=new_users needs users (a user_id column)")
        rng = np.random.default_rng(self.seed + 1)
        users = sorted(table[USER_COLUMN].unique(), key=str)
        held = _choose(users, self.users, self.user_fraction, rng, "users")
        is_new = table[USER_COLUMN].isin(held).to_numpy()
        keep = np.ones(len(table), dtype=bool)
        for u in held:
            sel = (table[USER_COLUMN] == u).to_numpy() & (table["split"] == "train").to_numpy()
            qids = np.sort(table.loc[sel, "query_id"].astype(str).unique())
            k = min(int(self.support_queries), len(qids))
            support = set(rng.choice(qids, size=k, replace=False)) if k else set()
            keep &= ~(sel & ~table["query_id"].astype(str).isin(support).to_numpy())
        table = table.assign(new_user=is_new)[keep]
        meta = {
            **data.meta,
            "split": {
                **self.describe(),
                "new_users": [str(u) for u in held],
                "support_queries": self.support_queries,
            },
        }
        return RoutingData(table, data.llms, data.tasks, data.name, meta)


@dataclass
class NewLLMSplit(QuerySplit):
    """Hold out LLMs: no training row of theirs is kept (seen only by description)."""

    llms: Sequence[str] | None = None
    llm_fraction: float = 0.2

    def __call__(self, data: RoutingData) -> RoutingData:
        table = self.base(data)
        rng = np.random.default_rng(self.seed + 2)
        held = _choose(sorted(table["llm"].unique()), self.llms, self.llm_fraction, rng, "LLMs")
        is_new = table["llm"].isin(held).to_numpy()
        table = table.assign(new_llm=is_new)[~(is_new & (table["split"] == "train").to_numpy())]
        meta = {**data.meta, "split": {**self.describe(), "new_llms": list(held)}}
        return RoutingData(table, data.llms, data.tasks, data.name, meta)


def split_sizes(table: pd.DataFrame) -> pd.DataFrame:
    """Queries, (user, query) pairs and rows per split."""
    g = table.groupby("split")
    out = pd.DataFrame(
        {
            "queries": g["query_id"].nunique(),
            "user_queries": g.apply(
                lambda d: (
                    len(d.drop_duplicates([USER_COLUMN, "query_id"]))
                    if USER_COLUMN in d
                    else d["query_id"].nunique()
                )
            ),
            "rows": g.size(),
        }
    )
    return out.reindex([s for s in SPLITS if s in out.index])
