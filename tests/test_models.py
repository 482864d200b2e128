"""Tests of proute.models (layers, encoder, decoders, the router model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from proute.graph import QueryMasking, build_graph
from proute.models import ContextCache, PersonalizedRouterModel, build_model
from proute.models.convs import CONVS
from proute.models.decoder import DECODERS
from synthetic import make_synthetic

CONF = Path(__file__).resolve().parents[1] / "conf"
DIM = 16


@pytest.fixture(scope="module")
def syn():
    return make_synthetic(missing_rate=0.2, seed=1)


@pytest.fixture(scope="module")
def rg(syn):
    return build_graph(*syn.graph_inputs(), llm_family=["llama"], llm_families=syn.llm_family)


def _model(rg, conv="graphconv", decoder="mlp", seed=0, **kw) -> PersonalizedRouterModel:
    torch.manual_seed(seed)
    return build_model(rg, conv=conv, decoder=decoder, embedding_dim=DIM, **kw)


def _scores(model, rg, g=None):
    model.eval()
    with torch.no_grad():
        h = model(rg.graph if g is None else g)
        nodes = torch.arange(rg.num_query_nodes)
        return model.score_all(h, nodes, rg.query_user if rg.has_users else None)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("conv", CONVS)
def test_forward_backward(rg, conv, decoder):
    model = _model(rg, conv, decoder)
    model.train()
    ms = QueryMasking(0.3).sample(rg, torch.Generator().manual_seed(0))
    h = model(ms.graph)
    assert set(h) == {"user", "query", "task", "llm"}
    assert all(v.shape == (ms.graph.num_nodes(k), DIM) for k, v in h.items())
    logits = model.score_pairs(h, ms.target_query, ms.target_llm, rg.query_user[ms.target_query])
    assert logits.shape == (ms.num_targets,)
    labels = rg.best[ms.target_query, ms.target_llm].float()
    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
    loss.backward()
    assert torch.isfinite(loss)
    gnn = model.gnn
    for name, mod in [
        ("query input", gnn.in_proj["query"]),
        ("user input", gnn.in_proj["user"]),
        ("outcome llm->query", gnn.convs[0].mods["answers"]),
        ("outcome query->llm", gnn.convs[0].mods["answered_by"]),
        ("asks", gnn.convs[0].mods["asks"]),
        ("self term", gnn.self_lin[1]["query"]),
        ("decoder", model.decoder),
    ]:
        grads = [p.grad for p in mod.parameters()]
        assert grads and all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    assert not any(isinstance(m, nn.Sigmoid) for m in model.modules())  # logits only


@pytest.mark.parametrize("conv", CONVS)
def test_edge_features_influence_messages(syn, conv):
    rg = build_graph(*syn.graph_inputs())  # a private graph: its edge data is modified
    model = _model(rg, conv)
    model.eval()
    feat_ab = rg.graph.edges["answered_by"].data["feat"].clone()
    feat_a = rg.graph.edges["answers"].data["feat"].clone()
    q = int(rg.edge_query[0])
    edges = torch.nonzero(rg.edge_query == q).flatten()
    with torch.no_grad():
        base = model(rg.graph)["query"][q].clone()
        # change one edge's feature (both directions)
        for et, f in (("answered_by", feat_ab), ("answers", feat_a)):
            g = f.clone()
            g[edges[0]] += 1.0
            rg.graph.edges[et].data["feat"] = g
        changed = model(rg.graph)["query"][q]
        assert not torch.allclose(base, changed, atol=1e-5)
        # swap the outcomes of two LLMs of the node: same mean feature, different messages
        g = feat_a.clone()
        a, b = edges[0], edges[1]
        g[a], g[b] = feat_a[b] + 0.5, feat_a[a] - 0.5
        rg.graph.edges["answered_by"].data["feat"] = feat_ab
        rg.graph.edges["answers"].data["feat"] = g
        swapped = model(rg.graph)["query"][q]
        assert not torch.allclose(base, swapped, atol=1e-5)
    rg.graph.edges["answers"].data["feat"] = feat_a


def _same(rg, split, key_same, key_diff):
    """Two query nodes of ``split`` equal on key_same columns, different on key_diff."""
    qn = rg.query_nodes
    nodes = rg.nodes_of(split).tolist()
    for i in nodes:
        for j in nodes:
            if i < j and all(qn[k][i] == qn[k][j] for k in key_same) and qn[key_diff][i] != qn[key_diff][j]:
                return i, j
    raise AssertionError("no such pair in the synthetic data")


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("conv", CONVS)
def test_own_text_matters(rg, conv, residual):
    """Two test queries of one user and task differ only in text: a model without a self
    term would give them the same scores (GraphConv has none)."""
    i, j = _same(rg, "test", ["user_id", "task"], "query_id")
    s = _scores(_model(rg, conv, residual=residual), rg)
    assert (s[i] - s[j]).abs().max() > 1e-4


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("conv", CONVS)
def test_users_get_different_scores(rg, conv, decoder):
    i, j = _same(rg, "test", ["query_id"], "user_id")
    s = _scores(_model(rg, conv, decoder), rg)
    assert (s[i] - s[j]).abs().max() > 1e-4


def _variant_graph(syn, variant):
    kw = {
        "default": {},
        "family": {"llm_family": ["llama"], "llm_families": syn.llm_family},
        "no_users": {"user_nodes": False},
        "no_tasks": {"task_nodes": False},
        "onehot": {"user_features": "onehot"},
        "history": {"user_features": "history"},
        "edge_dim2": {"edge_dim": 2},
    }[variant]
    return build_graph(*syn.graph_inputs(), **kw)


@pytest.mark.parametrize(
    "variant", ["default", "family", "no_users", "no_tasks", "onehot", "history", "edge_dim2"]
)
@pytest.mark.parametrize("conv", CONVS)
def test_encode_new_queries_matches_full_graph(syn, conv, variant):
    rg = _variant_graph(syn, variant)
    norm = "batch" if variant == "family" else "layer"
    model = _model(rg, conv, num_layers=3 if variant == "default" else 2, norm=norm)
    model.train()
    for _ in range(2):  # move BatchNorm running statistics away from their defaults
        model(rg.graph)
    model.eval()
    with torch.no_grad():
        h_full, states = model.forward_with_states(rg.graph)
        cache = model.context_cache(rg.graph)
        feat = rg.graph.nodes["query"].data["feat"]
        for split in ("val", "test"):
            nodes = rg.nodes_of(split)
            users = rg.query_user[nodes] if rg.has_users else None
            tasks = rg.query_task[nodes] if rg.has_tasks else None
            hq = model.gnn.encode_new_queries(states, feat[nodes], users, tasks)
            assert torch.allclose(hq, h_full["query"][nodes], atol=1e-5)
            full = model.score_all(h_full, nodes, users)
            new = model.score_new(cache, feat[nodes], users, tasks)
            assert new.shape == (len(nodes), rg.num_llms)
            assert torch.allclose(new, full, atol=1e-5)
            assert torch.allclose(
                model.score_new((h_full, states), feat[nodes], users, tasks), full, atol=1e-5
            )
        # train nodes have outcome edges: their full-graph representation differs
        train = rg.nodes_of("train")
        u = rg.query_user[train] if rg.has_users else None
        t = rg.query_task[train] if rg.has_tasks else None
        assert not torch.allclose(
            model.gnn.encode_new_queries(states, feat[train], u, t), h_full["query"][train], atol=1e-4
        )


@pytest.mark.parametrize("conv", CONVS)
def test_new_queries_need_no_graph_and_match_the_block_form(syn, conv, monkeypatch):
    """Serving one query must not build DGL blocks (that cost ~10x the arithmetic): every
    conv of the registry is evaluated by ``one_in_edge``; the block form (the fallback for
    modules it does not know) gives the same states."""
    import proute.models.gnn as gnn_mod

    rg = _variant_graph(syn, "default")
    model = _model(rg, conv, norm="layer")
    model.eval()
    with torch.no_grad():
        _, states = model.forward_with_states(rg.graph)
        nodes = rg.nodes_of("test")
        args = (
            states,
            rg.graph.nodes["query"].data["feat"][nodes],
            rg.query_user[nodes],
            rg.query_task[nodes],
        )

        def no_graph(*a, **k):
            raise AssertionError("a DGL block was built for new queries")

        with monkeypatch.context() as m:
            m.setattr(gnn_mod.dgl, "create_block", no_graph)
            direct = model.gnn.encode_new_queries(*args)

        def unknown(*a, **k):
            raise NotImplementedError

        monkeypatch.setattr(gnn_mod, "one_in_edge", unknown)
        blocks = model.gnn.encode_new_queries(*args)
    assert torch.allclose(direct, blocks, atol=1e-5)
    assert not torch.allclose(direct[:1], direct[1:2])  # queries differ: nothing degenerate


def test_score_all_matches_score_pairs(rg):
    for decoder in DECODERS:
        model = _model(rg, "gat", decoder)
        model.eval()
        with torch.no_grad():
            h = model(rg.graph)
            nodes = rg.nodes_of("val")
            users = rg.query_user[nodes]
            all_ = model.score_all(h, nodes, users)
            n, L = all_.shape
            q = nodes.repeat_interleave(L)
            pairs = model.score_pairs(h, q, torch.arange(L).repeat(n), users.repeat_interleave(L))
            assert torch.allclose(all_, pairs.view(n, L), atol=1e-5)
            chunked = model.decoder.score_all(h["query"][nodes], h["llm"], h["user"][users], chunk=3)
            assert torch.allclose(all_, chunked, atol=1e-5)


def test_no_user_model(syn):
    rg = _variant_graph(syn, "no_users")
    model = _model(rg)
    assert not model.has_users and not model.decoder.use_user
    s = _scores(model, rg)
    assert s.shape == (rg.num_query_nodes, rg.num_llms)
    with pytest.raises(ValueError):
        model.decoder(torch.zeros(2, DIM), torch.zeros(2, DIM), torch.zeros(2, DIM))
    # evaluation per (user, query) pair goes through pair_node
    per_pair = model.score_all(model(rg.graph), rg.pair_node)
    assert per_pair.shape == (len(rg.pairs), rg.num_llms)


def test_hparams_and_cache_round_trip(rg):
    model = _model(rg, "gatv2", "bilinear", conv_kwargs={"num_heads": 4})
    hp = json.loads(json.dumps(model.hparams))
    again = build_model(**hp)
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    again.load_state_dict(model.state_dict())
    model.eval()
    again.eval()
    with torch.no_grad():
        assert torch.allclose(_scores(model, rg), _scores(again, rg))
        cache = model.context_cache(rg.graph)
        assert all("query" not in s for s in cache.states) and "query" not in cache.h
        back = ContextCache.from_tensors(cache.state_tensors())
        nodes = rg.nodes_of("test")
        feat = rg.graph.nodes["query"].data["feat"][nodes]
        a = model.score_new(cache, feat, rg.query_user[nodes], rg.query_task[nodes])
        b = model.score_new(back, feat, rg.query_user[nodes], rg.query_task[nodes])
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="disagrees"):
        build_model(rg, edge_dim=2)
    with pytest.raises(ValueError, match="multiple"):
        build_model(rg, conv="gat", embedding_dim=10, conv_kwargs={"num_heads": 4})
    with pytest.raises(ValueError, match="not hyperparameters of conv"):
        build_model(rg, conv="graphconv", conv_kwargs={"num_heads": 4})


def test_learns_on_synthetic(rg):
    """A few steps of query-masked training reduce the loss on the masked targets."""
    model = _model(rg, "graphconv", dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    gen = torch.Generator().manual_seed(0)
    strategy = QueryMasking(0.3)
    fixed = strategy.sample(rg, torch.Generator().manual_seed(123))

    def loss_on(ms):
        h = model(ms.graph)
        logits = model.score_pairs(h, ms.target_query, ms.target_llm, rg.query_user[ms.target_query])
        return nn.functional.binary_cross_entropy_with_logits(
            logits, rg.best[ms.target_query, ms.target_llm].float()
        )

    with torch.no_grad():
        before = float(loss_on(fixed))
    model.train()
    for _ in range(20):
        opt.zero_grad()
        loss_on(strategy.sample(rg, gen)).backward()
        opt.step()
    with torch.no_grad():
        after = float(loss_on(fixed))
    assert after < before - 0.05, (before, after)


def _model_options():
    return sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def test_every_registered_conv_has_a_model_config():
    assert set(_model_options()) == set(CONVS)


@pytest.mark.parametrize("name", _model_options())
@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_model_configs(rg, name, decoder):
    from proute.config import compose

    cfg = compose("train", [f"model={name}", "embedding_dim=16", f"model.decoder={decoder}"])
    from hydra.utils import instantiate

    model = instantiate(cfg.model)(rg)
    assert isinstance(model, PersonalizedRouterModel)
    assert model.hparams["embedding_dim"] == 16
    assert model.hparams["conv"] == name and model.hparams["decoder"] == decoder
    assert type(model.decoder) is DECODERS[decoder]
    assert _scores(model, rg).shape == (rg.num_query_nodes, rg.num_llms)


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("edge_dim", [1, 2])
@pytest.mark.parametrize("conv", CONVS)
def test_outcome_conv_equals_per_edge_film(conv, edge_dim, dense, monkeypatch):
    """The outcome modules aggregate FiLM messages without building them per edge (a dense
    matmul when one side is small, else DGL's SpMM): the result and its gradients equal
    the per-edge reference form."""
    import dgl

    from proute.models import layers
    from proute.models.convs import make_outcome_conv
    from proute.models.layers import EdgeGATConv

    monkeypatch.setattr(layers, "DENSE_SIDE_MAX", 512 if dense else 0)

    torch.manual_seed(0)
    g = dgl.heterograph(
        {("a", "r", "b"): (torch.randint(0, 30, (200,)), torch.randint(0, 25, (200,)))}, {"a": 30, "b": 28}
    )  # receivers 25..27 have no in-edge
    mod = make_outcome_conv(conv, 8, edge_dim)
    with torch.no_grad():  # non-zero FiLM biases, so every term is exercised
        mod.film.gamma.bias.normal_()
        mod.film.beta.bias.normal_()
    x, y, e = torch.randn(30, 8, requires_grad=True), torch.randn(28, 8), torch.randn(200, edge_dim)
    out = mod(g, (x, y), efeat=e)
    fn = dgl.function
    with g.local_scope():
        if isinstance(mod, EdgeGATConv):
            H, F = mod.num_heads, mod.out_feats
            hs = mod.fc_src(x).view(-1, H, F)
            alpha = dgl.nn.functional.edge_softmax(g, mod._logits(g, hs, mod.fc_dst(y).view(-1, H, F), e))
            g.srcdata["h"], g.edata["e"], g.edata["a"] = hs, e, alpha.unsqueeze(-1)
            g.apply_edges(lambda ed: {"m": ed.data["a"] * mod.film(ed.src["h"], ed.data["e"])})
            g.update_all(fn.copy_e("m", "m"), fn.sum("m", "o"))
            ref = g.dstdata["o"].reshape(28, H * F)
        else:
            g.srcdata["h"], g.edata["e"] = mod.fc(x), e
            g.apply_edges(lambda ed: {"m": mod.film(ed.src["h"], ed.data["e"])})
            g.update_all(fn.copy_e("m", "m"), fn.mean("m", "o"))
            ref = g.dstdata["o"] + (mod.fc_self(y) if mod.fc_self is not None else 0)
    assert torch.allclose(out, ref, atol=1e-5)
    assert out[25:28].abs().sum() == 0 or conv == "sage"
    w = torch.randn_like(out)
    grads = torch.autograd.grad((out * w).sum(), [x] + list(mod.parameters()), allow_unused=True)
    grads_ref = torch.autograd.grad((ref * w).sum(), [x] + list(mod.parameters()), allow_unused=True)
    for a, b in zip(grads, grads_ref, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-4)
