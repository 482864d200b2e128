"""Train/val/test splits of a user-level routing table.

Every split is by **query text**: a text asked by several users lands in the same split for
all of them, so no test query's LLM outcomes are ever seen in training (the LLM outcomes of
a text are the same for every user). Within each task the query texts are shuffled with the
seed and cut by ``ratios`` (stratified by task), never by file order (docs/DESIGN.md §7;
§4, flaw 5).

- :class:`QuerySplit` — by query; a ``split`` column already in the data is honoured.
- :class:`ProvidedSplit` — the data's own ``split`` column, required.
- :class:`NewUserSplit` — by query, and a set of held-out users keep only
  ``support_queries`` of their training queries (a new user with a handful of
  interactions); column ``new_user`` marks them.
- :class:`NewLLMSplit` — by query, and held-out LLMs have no training rows at all (they are
  seen only through their description); column ``new_llm`` marks them.

Policies (what a run does with data that does not fit the rule above):

- **One text under several query ids.** The ids are kept (they are separate query
  nodes), but the text is the unit of the split: when proute draws the split, all ids of a
  text get the same split. When the data brings its own ``split`` column and the ids of one
  text (or one id, for two users) are in different splits, that is a test leak and a
  :class:`DataError` naming the source, the ids, their rows and their splits
  (:func:`check_query_disjoint`). Identity is the exact text, as
  :func:`proute.data.readers.text_id` hashes it. The bundled data has no such text (its
  ids are hashes of the text).
- **Empty splits.** Every split must have rows: train to fit, val to choose the model
  (early stopping and the weights kept), test for the one final evaluation. Each ratio
  must be above 0 (there is no opt-out), a drawn split moves one query text into a split
  the rounding left empty when the data has at least three texts, and an empty split after
  all is a :class:`DataError` naming the split, the sizes and the split config
  (:func:`check_split_sizes`).
- **split_ratio with the data's own split column** is not used; a ratio other than the
  default is then a logged warning naming both.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from proute.data.table import SPLITS, USER_COLUMN, DataError, RoutingData

log = logging.getLogger(__name__)


#: The ``split_ratio`` of conf/train.yaml, the value a run has not changed.
DEFAULT_RATIOS = (0.6, 0.2, 0.2)


def _check_ratios(ratios: Sequence[float]) -> np.ndarray:
    r = np.asarray(list(ratios), dtype=float)
    if r.shape != (3,) or not (r > 0).all() or not np.isclose(r.sum(), 1.0):
        raise DataError(
            f"split: split_ratio={list(ratios)}; expected three numbers [train, val, test], each "
            "> 0, that sum to 1 (train fits the model, val chooses it, test reports it once: "
            "none may be empty)"
        )
    return r


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _text_units(table: pd.DataFrame) -> pd.DataFrame:
    """One row per ``query_id`` (text): its ``unit``, the smallest id with the same query
    text, and the unit's ``task``, the task of the text's first row."""
    per_id = table.drop_duplicates("query_id")
    ids = per_id["query_id"].astype(str).to_numpy(dtype=object)
    text = per_id["query"].astype(str).to_numpy(dtype=object)
    units = pd.DataFrame({"query_id": ids, "unit": ids, "task": per_id["task"].to_numpy()})
    shared = pd.Series(text).duplicated(keep=False).to_numpy()
    if shared.any():  # only texts with several ids need grouping (none in the bundled data)
        sub = units[shared].assign(text=text[shared])
        units.loc[shared, "unit"] = sub.groupby("text", sort=False)["query_id"].transform("min")
        units.loc[shared, "task"] = sub.groupby("text", sort=False)["task"].transform("first")
    return units


def _fill_empty_splits(label: dict, order: list) -> None:
    """Give each split at least one unit when there are three or more: a split the rounding
    left empty takes the last unit (in drawing order) of the largest split."""
    if len(order) < len(SPLITS):
        return
    for split in SPLITS:
        counts = Counter(label.values())
        if counts[split] == 0:
            donor = max(SPLITS, key=lambda d: counts[d])
            unit = next(u for u in reversed(order) if label[u] == donor)
            label[unit] = split
            log.warning(
                "split: the ratios left the %r split without a query text (%d texts in all); "
                "it takes one from %r",
                split,
                len(order),
                donor,
            )


def query_split_labels(table: pd.DataFrame, ratios: Sequence[float], seed: int) -> pd.Series:
    """A split label per row, assigned per query text and stratified by task.

    The unit is the text: query ids with the same text share a label (module
    docstring). In each task (the task of the text's first row), the sorted units are
    shuffled with ``seed`` and the first ``round(r_train · n)`` go to train, the next
    ``round(r_val · n)`` to val, the rest to test; a split left empty over all tasks takes one
    unit (:func:`_fill_empty_splits`).
    """
    r = _check_ratios(ratios)
    rng = np.random.default_rng(seed)
    units = _text_units(table)
    task_of = units.drop_duplicates("unit").set_index("unit")["task"]
    label: dict = {}
    order: list = []
    for task in sorted(task_of.unique()):
        ids = np.sort(task_of.index[task_of.to_numpy() == task].to_numpy().astype(str))
        ids = ids[rng.permutation(len(ids))]
        n_train = int(round(r[0] * len(ids)))
        n_val = int(round(r[1] * len(ids)))
        n_val = min(n_val, len(ids) - n_train)
        for i, qid in enumerate(ids):
            label[qid] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            order.append(qid)
    _fill_empty_splits(label, order)
    if (units["unit"] != units["query_id"]).any():
        log.info(
            "split: %d query texts have several query_ids; each text's ids share a split",
            units.loc[units["unit"] != units["query_id"], "unit"].nunique(),
        )
    of_id = dict(zip(units["query_id"], units["unit"].map(label), strict=True))
    return table["query_id"].astype(str).map(of_id).astype("category").rename("split")


def _rows(index_labels, rows: bool) -> list[str]:
    return [f" (row {i})" if rows else "" for i in index_labels]


def check_query_disjoint(table: pd.DataFrame, source: str = "split", rows: bool = True) -> None:
    """Raise if a query text sits in more than one split.

    Both ways a text can leak: one ``query_id`` in two splits (for two users), and two ids
    of the same text in two splits. ``rows``: the table's index labels are the file's rows,
    so the message names them.
    """
    per_query = table.groupby("query_id", observed=True)["split"].nunique()
    bad = per_query[per_query > 1]
    if len(bad):
        qid = bad.index[0]
        first = table[table["query_id"] == qid].drop_duplicates("split")
        where = ", ".join(f"{s!r}{r}" for s, r in zip(first["split"], _rows(first.index, rows), strict=True))
        raise DataError(
            f"{source}: query_id {qid!r} is in splits {sorted(map(str, first['split']))} "
            f"({where}); a query text must be in one split for every user ({len(bad)} such queries)"
        )
    pairs = table.drop_duplicates(["query", "split"])
    dup = pairs["query"].duplicated(keep=False).to_numpy()
    if dup.any():
        text = pairs["query"].to_numpy()[np.flatnonzero(dup)[0]]
        hits = pairs[(pairs["query"] == text).to_numpy()]
        where = ", ".join(
            f"query_id {q!r} in {s!r}{r}"
            for q, s, r in zip(hits["query_id"], hits["split"], _rows(hits.index, rows), strict=True)
        )
        n = pairs.loc[dup, "query"].nunique()
        raise DataError(
            f"{source}: the query text {_short(str(text))!r} is in several splits: {where}; a text "
            "must be in one split for every user and every query_id, else a held-out query's "
            f"LLM outcomes are seen in training ({n} such texts): give its rows one split, or "
            "one query_id"
        )


def check_split_sizes(table: pd.DataFrame, source: str, split_config: dict | None = None) -> None:
    """Raise if a split has no rows; the message names it, the sizes and the split config."""
    counts = table.groupby("split", observed=True)["query_id"].nunique()
    counts = counts.reindex(list(SPLITS), fill_value=0)
    empty = [s for s in SPLITS if counts[s] == 0]
    if empty:
        sizes = ", ".join(f"{s} {int(counts[s])}" for s in SPLITS)
        raise DataError(
            f"{source}: the {empty[0]!r} split has no rows (query texts per split: {sizes}; "
            f"split config: {split_config}); expected rows in every split: train fits the "
            "model, val chooses it (early stopping and the weights kept), test reports it once, "
            f"and there is no opt-out. A split column in the data needs rows with split="
            f"{empty[0]!r}; a split drawn by proute has one when the data has three query texts"
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
            self._warn_ratio_unused(data)
            return table
        return table.assign(
            split=query_split_labels(table, self.ratios, self.seed).to_numpy(dtype=object)
        ).astype({"split": "category"})

    def __call__(self, data: RoutingData) -> RoutingData:
        table = self.base(data)
        return RoutingData(table, data.llms, data.tasks, data.name, {**data.meta, "split": self.describe()})

    def describe(self) -> dict:
        return {"kind": type(self).__name__, "ratios": list(self.ratios), "seed": self.seed}

    def _warn_ratio_unused(self, data: RoutingData) -> None:
        """split_ratio does nothing with the data's own split column: say so when it was changed."""
        try:
            changed = tuple(float(x) for x in self.ratios) != DEFAULT_RATIOS
        except (TypeError, ValueError):
            changed = True
        if changed:
            log.warning(
                "%s: split_ratio=%s is not used: the data has its own 'split' column, which "
                "%s uses as it is; remove the split_ratio override, or drop the column to draw "
                "a split",
                data.source,
                list(self.ratios),
                type(self).__name__,
            )


@dataclass
class ProvidedSplit(QuerySplit):
    """The data's own ``split`` column (an error if it has none)."""

    def base(self, data: RoutingData) -> pd.DataFrame:
        if "split" not in data.table.columns:
            raise DataError(
                f"{data.source}: split=provided, but the table has no 'split' column "
                f"(expected values {list(SPLITS)}); use split=by_query"
            )
        self._warn_ratio_unused(data)
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


def _held_out_rows(
    value: str, options: tuple[str, str, str], default: np.ndarray, none: np.ndarray
) -> np.ndarray:
    """The rows a held-out split keeps: ``default`` for ``options[0]``, ``none`` (no held-out
    row) for ``"none"``, every row for ``"all"``; an error naming ``split.held_out_rows``."""
    if value not in options:
        raise DataError(f"split.held_out_rows is {value!r}; expected one of {list(options)}")
    if value == "all":
        return np.ones(len(default), dtype=bool)
    return none if value == "none" else default


@dataclass
class NewUserSplit(QuerySplit):
    """Hold out users: they keep only ``support_queries`` training queries each.

    The rest of their training rows are dropped; their val/test queries are evaluated as
    for everyone, and the ``new_user`` column lets metrics report them apart.
    ``held_out_rows``: ``"support"`` (the above), ``"none"`` (no row of theirs at all: a
    router trained on that never saw them and places them afterwards without retraining,
    :mod:`proute.study.adaptation`) or ``"all"`` (every row kept: the router trained with
    them); the same users and support queries are drawn either way.
    """

    users: Sequence | None = None
    user_fraction: float = 0.2
    support_queries: int = 5
    held_out_rows: str = "support"

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
        keep = _held_out_rows(self.held_out_rows, ("support", "none", "all"), keep, ~is_new)
        table = table.assign(new_user=is_new)[keep]
        meta = {
            **data.meta,
            "split": {
                **self.describe(),
                "new_users": [str(u) for u in held],
                "support_queries": self.support_queries,
                "held_out_rows": self.held_out_rows,
            },
        }
        return RoutingData(table, data.llms, data.tasks, data.name, meta)


@dataclass
class NewLLMSplit(QuerySplit):
    """Hold out LLMs: no training row of theirs is kept (seen only by description).

    ``held_out_rows``: ``"eval"`` (the above: their val/test rows only), ``"none"`` (no row of
    theirs, not even a node: added afterwards without retraining,
    :mod:`proute.study.adaptation`) or ``"all"`` (every row kept: the router trained with them).
    """

    llms: Sequence[str] | None = None
    llm_fraction: float = 0.2
    held_out_rows: str = "eval"

    def __call__(self, data: RoutingData) -> RoutingData:
        table = self.base(data)
        rng = np.random.default_rng(self.seed + 2)
        held = _choose(sorted(table["llm"].unique()), self.llms, self.llm_fraction, rng, "LLMs")
        is_new = table["llm"].isin(held).to_numpy()
        keep = _held_out_rows(
            self.held_out_rows,
            ("eval", "none", "all"),
            ~(is_new & (table["split"] == "train").to_numpy()),
            ~is_new,
        )
        table = table.assign(new_llm=is_new)[keep]
        meta = {
            **data.meta,
            "split": {**self.describe(), "new_llms": list(held), "held_out_rows": self.held_out_rows},
        }
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
