"""Tests of proute.graph.masking."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from proute.graph import (
    ColdStartMasking,
    QueryMasking,
    RandomEdgeMasking,
    UserBalancedMasking,
    build_graph,
)
from synthetic import make_large, make_synthetic

CONF = Path(__file__).resolve().parents[1] / "conf"
STRATEGIES = [RandomEdgeMasking, QueryMasking, UserBalancedMasking, ColdStartMasking]


@pytest.fixture(scope="module")
def rg():
    s = make_synthetic(num_users=3, num_queries=60, missing_rate=0.2)
    return build_graph(*s.graph_inputs())


def _pairs(g, etype, reverse=False):
    s, d = g.edges(etype=etype)
    if reverse:
        s, d = d, s
    return set(zip(s.tolist(), d.tolist(), strict=True))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("cls", STRATEGIES)
def test_targets_are_hidden_train_edges(rg, cls):
    ms = cls().sample(rg, _gen())
    assert ms.num_targets > 0
    train = set(rg.nodes_of("train").tolist())
    assert set(ms.target_query.tolist()) <= train
    assert torch.equal(ms.target_query, rg.edge_query[ms.target_edge])
    assert torch.equal(ms.target_llm, rg.edge_llm[ms.target_edge])
    assert rg.observed[ms.target_query, ms.target_llm].all()
    # the message graph lacks exactly the target edges, in both directions
    all_edges = _pairs(rg.graph, "answered_by")
    targets = set(zip(ms.target_query.tolist(), ms.target_llm.tolist(), strict=True))
    assert len(targets) == ms.num_targets
    assert _pairs(ms.graph, "answered_by") == all_edges - targets
    assert _pairs(ms.graph, "answers", reverse=True) == all_edges - targets
    # remaining edges keep their features
    s, d = ms.graph.edges(etype="answered_by")
    assert torch.equal(ms.graph.edges["answered_by"].data["feat"][:, 0], rg.reward[s, d])
    s, d = ms.graph.edges(etype="answers")
    assert torch.equal(ms.graph.edges["answers"].data["feat"][:, 0], rg.reward[d, s])
    # nothing else is lost: nodes, node features, the receivers' context edges
    for nt in rg.graph.ntypes:
        assert ms.graph.num_nodes(nt) == rg.graph.num_nodes(nt)
    assert torch.equal(ms.graph.nodes["query"].data["feat"], rg.graph.nodes["query"].data["feat"])
    assert _pairs(ms.graph, "asks") == _pairs(rg.graph, "asks")
    assert _pairs(ms.graph, "contains") == _pairs(rg.graph, "contains")
    assert set(ms.graph.canonical_etypes) == set(rg.graph.canonical_etypes)
    # the original graph is untouched
    assert rg.graph.num_edges("answered_by") == rg.num_outcome_edges


def test_query_masking_hides_whole_nodes(rg):
    ms = QueryMasking(0.3).sample(rg, _gen(1))
    nodes = ms.masked_nodes
    n_train = len(rg.nodes_of("train"))
    assert len(nodes) == round(0.3 * n_train)
    # every outcome edge of a masked node is a target, no other edge is
    expected = torch.isin(rg.edge_query, nodes)
    got = torch.zeros_like(expected)
    got[ms.target_edge] = True
    assert torch.equal(got, expected)
    # masked nodes look like test queries: no outgoing context edges, incoming ones kept
    g = ms.graph
    assert (g.out_degrees(nodes, etype="asked_by") == 0).all()
    assert (g.out_degrees(nodes, etype="belongs_to") == 0).all()
    assert (g.in_degrees(nodes, etype="asks") == 1).all()
    assert (g.in_degrees(nodes, etype="answers") == 0).all()
    others = rg.nodes_of("train")[~torch.isin(rg.nodes_of("train"), nodes)]
    assert (g.out_degrees(others, etype="asked_by") == 1).all()
    assert torch.equal(
        g.out_degrees(others, etype="answered_by"), rg.graph.out_degrees(others, etype="answered_by")
    )


def test_random_edge_masking_keeps_context(rg):
    ms = RandomEdgeMasking(0.3).sample(rg, _gen(2))
    assert ms.num_targets == round(0.3 * rg.num_outcome_edges)
    assert ms.graph.num_edges("asked_by") == rg.graph.num_edges("asked_by")
    assert ms.graph.num_edges("belongs_to") == rg.graph.num_edges("belongs_to")
    assert set(ms.masked_nodes.tolist()) == set(ms.target_query.tolist())


def test_user_balanced_equal_counts(rg):
    for seed in range(3):
        ms = UserBalancedMasking(0.3).sample(rg, _gen(seed))
        per_user = torch.bincount(rg.query_user[ms.masked_nodes], minlength=rg.num_users)
        assert (per_user == per_user[0]).all() and per_user[0] > 0
        per_train = torch.bincount(rg.query_user[rg.nodes_of("train")], minlength=rg.num_users)
        assert per_user[0] == round(0.3 * float(per_train.double().median()))
    ms = UserBalancedMasking(per_user=5).sample(rg, _gen())
    assert torch.bincount(rg.query_user[ms.masked_nodes]).tolist() == [5, 5, 5]
    # a user never loses all its train queries
    ms = UserBalancedMasking(per_user=10_000).sample(rg, _gen())
    assert torch.equal(
        torch.bincount(rg.query_user[ms.masked_nodes]),
        torch.bincount(rg.query_user[rg.nodes_of("train")]) - 1,
    )


def test_cold_start(rg):
    ms = ColdStartMasking(user_rate=0.3, train_mask_rate=0.3).sample(rg, _gen(4))
    assert ms.users is not None and len(ms.users) == 1
    cold = int(ms.users[0])
    train = rg.nodes_of("train")
    cold_nodes = train[rg.query_user[train] == cold]
    assert torch.isin(cold_nodes, ms.masked_nodes).all()
    g = ms.graph
    assert g.in_degrees(cold, etype="asked_by") == 0
    warm = train[rg.query_user[train] != cold]
    n_warm_masked = int(torch.isin(warm, ms.masked_nodes).sum())
    assert n_warm_masked == round(0.3 * len(warm))


@pytest.mark.parametrize("cls", STRATEGIES)
def test_seeded_generator_reproducible(rg, cls):
    a = cls().sample(rg, _gen(7))
    b = cls().sample(rg, _gen(7))
    c = cls().sample(rg, _gen(8))
    assert torch.equal(a.target_edge, b.target_edge)
    assert _pairs(a.graph, "asked_by") == _pairs(b.graph, "asked_by")
    assert not torch.equal(a.target_edge, c.target_edge)
    # successive draws from one generator differ
    gen = _gen(7)
    d, e = cls().sample(rg, gen), cls().sample(rg, gen)
    assert not torch.equal(d.target_edge, e.target_edge)


def test_no_user_graph(rg):
    s = make_synthetic()
    rgn = build_graph(*s.graph_inputs(), user_nodes=False)
    ms = QueryMasking().sample(rgn, _gen())
    assert ms.num_targets > 0 and "user" not in ms.graph.ntypes
    with pytest.raises(ValueError, match="user nodes"):
        UserBalancedMasking().sample(rgn, _gen())
    with pytest.raises(ValueError, match="user nodes"):
        ColdStartMasking().sample(rgn, _gen())


def test_rates_validated():
    with pytest.raises(ValueError):
        QueryMasking(1.5)
    with pytest.raises(ValueError):
        ColdStartMasking(user_rate=-0.1)


@pytest.mark.parametrize("name", ["query", "random", "user_balanced", "cold_start"])
def test_masking_configs(rg, name):
    from hydra.utils import instantiate

    from proute.config import compose

    cfg = compose("train", [f"masking={name}", "train_mask_rate=0.25"])
    strategy = instantiate(cfg.masking)
    assert strategy.train_mask_rate == 0.25
    assert strategy.sample(rg, _gen()).num_targets > 0
    # only whole-query-node masking can run on the mini-batch trainer's sampled blocks
    expected = "MiniBatchTrainer" if name == "query" else "Trainer"
    assert cfg.trainer._target_.rsplit(".", 1)[1] == expected


def test_timing_default_size():
    """Time each strategy on a default-size graph (54k query nodes x 9 LLMs); printed, not
    asserted (run with -s to see)."""
    s = make_large(num_users=9, num_queries=6000, num_llms=9)
    rgl = build_graph(*s.graph_inputs())
    assert rgl.num_query_nodes == 54_000
    lines = [f"graph: {rgl.num_query_nodes} query nodes, {rgl.num_outcome_edges} outcome edges"]
    for cls in STRATEGIES:
        strat, gen = cls(), _gen()
        strat.sample(rgl, gen)  # builds the cached index
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            strat.sample(rgl, gen)
            times.append(time.perf_counter() - t0)
        lines.append(f"{cls.__name__}: median {np.median(times) * 1e3:.1f} ms per sample")
    print("\n" + "\n".join(lines))
