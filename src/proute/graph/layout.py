"""The dense layout behind the routing graph: rows, (user, query) pairs, query nodes (DGL-free).

Steps of :func:`proute.graph.build_graph` that need only numpy and pandas: index the table's
rows (:func:`index_rows`), lay the rows out per (user, query) pair (:func:`layout_pairs`),
compute the outcome edge features per row (:func:`edge_features`), and make the query nodes,
one per pair (:func:`personal_query_nodes`) or one per query text shared by its users
(:func:`shared_query_nodes`, the non-personalised ablation; see :mod:`proute.graph.builder`).
A layout is a grid of (query node or pair) x LLM holding each row's outcome where observed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from proute.data.outcomes import normalize_cost, reward_column
from proute.data.table import SPLITS, DataError, guess_family

# train < val < test: a shared query node takes the most held-out split of its pairs.
_SPLIT_RANK = {s: i for i, s in enumerate(SPLITS)}


def _ordered(values: Iterable) -> list:
    """Unique values, sorted when they are mutually comparable, else in first-seen order."""
    uniq = list(pd.unique(pd.Series(values)))
    try:
        return sorted(uniq)
    except TypeError:
        return uniq


def _codes(values: pd.Series, categories: list) -> np.ndarray:
    index = pd.Index(categories)
    codes = index.get_indexer(values)
    if (codes < 0).any():
        bad = values.to_numpy()[np.flatnonzero(codes < 0)[0]]
        raise DataError(f"value {bad!r} is not in the id list {categories[:10]}...")
    return codes.astype(np.int64)


@dataclass
class Rows:
    """The table's rows with their user, LLM and task indices and outcome values."""

    t: pd.DataFrame
    users: list
    llms: list[str]
    tasks: list[str]
    user: np.ndarray  # per row: index into users
    llm: np.ndarray  # per row: index into llms
    task: np.ndarray  # per row: index into tasks
    reward: np.ndarray  # float32 per row (performance without a reward column)
    performance: np.ndarray
    cost: np.ndarray


@dataclass
class Layout:
    """Rows laid out on a grid of (query node or pair) x LLM: index of each row, matrices."""

    of_row: np.ndarray
    observed: np.ndarray
    reward: np.ndarray
    performance: np.ndarray
    cost: np.ndarray


@dataclass
class QueryNodes:
    """The query nodes: their table, the node of each pair, the supervision and edge data."""

    table: pd.DataFrame
    pair_node: np.ndarray
    layout: Layout
    feat: np.ndarray  # [num_query_nodes, num_llms, edge_dim] outcome edge features

    def outcome_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """``(query node, llm)`` of the outcome edges: the observed LLMs of train query
        nodes, sorted by node, then LLM."""
        q_train = self.table["split"].to_numpy() == "train"
        nodes, llms = np.nonzero(self.layout.observed & q_train[:, None])
        return nodes, llms


def index_rows(table: pd.DataFrame, user_nodes: bool, llms: Sequence[str] | None) -> Rows:
    """Check the table's columns and splits and index its rows."""
    needed = ["query_id", "task", "llm", "performance", "cost", "split"]
    if user_nodes:
        needed = ["user_id"] + needed
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise DataError(f"build_graph: the routing table lacks column(s) {missing}")
    if len(table) == 0:
        raise DataError("build_graph: the routing table has no rows")
    t = table.reset_index(drop=True)
    if "user_id" not in t.columns:
        t = t.assign(user_id=0)
    bad_split = ~t["split"].isin(SPLITS)
    if bad_split.any():
        raise DataError(f"build_graph: split {t['split'][bad_split].iloc[0]!r} is not one of {list(SPLITS)}")
    users = _ordered(t["user_id"])
    llm_list = [str(x) for x in (llms if llms is not None else sorted(t["llm"].astype(str).unique()))]
    tasks = sorted(t["task"].astype(str).unique())
    return Rows(
        t=t,
        users=users,
        llms=llm_list,
        tasks=tasks,
        user=_codes(t["user_id"], users),
        llm=_codes(t["llm"].astype(str), llm_list),
        task=_codes(t["task"].astype(str), tasks),
        reward=t[reward_column(t)].to_numpy(dtype=np.float32),
        performance=t["performance"].to_numpy(dtype=np.float32),
        cost=t["cost"].to_numpy(dtype=np.float32),
    )


def _grid(rows: Rows, of_row: np.ndarray, n: int) -> Layout:
    """Each row's outcome at (``of_row``, its LLM) of an ``n`` x num_llms grid."""
    shape = (n, len(rows.llms))
    observed = np.zeros(shape, dtype=bool)
    observed[of_row, rows.llm] = True
    dense = {}
    for name in ("reward", "performance", "cost"):
        dense[name] = np.zeros(shape, np.float32)
        dense[name][of_row, rows.llm] = getattr(rows, name)
    return Layout(of_row=of_row, observed=observed, **dense)


def layout_pairs(rows: Rows) -> tuple[pd.DataFrame, Layout]:
    """The (user, query) pairs, grouped by user, in first-seen order within a user."""
    t = rows.t
    pair_code = t.groupby(["user_id", "query_id"], sort=False).ngroup().to_numpy()
    first = np.unique(pair_code, return_index=True)[1]  # first row of each pair, by code
    order = np.argsort(rows.user[first], kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    first_row = first[order]
    # one task and one split per pair
    for col in ("task", "split"):
        n = t.groupby(["user_id", "query_id"], sort=False)[col].nunique()
        if (n > 1).any():
            key = n.index[np.flatnonzero((n > 1).to_numpy())[0]]
            raise DataError(f"build_graph: (user_id, query_id) = {key!r} has several values of {col!r}")
    pairs = pd.DataFrame(
        {
            "user_id": t["user_id"].to_numpy()[first_row],
            "query_id": t["query_id"].to_numpy()[first_row],
            "task": t["task"].astype(str).to_numpy()[first_row],
            "split": t["split"].astype(str).to_numpy()[first_row],
            "user_idx": rows.user[first_row],
            "task_idx": rows.task[first_row],
        }
    )
    return pairs, _grid(rows, rank[pair_code], len(order))


def edge_features(rows: Rows, edge_dim: int, edge_feature: str) -> np.ndarray:
    """Outcome edge features per row, ``float32 [rows, edge_dim]``."""
    t = rows.t
    if edge_dim == 1:
        if edge_feature not in t.columns:
            raise DataError(f"build_graph: edge_feature {edge_feature!r} is not a column of the table")
        return t[edge_feature].to_numpy(dtype=np.float32)[:, None]
    # cost min-max normalised within each task over the train rows (the only edges)
    cnorm = normalize_cost(t, fit=(t["split"] == "train").to_numpy(), dtype=np.float32)
    return np.stack([cnorm, rows.performance], axis=1)


def personal_query_nodes(
    pairs: pd.DataFrame, pair_layout: Layout, rows: Rows, row_feat: np.ndarray
) -> QueryNodes:
    """One query node per (user, query) pair."""
    n = len(pairs)
    feat = np.zeros((n, len(rows.llms), row_feat.shape[1]), np.float32)
    feat[pair_layout.of_row, rows.llm] = row_feat
    return QueryNodes(pairs.copy(), np.arange(n), pair_layout, feat)


def shared_query_nodes(
    pairs: pd.DataFrame, pair_layout: Layout, rows: Rows, row_feat: np.ndarray
) -> QueryNodes:
    """One query node per query_id, shared by its users: the most held-out split of its
    pairs, the mean over its users of each outcome (module docstring)."""
    t = rows.t
    qcode, qids = pd.factorize(t["query_id"], sort=False)
    n = len(qids)
    row_node = qcode.astype(np.int64)
    pair_node = np.empty(len(pairs), np.int64)
    pair_node[pair_layout.of_row] = row_node
    ntask = t.groupby("query_id", sort=False)["task"].nunique()
    if (ntask > 1).any():
        raise DataError(f"build_graph: query_id {ntask.index[(ntask > 1).to_numpy()][0]!r} has several tasks")
    node_rank = np.zeros(n, np.int64)
    np.maximum.at(node_rank, pair_node, pairs["split"].map(_SPLIT_RANK).to_numpy())
    node_task = np.empty(n, np.int64)
    node_task[pair_node] = pairs["task_idx"].to_numpy()
    table = pd.DataFrame(
        {
            "user_id": [None] * n,
            "query_id": np.asarray(qids),
            "task": np.asarray(rows.tasks, dtype=object)[node_task],
            "split": np.array([SPLITS[r] for r in node_rank], dtype=object).astype(str),
            "user_idx": np.full(n, -1, np.int64),
            "task_idx": node_task,
        }
    )
    cnt = np.zeros((n, len(rows.llms)), np.float32)
    np.add.at(cnt, (row_node, rows.llm), 1.0)
    denom = np.maximum(cnt, 1.0)

    def node_mean(vals):
        s = np.zeros((n, len(rows.llms)) + vals.shape[1:], np.float32)
        np.add.at(s, (row_node, rows.llm), vals)
        return s / (denom if vals.ndim == 1 else denom[..., None])

    layout = Layout(
        of_row=row_node,
        observed=cnt > 0,
        reward=node_mean(rows.reward),
        performance=node_mean(rows.performance),
        cost=node_mean(rows.cost),
    )
    return QueryNodes(table, pair_node, layout, node_mean(row_feat))


def family_edges(
    llm_list: list[str], llm_family: Sequence[str], llm_families: Mapping[str, str] | None
) -> tuple[list[int], list[int]]:
    """Both directions of every pair of distinct LLMs of one family listed in ``llm_family``."""
    fams = set(map(str, llm_family or ()))
    src: list[int] = []
    dst: list[int] = []
    if not fams:
        return src, dst
    fam_of = {m: (llm_families or {}).get(m) or guess_family(m) for m in llm_list}
    for i, a in enumerate(llm_list):
        for j, b in enumerate(llm_list):
            if i != j and fam_of[a] in fams and fam_of[a] == fam_of[b]:
                src.append(i)
                dst.append(j)
    return src, dst
