"""Training-time edge masking: which outcome edges to hide, and the graph to pass messages on.

Each strategy has one method, ``sample(rg, generator) -> MaskSample``. A sample hides some
*train* outcome edges (query -> llm and its reverse llm -> query); the model passes messages
on :attr:`MaskSample.graph` (the full graph minus the hidden edges) and is trained to score
the hidden (query node, llm) pairs :attr:`MaskSample.target_query`,
:attr:`MaskSample.target_llm`.

Strategies that hide *every* outcome edge of a query node (:class:`QueryMasking`,
:class:`UserBalancedMasking`, :class:`ColdStartMasking`) also remove that node's outgoing
``asked_by``/``belongs_to`` edges, so a masked node looks exactly like a val/test query
(a receiver only, see :mod:`proute.graph.builder`): the model trains on the situation it
meets at test time (docs/DESIGN.md §4, flaw 6). :class:`RandomEdgeMasking` is the paper's
scheme (random single edges, the node keeps its other edges) for comparison.

Speed: the per-graph index (outcome edges per query node, context edge ids per node) is
built once and cached on the :class:`~proute.graph.routing_graph.RoutingGraph`; a sample is a few
vectorised tensor operations plus one :func:`dgl.edge_subgraph` call that lists every edge
type (with ``relabel_nodes=False``, so node ids and node data stay as they are).

Random draws use the given :class:`torch.Generator` (a CPU generator); the same seed gives
the same sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from proute._deps import import_dgl
from proute.graph.builder import OUTCOME_ETYPES
from proute.graph.routing_graph import RoutingGraph

dgl = import_dgl()

__all__ = [
    "MaskSample",
    "MaskingStrategy",
    "RandomEdgeMasking",
    "QueryMasking",
    "UserBalancedMasking",
    "ColdStartMasking",
]

_CONTEXT_ETYPES = ("asked_by", "belongs_to")  # query -> user, query -> task


@dataclass
class MaskSample:
    """One masking draw.

    ``graph``: the message-passing graph (all nodes, hidden outcome edges removed in both
    directions, and for fully masked query nodes their ``asked_by``/``belongs_to`` edges).
    ``target_query``, ``target_llm``, ``target_edge``: the hidden pairs (query node id, LLM
    index) and their outcome edge ids in ``rg.graph`` (sorted by edge id, i.e. by query node
    then LLM). ``masked_nodes``: sorted query nodes with at least one hidden edge.
    ``users``: the cold-start users (:class:`ColdStartMasking` only, else None).
    All tensors are on the device of ``rg``.
    """

    graph: Any
    target_query: torch.Tensor
    target_llm: torch.Tensor
    target_edge: torch.Tensor
    masked_nodes: torch.Tensor
    users: torch.Tensor | None = None

    @property
    def num_targets(self) -> int:
        return int(self.target_edge.shape[0])


class _MaskIndex:
    """Per-graph structures, built once (CPU numpy arrays: small index arithmetic in numpy is
    faster and steadier than torch's multi-threaded CPU kernels)."""

    def __init__(self, rg: RoutingGraph):
        g = rg.graph
        self.num_nodes = rg.num_query_nodes
        self.edge_query = rg.edge_query.cpu().numpy()
        E = self.edge_query.shape[0]
        self.num_edges = E
        if E and not bool((self.edge_query[1:] >= self.edge_query[:-1]).all()):
            raise ValueError("outcome edges must be sorted by query node (build_graph does this)")
        counts = np.bincount(self.edge_query, minlength=self.num_nodes)
        # query nodes that can be masked: those with at least one outcome edge (train)
        self.train_nodes = np.flatnonzero(counts > 0)
        self.train_user = rg.query_user.cpu().numpy()[self.train_nodes]
        self.canonical = list(g.canonical_etypes)
        self.num_type_edges = {cet: g.num_edges(cet) for cet in self.canonical}
        self.outcome = [cet for cet in self.canonical if cet[1] in OUTCOME_ETYPES]
        # source query node of each context edge (query -> user / task)
        self.context_src = {
            cet: g.edges(etype=cet)[0].cpu().numpy() for cet in self.canonical if cet[1] in _CONTEXT_ETYPES
        }
        self.all_ids: dict[
            Any, dict
        ] = {}  # per device: arange of every edge type, reused for untouched types

    def arange(self, cet, device):
        key = (cet, str(device))
        if key not in self.all_ids:
            self.all_ids[key] = torch.arange(self.num_type_edges[cet], device=device)
        return self.all_ids[key]


def _index(rg: RoutingGraph) -> _MaskIndex:
    idx = rg._cache.get("mask_index")
    if idx is None or idx.num_nodes != rg.num_query_nodes:
        idx = _MaskIndex(rg)
        rg._cache["mask_index"] = idx
    return idx


def _rng(generator: torch.Generator | None) -> np.random.Generator:
    """A numpy generator seeded from one draw of the torch generator (so a seeded torch
    generator gives identical samples, and successive samples differ)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return np.random.default_rng(seed)


def _count(rate: float, n: int) -> int:
    """round(rate * n), at least 1 when rate > 0 and n > 0, at most n."""
    if rate <= 0 or n <= 0:
        return 0
    return int(min(n, max(1, round(rate * n))))


def _check_rate(name: str, rate: float) -> float:
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {rate}")
    return rate


def _t(a: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device)


class MaskingStrategy:
    """Base class: subclasses choose hidden edges in :meth:`_choose`."""

    def sample(self, rg: RoutingGraph, generator: torch.Generator | None = None) -> MaskSample:
        """Draw one mask. ``generator``: a CPU :class:`torch.Generator` (None: the global
        one)."""
        idx = _index(rg)
        if idx.num_edges == 0:
            raise ValueError("the routing graph has no train outcome edges to mask")
        hidden, masked_nodes, users = self._choose(rg, idx, _rng(generator))
        return _make_sample(rg, idx, hidden, masked_nodes, users)

    def _choose(self, rg, idx, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _edges_of_nodes(idx: _MaskIndex, nodes: np.ndarray) -> np.ndarray:
    """All outcome edge ids of ``nodes`` (sorted)."""
    node_mask = np.zeros(idx.num_nodes, dtype=bool)
    node_mask[nodes] = True
    return np.flatnonzero(node_mask[idx.edge_query])


def _make_sample(rg, idx: _MaskIndex, hidden: np.ndarray, masked_nodes, users) -> MaskSample:
    """Remove ``hidden`` outcome edges (both directions) and the context edges of the fully
    masked query nodes ``masked_nodes`` (None: keep all context edges)."""
    g = rg.graph
    device = g.device
    hidden_mask = np.zeros(idx.num_edges, dtype=bool)
    hidden_mask[hidden] = True
    hidden = np.flatnonzero(hidden_mask)  # sorted
    keep_outcome = _t(np.flatnonzero(~hidden_mask), device)
    node_mask = np.zeros(idx.num_nodes, dtype=bool)
    if masked_nodes is not None:
        node_mask[masked_nodes] = True
    eids = {}
    for cet in idx.canonical:
        if cet in idx.outcome:
            eids[cet] = keep_outcome
        elif masked_nodes is not None and len(masked_nodes) and cet in idx.context_src:
            eids[cet] = _t(np.flatnonzero(~node_mask[idx.context_src[cet]]), device)
        else:
            eids[cet] = idx.arange(cet, device)
    # every edge type listed: edge_subgraph drops the types left out of the dict
    mg = dgl.edge_subgraph(g, eids, relabel_nodes=False, store_ids=False)
    tq = idx.edge_query[hidden]
    if masked_nodes is None:
        node_mask[tq] = True
    hidden_t = _t(hidden, device)
    return MaskSample(
        graph=mg,
        target_query=_t(tq, device),
        target_llm=rg.edge_llm[hidden_t.to(rg.edge_llm.device)].to(device),
        target_edge=hidden_t,
        masked_nodes=_t(np.flatnonzero(node_mask), device),
        users=None if users is None else _t(users, device),
    )


class RandomEdgeMasking(MaskingStrategy):
    """Hide a random ``train_mask_rate`` fraction of the train outcome edges (the paper's
    scheme). The query nodes of hidden edges keep their other outcome edges and their
    ``asked_by``/``belongs_to`` edges."""

    def __init__(self, train_mask_rate: float = 0.3):
        self.train_mask_rate = _check_rate("train_mask_rate", train_mask_rate)

    def _choose(self, rg, idx, rng):
        k = _count(self.train_mask_rate, idx.num_edges)
        return rng.choice(idx.num_edges, size=k, replace=False), None, None


class QueryMasking(MaskingStrategy):
    """Hide *all* outcome edges of a random ``train_mask_rate`` fraction of the train query
    nodes (and their ``asked_by``/``belongs_to`` edges): each masked node looks like a
    val/test query, which has no outcome edge. The default strategy."""

    def __init__(self, train_mask_rate: float = 0.3):
        self.train_mask_rate = _check_rate("train_mask_rate", train_mask_rate)

    def _choose(self, rg, idx, rng):
        n = len(idx.train_nodes)
        nodes = idx.train_nodes[rng.choice(n, size=_count(self.train_mask_rate, n), replace=False)]
        return _edges_of_nodes(idx, nodes), nodes, None


def _per_user_pick(idx: _MaskIndex, counts_wanted: np.ndarray, rng) -> np.ndarray:
    """Pick ``counts_wanted[u]`` random train query nodes of each user u (vectorised)."""
    nodes, user = idx.train_nodes, idx.train_user
    n = len(nodes)
    if n == 0:
        return nodes
    perm = rng.permutation(n)
    # stable sort of the shuffled nodes by user: a random order within each user
    order = perm[np.argsort(user[perm], kind="stable")]
    u_sorted = user[order]
    per_user = np.bincount(u_sorted, minlength=len(counts_wanted))
    start = np.concatenate([[0], np.cumsum(per_user)[:-1]])
    rank = np.arange(n) - start[u_sorted]
    return nodes[order[rank < counts_wanted[u_sorted]]]


class UserBalancedMasking(MaskingStrategy):
    """Like :class:`QueryMasking`, but every user gets the same number ``k`` of masked query
    nodes: ``k = per_user`` if given, else ``round(train_mask_rate * median train query
    nodes per user)`` (at least 1). A user never has all its train query nodes masked: a
    user with ``n <= k`` train query nodes gives ``n - 1`` (masking all would be a cold start,
    see :class:`ColdStartMasking`). Needs user nodes."""

    def __init__(self, train_mask_rate: float = 0.3, per_user: int | None = None):
        self.train_mask_rate = _check_rate("train_mask_rate", train_mask_rate)
        self.per_user = None if per_user is None else int(per_user)

    def _choose(self, rg, idx, rng):
        if not rg.has_users:
            raise ValueError("UserBalancedMasking needs a graph with user nodes (user_nodes=True)")
        n_u = np.bincount(idx.train_user, minlength=rg.num_users)
        if self.per_user is not None:
            k = self.per_user
        elif self.train_mask_rate <= 0 or not (n_u > 0).any():
            k = 0
        else:
            k = max(1, int(round(self.train_mask_rate * float(np.median(n_u[n_u > 0])))))
        want = np.clip(np.minimum(k, n_u - 1), 0, None)
        nodes = _per_user_pick(idx, want, rng)
        return _edges_of_nodes(idx, nodes), nodes, None


class ColdStartMasking(MaskingStrategy):
    """Simulate new users: hide all outcome edges (and context edges) of every train query
    node of a random ``user_rate`` fraction of the users (at least one), plus
    :class:`QueryMasking` at ``train_mask_rate`` on the other users' train query nodes.
    ``MaskSample.users`` lists the cold users. Needs user nodes."""

    def __init__(self, user_rate: float = 0.3, train_mask_rate: float = 0.3):
        self.user_rate = _check_rate("user_rate", user_rate)
        self.train_mask_rate = _check_rate("train_mask_rate", train_mask_rate)

    def _choose(self, rg, idx, rng):
        if not rg.has_users:
            raise ValueError("ColdStartMasking needs a graph with user nodes (user_nodes=True)")
        active = np.flatnonzero(np.bincount(idx.train_user, minlength=rg.num_users) > 0)
        c = _count(self.user_rate, len(active))
        cold = np.sort(rng.choice(active, size=c, replace=False))
        is_cold = np.zeros(rg.num_users, dtype=bool)
        is_cold[cold] = True
        cold_node = is_cold[idx.train_user]
        warm = idx.train_nodes[~cold_node]
        picked = warm[rng.choice(len(warm), size=_count(self.train_mask_rate, len(warm)), replace=False)]
        nodes = np.concatenate([idx.train_nodes[cold_node], picked])
        return _edges_of_nodes(idx, nodes), nodes, cold
