"""Tests of proute.graph.builder (the routing graph)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from proute.data.table import DataError
from proute.graph import RoutingGraph, build_graph
from synthetic import make_synthetic

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module")
def syn():
    return make_synthetic()


@pytest.fixture(scope="module")
def rg(syn) -> RoutingGraph:
    return build_graph(*syn.graph_inputs(), llm_family=["llama"], llm_families=syn.llm_family)


def _row_lookup(table, col):
    return {(r.user_id, r.query_id, r.llm): getattr(r, col) for r in table.itertuples()}


def test_counts(syn, rg):
    g = rg.graph
    n_train_q = syn.table.query_id[syn.table.split == "train"].nunique()  # 24
    assert (rg.num_users, rg.num_llms, rg.num_tasks) == (2, 3, 2)
    assert g.num_nodes("user") == 2 and g.num_nodes("task") == 2 and g.num_nodes("llm") == 3
    assert g.num_nodes("query") == 2 * 40 == rg.num_query_nodes
    assert g.num_edges("answered_by") == g.num_edges("answers") == 2 * n_train_q * 3
    assert g.num_edges("asks") == g.num_edges("contains") == 80
    assert g.num_edges("asked_by") == g.num_edges("belongs_to") == 2 * n_train_q
    # llama-0 <-> llama-2 only (LLMs are sorted by name)
    assert rg.llms == ["llama-0", "llama-2", "qwen-1"]
    s, d = g.edges(etype="same_family")
    assert sorted(zip(s.tolist(), d.tolist(), strict=True)) == [(0, 1), (1, 0)]
    assert rg.in_dims == {"query": 8, "task": 8, "llm": 8}
    assert rg.reward.shape == (80, 3) and rg.reward.dtype == torch.float32
    assert rg.observed.all()
    assert list(rg.query_nodes.columns) == ["user_id", "query_id", "task", "split", "user_idx", "task_idx"]
    assert sum(len(rg.nodes_of(s)) for s in ("train", "val", "test")) == 80


def test_unobserved_queries_are_receivers_only(rg):
    g = rg.graph
    for split in ("val", "test"):
        nodes = rg.nodes_of(split)
        assert len(nodes) > 0
        assert (g.out_degrees(nodes, etype="answered_by") == 0).all()
        assert (g.in_degrees(nodes, etype="answers") == 0).all()
        assert (g.out_degrees(nodes, etype="asked_by") == 0).all()
        assert (g.out_degrees(nodes, etype="belongs_to") == 0).all()
        assert (g.in_degrees(nodes, etype="asks") == 1).all()
        assert (g.in_degrees(nodes, etype="contains") == 1).all()
        assert not bool(torch.isin(rg.edge_query, nodes).any())
    train = rg.nodes_of("train")
    assert (g.out_degrees(train, etype="answered_by") == 3).all()
    assert (g.out_degrees(train, etype="asked_by") == 1).all()


def test_same_text_two_users_is_two_nodes(syn, rg):
    qn = rg.query_nodes
    rows = qn.index[qn.query_id == "q5"].tolist()
    assert len(rows) == 2
    assert sorted(qn.user_idx[rows].tolist()) == [0, 1]
    g = rg.graph
    f = g.nodes["query"].data["feat"]
    assert torch.equal(f[rows[0]], f[rows[1]])
    assert torch.allclose(f[rows[0]], torch.as_tensor(syn.query_emb["q5"]))
    # each is linked to its own user
    s, d = g.edges(etype="asks")
    assert {(int(s[d == r]), r) for r in rows} == {(int(qn.user_idx[r]), r) for r in rows}


def test_edge_features_equal_table_rewards(syn, rg):
    look = _row_lookup(syn.table, "reward")
    feat = rg.graph.edges["answered_by"].data["feat"]
    feat_rev = rg.graph.edges["answers"].data["feat"]
    assert feat.shape == (rg.num_outcome_edges, 1)
    assert torch.equal(feat, feat_rev)
    s, d = rg.graph.edges(etype="answered_by")
    assert torch.equal(s, rg.edge_query) and torch.equal(d, rg.edge_llm)
    s2, d2 = rg.graph.edges(etype="answers")
    assert torch.equal(s2, rg.edge_llm) and torch.equal(d2, rg.edge_query)
    qn = rg.query_nodes
    for i in range(rg.num_outcome_edges):
        q, m = int(rg.edge_query[i]), int(rg.edge_llm[i])
        want = look[(qn.user_id[q], qn.query_id[q], rg.llms[m])]
        assert feat[i, 0].item() == pytest.approx(want, abs=1e-6)
        assert rg.reward[q, m].item() == pytest.approx(want, abs=1e-6)
    # the dense layout covers val/test too
    test = rg.nodes_of("test")[0].item()
    assert rg.reward[test, 1].item() == pytest.approx(
        look[(qn.user_id[test], qn.query_id[test], rg.llms[1])], abs=1e-6
    )


def test_performance_edge_feature(syn):
    rg = build_graph(*syn.graph_inputs(), edge_feature="performance")
    assert torch.equal(
        rg.graph.edges["answered_by"].data["feat"][:, 0], rg.performance[rg.edge_query, rg.edge_llm]
    )


def test_best_marks_ties():
    t = pd.DataFrame(
        {
            "user_id": [0] * 6,
            "query_id": ["a"] * 3 + ["b"] * 3,
            "query": ["x"] * 6,
            "task": ["t"] * 6,
            "llm": ["m0", "m1", "m2"] * 2,
            "performance": [1.0, 0.0, 1.0, 0.0, 0.0, 0.0],
            "cost": [0.0] * 6,
            "reward": [0.5, 0.2, 0.5, -0.3, -0.3, -0.9],
            "split": ["train"] * 3 + ["test"] * 3,
        }
    )
    emb = {"a": np.ones(2), "b": np.zeros(2)}
    rg = build_graph(t, emb, {"t": np.ones(2)}, {m: np.ones(2) for m in ["m0", "m1", "m2"]})
    assert rg.best.tolist() == [[True, False, True], [True, True, False]]


def test_best_with_missing_llms(syn):
    s = make_synthetic(missing_rate=0.4, seed=3)
    rg = build_graph(*s.graph_inputs())
    assert not rg.observed.all()
    assert not (rg.best & ~rg.observed).any()
    assert (rg.best.sum(1) >= 1).all()
    masked = torch.where(rg.observed, rg.reward, torch.tensor(-1e9))
    assert torch.equal(rg.best, rg.observed & (masked == masked.max(1, keepdim=True).values))
    # no edge for an unobserved pair, one for every observed train pair
    assert rg.observed[rg.edge_query, rg.edge_llm].all()
    train = torch.zeros(rg.num_query_nodes, dtype=torch.bool)
    train[rg.nodes_of("train")] = True
    assert rg.num_outcome_edges == int((rg.observed & train[:, None]).sum())
    # synthetic user 0 has 0/1 rewards: many tied rows
    assert int((rg.best.sum(1) > 1).sum()) > 0


def test_edge_dim_2(syn):
    rg = build_graph(*syn.graph_inputs(), edge_dim=2)
    f = rg.graph.edges["answered_by"].data["feat"]
    assert f.shape == (rg.num_outcome_edges, 2)
    assert torch.equal(f[:, 1], rg.performance[rg.edge_query, rg.edge_llm])
    task = rg.query_task[rg.edge_query]
    for k in range(rg.num_tasks):
        c = f[task == k, 0]
        assert c.min().item() == pytest.approx(0.0) and c.max().item() == pytest.approx(1.0)
        raw = rg.cost[rg.edge_query, rg.edge_llm][task == k]
        assert torch.allclose(c, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)


def test_no_users(syn):
    rg = build_graph(*syn.graph_inputs(), user_nodes=False)
    g = rg.graph
    assert "user" not in g.ntypes and not rg.has_users
    assert g.num_nodes("query") == 40
    assert (rg.query_user == -1).all()
    assert len(rg.pairs) == 80 and rg.pair_reward.shape == (80, 3)
    # pair-level rewards are each user's; node-level (and edge features) the mean
    t = syn.table
    mean = t[t.split == "train"].groupby(["query_id", "llm"]).reward.mean()
    feat = g.edges["answered_by"].data["feat"][:, 0]
    for i in range(rg.num_outcome_edges):
        q, m = int(rg.edge_query[i]), int(rg.edge_llm[i])
        assert feat[i].item() == pytest.approx(mean[(rg.query_nodes.query_id[q], rg.llms[m])], abs=1e-6)
    look = _row_lookup(t, "reward")
    for p in range(0, 80, 7):
        row = rg.pairs.iloc[p]
        assert rg.pair_reward[p, 2].item() == pytest.approx(
            look[(row.user_id, row.query_id, rg.llms[2])], abs=1e-6
        )
        assert rg.query_nodes.query_id[int(rg.pair_node[p])] == row.query_id
    # a text held out for one user is held out for the shared node
    t2 = t.copy()
    t2.loc[(t2.user_id == 1) & (t2.query_id == t2.query_id[t2.split == "train"].iloc[0]), "split"] = "test"
    rg2 = build_graph(t2, syn.query_emb, syn.task_emb, syn.llm_emb, user_nodes=False)
    q0 = t2.query_id[t2.split == "train"].iloc[0]
    node = int(np.flatnonzero(rg2.query_nodes.query_id == q0)[0])
    assert rg2.query_nodes.split[node] == "test"
    assert rg2.graph.in_degrees(node, etype="answers") == 0


def test_no_tasks(syn):
    rg = build_graph(*syn.graph_inputs(), task_nodes=False)
    assert "task" not in rg.graph.ntypes and not rg.has_tasks
    assert set(rg.in_dims) == {"query", "llm"}
    assert rg.query_task.max().item() == 1  # still filled for metrics


def test_no_family(syn):
    rg = build_graph(*syn.graph_inputs(), llm_family=[])
    assert "same_family" not in rg.graph.etypes


def test_history_user_features(syn, rg):
    rgh = build_graph(*syn.graph_inputs(), user_features="history")
    assert rgh.in_dims["user"] == 8
    train = rg.nodes_of("train")
    f = rg.graph.nodes["query"].data["feat"]
    u0 = train[rg.query_user[train] == 0]
    assert torch.allclose(rgh.graph.nodes["user"].data["feat"][0], f[u0].mean(0), atol=1e-6)


def test_embedding_formats_and_errors(syn):
    ids = list(syn.query_emb)
    mat = np.stack([syn.query_emb[q] for q in ids])
    rg = build_graph(syn.table, (ids, mat), syn.task_emb, syn.llm_emb)
    rg2 = build_graph(*syn.graph_inputs())
    assert torch.equal(rg.graph.nodes["query"].data["feat"], rg2.graph.nodes["query"].data["feat"])
    bad = dict(syn.query_emb)
    bad.pop("q3")
    with pytest.raises(DataError, match="q3"):
        build_graph(syn.table, bad, syn.task_emb, syn.llm_emb)
    t = syn.table.copy()
    t.loc[0, "split"] = "val"  # one (user, query) with two splits
    with pytest.raises(DataError, match="split"):
        build_graph(t, syn.query_emb, syn.task_emb, syn.llm_emb)


def test_to_device_and_repr(rg):
    r2 = rg.to("cpu")
    assert r2.graph.device.type == "cpu" and r2.pair_reward is r2.reward
    assert "query_nodes=80" in repr(rg)


@pytest.mark.parametrize(
    "name", ["default", "no_users", "no_tasks", "no_family", "onehot_users", "history_users"]
)
def test_graph_configs(syn, name):
    from omegaconf import OmegaConf

    from proute.config import compose

    # Through Hydra: the variants inherit from graph/default (defaults list).
    cfg = compose("train", [f"graph={name}", "edge_dim=1", "llm_family=[llama]"])
    kwargs = OmegaConf.to_container(cfg.graph, resolve=True)
    rg = build_graph(*syn.graph_inputs(), llm_families=syn.llm_family, **kwargs)
    assert rg.has_users == (name != "no_users")
    assert rg.has_tasks == (name != "no_tasks")
    assert ("same_family" in rg.graph.etypes) == (name != "no_family")


def test_builder_docstring_example_runs():
    import doctest

    import proute.graph.builder as builder

    result = doctest.testmod(builder, verbose=False)
    assert result.attempted > 0 and result.failed == 0
