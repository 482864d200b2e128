"""Message-flow blocks for training, from DGL's samplers.

Both trainers run the GNN on blocks whose outputs are just the nodes the loss needs (the
hidden query nodes, their users, every LLM): a node that only passes context (the other
train query nodes) is computed at the layers where it is needed, and val/test query nodes,
which send nothing, never appear. :func:`full_neighbor_batch` builds them with full
neighbourhoods from a masked graph (:mod:`proute.graph.masking`): the same numbers as a
full-graph forward, with less work. :class:`MaskedNeighborSampler` samples them for
mini-batch training:

A batch is a set of *seed* train query nodes. Like :class:`~proute.graph.masking.QueryMasking`,
the seeds' outcome edges (both directions) and their ``asked_by``/``belongs_to`` edges are
excluded from sampling, so each seed looks like a val/test query (a receiver only) and is
trained on the situation it meets at test time (docs/DESIGN.md, flaw 6). The output nodes
are the seeds, their users and every LLM (the decoder scores (user, query, LLM) triples);
:class:`dgl.dataloading.NeighborSampler` draws ``fanouts[l]`` in-neighbours per relation for
layer ``l`` and returns message-flow blocks. User, task and LLM nodes have in-degrees in the
tens of thousands (every query of a user, a task, an LLM): sampling their neighbourhoods is
what makes a step's cost depend on the batch, not on the graph.

``fanouts``: one entry per GNN layer (first layer first), each an int (every relation) or a
mapping ``{relation: int, "default": int}``; -1 takes every neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from proute._deps import import_dgl
from proute.graph.routing_graph import RoutingGraph
from proute.schema import LLM, QUERY, QUERY_SENDER_RELATIONS, USER, is_outcome

dgl = import_dgl()

# DGL's fused sampler (used with more than one thread) orders a block's neighbours
# differently from run to run, so the same seed gave different losses on two threads;
# the unfused one is deterministic.
SAMPLER_FUSED = False


@dataclass
class Batch:
    """One sampled mini-batch: ``blocks`` (first layer first), the graph's input features
    ``node_feat``, the hidden pairs (``target_query``, ``target_llm``: ids in the routing
    graph) and their rows in the last block's outputs (``target_pos`` query, ``target_user_pos``
    user; every LLM is an output in id order, so an LLM's row is its id)."""

    blocks: list
    node_feat: dict
    target_query: torch.Tensor
    target_llm: torch.Tensor
    target_pos: torch.Tensor
    target_user_pos: torch.Tensor | None


def _fanout_dicts(fanouts, etypes: Sequence[tuple], num_layers: int) -> list[dict]:
    if isinstance(fanouts, (int, Mapping)):
        fanouts = [fanouts] * num_layers
    fanouts = list(fanouts)
    if len(fanouts) != num_layers:
        raise ValueError(f"trainer.fanouts has {len(fanouts)} entries; the GNN has {num_layers} layers")
    rels = [et[1] for et in etypes]
    out = []
    for f in fanouts:
        if isinstance(f, Mapping):
            unknown = sorted(set(f) - set(rels) - {"default"})
            if unknown:
                raise ValueError(f"trainer.fanouts names unknown relations {unknown}; the graph has {rels}")
            out.append({et: int(f.get(et[1], f.get("default", -1))) for et in etypes})
        else:
            out.append({et: int(f) for et in etypes})
    return out


def _copy_outcome_feats(blocks, graph) -> None:
    for block in blocks:
        for cet in block.canonical_etypes:
            if is_outcome(cet):
                block.edges[cet].data["feat"] = graph.edges[cet].data["feat"][block.edges[cet].data[dgl.EID]]


def _make_batch(rg: RoutingGraph, blocks, seeds: torch.Tensor, users, hidden_q, hidden_l, node_feat) -> Batch:
    """A :class:`Batch` whose outputs are ``seeds`` (query), ``users`` and every LLM."""
    pos = torch.empty(rg.num_query_nodes, dtype=torch.int64, device=hidden_q.device)
    pos[seeds] = torch.arange(len(seeds), device=hidden_q.device)
    user_pos = torch.searchsorted(users, rg.query_user[hidden_q]) if users is not None else None
    return Batch(blocks, node_feat, hidden_q, hidden_l, pos[hidden_q], user_pos)


def _output_nodes(rg: RoutingGraph, seeds: torch.Tensor) -> tuple[dict, torch.Tensor | None]:
    out = {QUERY: seeds, LLM: torch.arange(rg.num_llms, device=seeds.device)}
    users = None
    if rg.has_users:
        users = torch.unique(rg.query_user[seeds])
        out[USER] = users
    return out, users


def _node_feat(rg: RoutingGraph) -> dict:
    return {
        nt: rg.graph.nodes[nt].data["feat"] for nt in rg.graph.ntypes if "feat" in rg.graph.nodes[nt].data
    }


def _full_blocks(rg: RoutingGraph, graph, seeds: torch.Tensor, num_layers: int):
    """Full-neighbourhood blocks of ``graph`` whose outputs are ``seeds``, their users and
    every LLM; ``(blocks, users)``."""
    out, users = _output_nodes(rg, seeds)
    sampler = dgl.dataloading.MultiLayerFullNeighborSampler(num_layers, fused=SAMPLER_FUSED)
    _, _, blocks = sampler.sample_blocks(graph, out)
    _copy_outcome_feats(blocks, graph)
    return blocks, users


def full_neighbor_batch(rg: RoutingGraph, sample, num_layers: int) -> Batch:
    """Blocks with full neighbourhoods on a mask sample's graph, for its hidden pairs."""
    blocks, users = _full_blocks(rg, sample.graph, sample.masked_nodes, num_layers)
    return _make_batch(
        rg, blocks, sample.masked_nodes, users, sample.target_query, sample.target_llm, _node_feat(rg)
    )


def full_neighbor_blocks(rg: RoutingGraph, nodes: torch.Tensor, num_layers: int):
    """``(blocks, node_feat, query_pos, users)``: full-neighbourhood blocks of ``rg.graph``
    whose outputs are the sorted unique ``nodes`` (row ``query_pos[i]`` is
    ``nodes[i]``), their ``users`` (sorted) and every LLM — what scoring held-out query
    nodes needs, exactly as a full-graph forward computes it."""
    seeds, query_pos = torch.unique(nodes, return_inverse=True)
    blocks, users = _full_blocks(rg, rg.graph, seeds, num_layers)
    return blocks, _node_feat(rg), query_pos, users


class MaskedNeighborSampler:
    """Seeds → blocks with the seeds' own outcome and sender edges excluded."""

    def __init__(self, rg: RoutingGraph, fanouts, num_layers: int):
        g = rg.graph
        self.rg, self.g = rg, g
        self.etypes = list(g.canonical_etypes)
        self.sampler = dgl.dataloading.NeighborSampler(
            _fanout_dicts(fanouts, self.etypes, num_layers), fused=SAMPLER_FUSED
        )
        eq = rg.edge_query.cpu().numpy()
        counts = np.bincount(eq, minlength=rg.num_query_nodes)
        self.ptr = np.concatenate([[0], np.cumsum(counts)])  # outcome edges of node n: ptr[n]:ptr[n+1]
        self.train_nodes = torch.from_numpy(np.flatnonzero(counts > 0))
        self.sender_eid = {}  # per query -> user/task relation: the edge id of each sending query node
        for cet in self.etypes:
            if cet[1] in QUERY_SENDER_RELATIONS:
                src = g.edges(etype=cet)[0].cpu().numpy()
                lookup = np.full(rg.num_query_nodes, -1, np.int64)
                lookup[src] = np.arange(len(src))
                self.sender_eid[cet] = lookup
        self.node_feat = _node_feat(rg)

    def _outcome_eids(self, seeds: np.ndarray) -> np.ndarray:
        start, count = self.ptr[seeds], self.ptr[seeds + 1] - self.ptr[seeds]
        offsets = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        return np.repeat(start, count) + offsets

    def sample(self, seeds: torch.Tensor, generator: torch.Generator | None = None) -> Batch:
        """Blocks for seed query nodes ``seeds`` (ids in ``rg.graph``)."""
        rg, g = self.rg, self.g
        dgl.seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        s = seeds.cpu().numpy()
        hidden = self._outcome_eids(s)
        hidden_t = torch.from_numpy(hidden).to(g.device)
        exclude = {cet: hidden_t for cet in self.etypes if is_outcome(cet)}
        for cet, lookup in self.sender_eid.items():
            e = lookup[s]
            exclude[cet] = torch.from_numpy(e[e >= 0]).to(g.device)
        out, users = _output_nodes(rg, seeds.to(g.device))
        _, _, blocks = self.sampler.sample_blocks(g, out, exclude_eids=exclude)
        _copy_outcome_feats(blocks, g)
        return _make_batch(
            rg,
            blocks,
            seeds.to(g.device),
            users,
            rg.edge_query[hidden_t],
            rg.edge_llm[hidden_t],
            self.node_feat,
        )
