"""The built routing graph: the DGL heterograph with its id maps and the dense supervision
layout (:class:`RoutingGraph`, made by :func:`proute.graph.build_graph`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from proute.data.table import SPLITS


@dataclass
class RoutingGraph:
    """A routing graph with its id maps and the dense supervision layout.

    Attributes
    ----------
    graph:
        The :class:`dgl.DGLHeteroGraph` (node data ``feat`` on query, task, llm nodes and,
        with ``user_features="history"``, on user nodes; edge data ``feat`` on the two
        outcome relations).
    users, llms, tasks:
        Id maps: node ``i`` of type ``user`` is ``users[i]``, etc. ``users`` is kept even
        when the graph has no user nodes (``has_users=False``), for :attr:`pairs`.
    query_nodes:
        One row per query node: ``user_id, query_id, task, split, user_idx, task_idx``
        (``user_id`` None and ``user_idx`` -1 without user nodes).
    reward, performance, cost:
        ``float32 [num_query_nodes, num_llms]``; 0 where not observed.
    observed:
        ``bool [num_query_nodes, num_llms]``: the LLM has a row for that query node.
    best:
        ``observed & (reward == max observed reward of the row)``: ties all count as best.
    edge_query, edge_llm:
        ``int64 [E]``: outcome edge ``i`` joins query node ``edge_query[i]`` and LLM
        ``edge_llm[i]`` (same ids in ``answered_by`` and ``answers``).
    query_user, query_task:
        ``int64 [num_query_nodes]``: user index (-1 without user nodes) and task index.
    edge_dim, edge_feature:
        Size and meaning of the outcome edge features (``edge_feature`` is
        ``"cost_norm,performance"`` with ``edge_dim=2``).
    user_features:
        ``learned``/``onehot``/``history`` (``none`` without user nodes).
    has_users, has_tasks:
        Whether the graph has user / task nodes.
    pairs, pair_node, pair_reward, pair_performance, pair_cost, pair_observed, pair_best:
        The same layout per (user, query) *pair*, for evaluation. With user nodes a pair is
        a query node (``pair_node == arange``, the matrices are the same objects). Without
        user nodes (the non-personalised ablation) several pairs share one query node: score
        ``pair_node`` and evaluate against the pair's own rewards, so the numbers compare
        with the personalised setting.
    """

    graph: Any
    users: list
    llms: list
    tasks: list
    query_nodes: pd.DataFrame
    reward: torch.Tensor
    performance: torch.Tensor
    cost: torch.Tensor
    observed: torch.Tensor
    best: torch.Tensor
    edge_query: torch.Tensor
    edge_llm: torch.Tensor
    query_user: torch.Tensor
    query_task: torch.Tensor
    pairs: pd.DataFrame
    pair_node: torch.Tensor
    pair_reward: torch.Tensor
    pair_performance: torch.Tensor
    pair_cost: torch.Tensor
    pair_observed: torch.Tensor
    pair_best: torch.Tensor
    edge_dim: int = 1
    edge_feature: str = "reward"
    user_features: str = "learned"
    has_users: bool = True
    has_tasks: bool = True
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ sizes
    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_llms(self) -> int:
        return len(self.llms)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def num_query_nodes(self) -> int:
        return len(self.query_nodes)

    @property
    def num_outcome_edges(self) -> int:
        return int(self.edge_query.shape[0])

    @property
    def device(self) -> torch.device:
        return self.reward.device

    @property
    def in_dims(self) -> dict[str, int]:
        """Input feature size per node type that carries ``feat`` (user only for history)."""
        g = self.graph
        return {nt: int(g.nodes[nt].data["feat"].shape[1]) for nt in g.ntypes if "feat" in g.nodes[nt].data}

    @property
    def etypes(self) -> list[tuple[str, str, str]]:
        return list(self.graph.canonical_etypes)

    # ------------------------------------------------------------------ selections
    def nodes_of(self, split: str) -> torch.Tensor:
        """Query node ids whose split is ``split`` (sorted), on :attr:`device`."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        ids = np.flatnonzero(self.query_nodes["split"].to_numpy() == split)
        return torch.as_tensor(ids, dtype=torch.int64, device=self.device)

    def pairs_of(self, split: str) -> torch.Tensor:
        """(user, query) pair ids whose split is ``split``, on :attr:`device`."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        ids = np.flatnonzero(self.pairs["split"].to_numpy() == split)
        return torch.as_tensor(ids, dtype=torch.int64, device=self.device)

    def split_block(self, split: str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """The (user, query) pairs of ``split`` and their ``reward``, ``performance``,
        ``cost`` and ``observed`` matrices as numpy, row-aligned: what every router is
        evaluated on (:func:`proute.evaluation.metrics.routing_metrics`)."""
        pairs = self.pairs_of(split)
        dense = {
            k: getattr(self, f"pair_{k}")[pairs].cpu().numpy()
            for k in ("reward", "performance", "cost", "observed")
        }
        return self.pairs.iloc[pairs.cpu().numpy()].reset_index(drop=True), dense

    def to(self, device) -> "RoutingGraph":
        """A copy with the graph and all tensors on ``device`` (tables are shared)."""
        device = torch.device(device)
        moved = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                moved[f.name] = v.to(device)
        same_pairs = self.pair_reward is self.reward
        out = dataclasses.replace(self, graph=self.graph.to(device), _cache={}, **moved)  # type: ignore[arg-type]
        if same_pairs:  # keep the identity for the personalised layout
            for name in ("reward", "performance", "cost", "observed", "best"):
                setattr(out, "pair_" + name, getattr(out, name))
        return out

    def __repr__(self) -> str:  # the default dataclass repr would print whole tables
        return (
            f"RoutingGraph(users={self.num_users}, query_nodes={self.num_query_nodes}, "
            f"tasks={self.num_tasks}, llms={self.num_llms}, "
            f"outcome_edges={self.num_outcome_edges}, edge_dim={self.edge_dim}, "
            f"edge_feature={self.edge_feature!r}, has_users={self.has_users}, "
            f"has_tasks={self.has_tasks}, user_features={self.user_features!r})"
        )
