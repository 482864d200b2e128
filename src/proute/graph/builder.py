"""Build the heterogeneous routing graph from a routing table.

Node types
    ``user``   one node per user (absent with ``user_nodes=False``);
    ``query``  one node per (user_id, query_id) pair: the graph is *expanded per user*, so the
               same query text asked by two users is two query nodes, each linked to its own
               user (with ``user_nodes=False``: one node per query_id, shared by all users);
    ``task``   one node per task (absent with ``task_nodes=False``);
    ``llm``    one node per candidate LLM.

Edge types (each with its reverse type)
    ``('query', 'answered_by', 'llm')`` / ``('llm', 'answers', 'query')``: the *outcome*
        edges, one per observed (query node, llm) of a **train** query node, with edge data
        ``feat`` of shape ``[E, edge_dim]`` (see :func:`build_graph`). Edge ``i`` of both
        types is the same (query node, llm) pair: ``edge_query[i]``, ``edge_llm[i]``; edges
        are sorted by query node, then LLM index.
    ``('user', 'asks', 'query')`` / ``('query', 'asked_by', 'user')``;
    ``('task', 'contains', 'query')`` / ``('query', 'belongs_to', 'task')``;
    ``('llm', 'same_family', 'llm')`` between distinct LLMs of one family listed in
        ``llm_family`` (only present when there is at least one such pair).

Unobserved (val/test) query nodes are **receivers only**: they get ``asks`` and
``contains`` edges but no outcome edges and no ``asked_by``/``belongs_to`` edges, so no
unobserved query influences any other node. The representation of a new query therefore
depends only on cached user/task/LLM states (see
:meth:`proute.models.HeteroGNNEncoder.encode_new_queries`; docs/DESIGN.md §2 and §3).
User nodes and per-user query nodes are what the reference code lacked (§4, flaw 1).

Without user nodes (``user_nodes=False``, the non-personalised ablation) there is one query
node per query_id, shared by all users. Its outcome edges carry the **mean over the users
who asked it** of the edge feature (for performance and cost, which do not depend on the
user, that is the value itself; for reward it is the average user's reward); its
supervision matrices are those means too. A query node is train only when every user has it
in train; if any user has it in val/test it takes the most held-out split and gets no
outcome edges (otherwise the shared node would show the test pair's outcome). Evaluate with
:attr:`RoutingGraph.pairs` and the ``pair_*`` matrices.

The node types and relations are those of :mod:`proute.schema`. There are no self-loop
relations: the encoder adds an explicit per-node-type self term.

Embeddings (``query_emb``, ``task_emb``, ``llm_emb``) are each either a mapping
``{id: 1-D array}`` or a pair ``(ids, matrix)`` with ``matrix[i]`` the vector of
``ids[i]``. Extra ids are ignored; a missing id raises :class:`~proute.data.table.DataError`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from proute._deps import import_dgl
from proute.data.table import DataError
from proute.graph.layout import (
    Layout,
    QueryNodes,
    Rows,
    edge_features,
    family_edges,
    index_rows,
    layout_pairs,
    personal_query_nodes,
    shared_query_nodes,
)
from proute.graph.routing_graph import RoutingGraph
from proute.schema import (
    ANSWERED_BY,
    ANSWERS,
    ASKED_BY,
    ASKS,
    BELONGS_TO,
    CONTAINS,
    EDGE_FEATURES,
    LLM,
    OUTCOME_RELATIONS,
    QUERY,
    SAME_FAMILY,
    TASK,
    USER,
    USER_FEATURES,
)

dgl = import_dgl()

#: The outcome relation names (kept for ``from proute.graph import OUTCOME_ETYPES``).
OUTCOME_ETYPES = OUTCOME_RELATIONS


# ---------------------------------------------------------------------- helpers
def _emb_lookup(emb, keys: Sequence, what: str) -> np.ndarray:
    """Stack the vectors of ``keys`` from a mapping or an ``(ids, matrix)`` pair."""
    if isinstance(emb, tuple) and len(emb) == 2 and not isinstance(emb, Mapping):
        ids, mat = emb
        mat = np.asarray(mat)
        index = {k: i for i, k in enumerate(ids)}
        if mat.ndim != 2 or mat.shape[0] != len(index):
            raise DataError(
                f"{what} embeddings: the matrix has shape {mat.shape}; expected "
                f"[{len(index)}, dim] aligned with the {len(index)} ids"
            )
        rows = []
        for k in keys:
            if k not in index:
                raise DataError(f"{what} embeddings: no vector for {what} id {k!r}")
            rows.append(index[k])
        return (
            mat[np.asarray(rows, dtype=np.int64)].astype(np.float32)
            if rows
            else np.zeros((0, mat.shape[1]), np.float32)
        )
    if not isinstance(emb, Mapping):
        raise TypeError(
            f"{what} embeddings must be a mapping {{id: vector}} or a pair (ids, matrix); "
            f"got {type(emb).__name__}"
        )
    vecs = []
    for k in keys:
        if k not in emb:
            raise DataError(f"{what} embeddings: no vector for {what} id {k!r}")
        vecs.append(np.asarray(emb[k], dtype=np.float32).reshape(-1))
    dims = {v.shape[0] for v in vecs}
    if len(dims) > 1:
        raise DataError(f"{what} embeddings have different sizes {sorted(dims)}")
    return np.stack(vecs).astype(np.float32)


def _best(reward: np.ndarray, observed: np.ndarray) -> np.ndarray:
    masked = np.where(observed, reward, -np.inf)
    row_max = masked.max(axis=1, keepdims=True)
    return observed & (masked == row_max)


def _t(x, dtype=None) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype)


# ---------------------------------------------------------------------- builder steps
def _check_options(edge_dim: int, edge_feature: str, user_nodes: bool, user_features: str) -> None:
    if edge_dim not in (1, 2):
        raise ValueError(f"edge_dim must be 1 or 2; got {edge_dim}")
    if edge_feature not in EDGE_FEATURES:
        raise ValueError(f"edge_feature must be one of {EDGE_FEATURES}; got {edge_feature!r}")
    if user_features not in USER_FEATURES:
        raise ValueError(f"user_features must be one of {USER_FEATURES}; got {user_features!r}")
    if not user_nodes and user_features == "history":
        raise ValueError("user_features='history' needs user nodes (user_nodes=True)")


def _heterograph(
    rows: Rows,
    nodes: QueryNodes,
    edges: tuple[np.ndarray, np.ndarray],
    user_nodes: bool,
    task_nodes: bool,
    family: tuple[list[int], list[int]],
):
    """The DGL heterograph: outcome edges, context edges (train query nodes send back), family."""
    q_train = nodes.table["split"].to_numpy() == "train"
    q_user = nodes.table["user_idx"].to_numpy().astype(np.int64)
    q_task = nodes.table["task_idx"].to_numpy().astype(np.int64)
    ar = np.arange(len(nodes.table))
    e_q, e_l = edges
    data: dict = {ANSWERED_BY: (_t(e_q), _t(e_l)), ANSWERS: (_t(e_l), _t(e_q))}
    num_nodes = {QUERY: len(nodes.table), LLM: len(rows.llms)}
    if user_nodes:
        data[ASKS] = (_t(q_user), _t(ar))
        data[ASKED_BY] = (_t(ar[q_train]), _t(q_user[q_train]))
        num_nodes[USER] = len(rows.users)
    if task_nodes:
        data[CONTAINS] = (_t(q_task), _t(ar))
        data[BELONGS_TO] = (_t(ar[q_train]), _t(q_task[q_train]))
        num_nodes[TASK] = len(rows.tasks)
    if family[0]:
        data[SAME_FAMILY] = (_t(family[0], torch.int64), _t(family[1], torch.int64))
    data = {k: (s.to(torch.int64), d.to(torch.int64)) for k, (s, d) in data.items()}
    return dgl.heterograph(data, num_nodes_dict=num_nodes, idtype=torch.int64)


def _set_features(
    g,
    rows: Rows,
    nodes: QueryNodes,
    edges: tuple[np.ndarray, np.ndarray],
    query_emb,
    task_emb,
    llm_emb,
    history: bool,
) -> None:
    """Text embeddings as ``feat`` of query, LLM and task nodes; with ``history``, user
    ``feat`` = mean embedding of the user's train query nodes (zeros without any); the
    outcome features as ``feat`` of both outcome relations (one array, shared)."""
    e_feat = nodes.feat[edges]
    for rel in OUTCOME_RELATIONS:
        g.edges[rel].data["feat"] = _t(e_feat.reshape(-1, nodes.feat.shape[2]))
    qcodes, qvals = pd.factorize(nodes.table["query_id"], sort=False)
    q_emb = _emb_lookup(query_emb, list(qvals), "query")[qcodes]
    g.nodes[QUERY].data["feat"] = _t(q_emb)
    g.nodes[LLM].data["feat"] = _t(_emb_lookup(llm_emb, rows.llms, "llm"))
    if TASK in g.ntypes:
        g.nodes[TASK].data["feat"] = _t(_emb_lookup(task_emb, rows.tasks, "task"))
    if history:
        q_train = nodes.table["split"].to_numpy() == "train"
        q_user = nodes.table["user_idx"].to_numpy().astype(np.int64)
        hist = np.zeros((len(rows.users), q_emb.shape[1]), np.float32)
        cnt = np.zeros(len(rows.users), np.float32)
        np.add.at(hist, q_user[q_train], q_emb[q_train])
        np.add.at(cnt, q_user[q_train], 1.0)
        g.nodes[USER].data["feat"] = _t(hist / np.maximum(cnt, 1.0)[:, None])


def _supervision(layout: Layout) -> dict[str, torch.Tensor]:
    """The ``reward, performance, cost, observed, best`` tensors of a layout."""
    return {
        "reward": _t(layout.reward),
        "performance": _t(layout.performance),
        "cost": _t(layout.cost),
        "observed": _t(layout.observed),
        "best": _t(_best(layout.reward, layout.observed)),
    }


def _lay_out(
    table: pd.DataFrame, edge_dim: int, edge_feature: str, user_nodes: bool, llms: Sequence[str] | None
) -> tuple[Rows, pd.DataFrame, Layout, QueryNodes]:
    """The table's rows indexed, its (user, query) pairs and their layout, and the query
    nodes (one per pair, or one per query_id without user nodes) with their edge features."""
    rows = index_rows(table, user_nodes, llms)
    pairs, pair_layout = layout_pairs(rows)
    row_feat = edge_features(rows, edge_dim, edge_feature)
    nodes = (personal_query_nodes if user_nodes else shared_query_nodes)(pairs, pair_layout, rows, row_feat)
    return rows, pairs, pair_layout, nodes


def _options(
    edge_dim: int, edge_feature: str, user_nodes: bool, task_nodes: bool, user_features: str
) -> dict[str, Any]:
    """What the built graph has: edge_dim, edge_feature, user_features, has_users, has_tasks."""
    return {
        "edge_dim": edge_dim,
        "edge_feature": edge_feature if edge_dim == 1 else "cost_norm,performance",
        "user_features": user_features if user_nodes else "none",
        "has_users": bool(user_nodes),
        "has_tasks": bool(task_nodes),
    }


def _routing_graph(
    g,
    rows: Rows,
    nodes: QueryNodes,
    pairs: pd.DataFrame,
    pair_layout: Layout,
    edges: tuple[np.ndarray, np.ndarray],
    **options: Any,
) -> RoutingGraph:
    """The :class:`RoutingGraph` of the built graph; ``options``: edge_dim, edge_feature,
    user_features, has_users, has_tasks as the graph has them."""
    node_t: dict[str, Any] = _supervision(nodes.layout)
    pair_t: dict[str, Any] = node_t if options["has_users"] else _supervision(pair_layout)
    return RoutingGraph(
        graph=g,
        users=list(rows.users),
        llms=rows.llms,
        tasks=list(rows.tasks),
        query_nodes=nodes.table.reset_index(drop=True),
        edge_query=_t(edges[0], torch.int64),
        edge_llm=_t(edges[1], torch.int64),
        query_user=_t(nodes.table["user_idx"].to_numpy().astype(np.int64), torch.int64),
        query_task=_t(nodes.table["task_idx"].to_numpy().astype(np.int64), torch.int64),
        pairs=pairs.assign(node=nodes.pair_node),
        pair_node=_t(nodes.pair_node, torch.int64),
        **options,
        **node_t,
        **{"pair_" + k: v for k, v in pair_t.items()},
    )


def build_graph(
    table: pd.DataFrame,
    query_emb,
    task_emb,
    llm_emb,
    *,
    edge_dim: int = 1,
    edge_feature: str = "reward",
    user_nodes: bool = True,
    task_nodes: bool = True,
    llm_family: Sequence[str] = (),
    llm_families: Mapping[str, str] | None = None,
    user_features: str = "learned",
    llms: Sequence[str] | None = None,
) -> RoutingGraph:
    """Build the routing graph of a validated routing table (see the module docstring).

    - ``table``: ``user_id, query_id, query, task, llm, performance, cost, split`` and
      optionally ``reward`` (without it, reward = performance). One row per (user, query,
      llm); a query may lack some LLMs. ``user_id`` may be absent only with
      ``user_nodes=False``. A (user, query) must have one task and one split.
    - ``query_emb, task_emb, llm_emb``: text embeddings keyed by query_id, task and LLM name
      (a mapping or ``(ids, matrix)``).
    - ``edge_dim``: 1: outcome edges carry the ``edge_feature`` column ("reward" or
      "performance"); 2: ``[cost_norm, performance]``, cost min-max normalised within each
      task over the train rows (the only rows that become edges).
    - ``user_nodes``: False: the non-personalised ablation, one query node per query_id;
      ``task_nodes``: False drops the task node type (``query_task`` is still filled).
    - ``llm_family, llm_families``: connect LLMs of a family listed in ``llm_family``;
      ``llm_families`` maps LLM -> family (default: guessed from the name).
    - ``user_features``: ``learned`` or ``onehot`` (the encoder embeds the user index; user
      nodes carry no ``feat``) or ``history`` (user ``feat`` = mean text embedding of the
      user's train query nodes; zeros for a user without any).
    - ``llms``: the LLM order (default: sorted LLM names of the table); must cover it.

    >>> import numpy as np, pandas as pd
    >>> t = pd.DataFrame({"user_id": [0, 0], "query_id": ["q0", "q1"], "query": ["a", "b"],
    ...                   "task": ["t", "t"], "llm": ["m", "m"], "performance": [1.0, 0.0],
    ...                   "cost": [0.1, 0.2], "reward": [0.9, -0.2], "split": ["train", "test"]})
    >>> rg = build_graph(t, {"q0": np.ones(4), "q1": np.zeros(4)}, {"t": np.ones(3)},
    ...                  {"m": np.ones(2)})
    >>> rg.graph.num_nodes("query"), rg.graph.num_edges("answered_by")
    (2, 1)
    >>> rg.graph.num_edges("asks"), rg.graph.num_edges("asked_by")  # test query: receiver only
    (2, 1)
    >>> rg.graph.edges["answered_by"].data["feat"].shape, round(float(rg.reward[0, 0]), 4)
    (torch.Size([1, 1]), 0.9)
    >>> rg.best.tolist(), rg.nodes_of("test").tolist()
    ([[True], [True]], [1])
    """
    _check_options(edge_dim, edge_feature, user_nodes, user_features)
    rows, pairs, pair_layout, nodes = _lay_out(table, edge_dim, edge_feature, user_nodes, llms)
    edges = nodes.outcome_edges()
    family = family_edges(rows.llms, llm_family, llm_families)
    g = _heterograph(rows, nodes, edges, user_nodes, task_nodes, family)
    history = user_nodes and user_features == "history"
    _set_features(g, rows, nodes, edges, query_emb, task_emb, llm_emb, history)
    options = _options(edge_dim, edge_feature, user_nodes, task_nodes, user_features)
    return _routing_graph(g, rows, nodes, pairs, pair_layout, edges, **options)
