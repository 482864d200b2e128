"""Baselines route as they claim to, scored by the GNN's metrics, tuned on validation only.

The tables are built here: queries in clusters of the embedding space (one task, so the
per-(user, task) table cannot tell the clusters apart), a split by query, and a reward
that depends on the user and, where a test says so, on the cluster.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from proute.baselines import BASELINES, evaluate_baselines, evaluate_baselines_by_split, fit_on_validation

LLMS = ["a", "b", "c"]
COST = {"a": 3.0, "b": 2.0, "c": 1.0}  # c is the cheapest
PERF = {"a": 0.9, "b": 0.5, "c": 0.1}  # a is the strongest


def make_table(best, num_users=2, num_queries=120, clusters=2, dim=8, noise=0.1, seed=0):
    """Long table and query embeddings; the reward is 1 for ``best(user, cluster)`` and 0
    otherwise, plus uniform noise of width ``noise``; performance and cost are per LLM."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 3
    qids = [f"q{i}" for i in range(num_queries)]
    cluster = {q: i % clusters for i, q in enumerate(qids)}
    emb = {q: (centres[cluster[q]] + rng.normal(size=dim)).astype(np.float32) for q in qids}
    order = rng.permutation(num_queries)
    split = {
        qids[i]: "train" if r < 0.6 * num_queries else "val" if r < 0.8 * num_queries else "test"
        for r, i in enumerate(order)
    }
    rows = []
    for u in range(num_users):
        for q in qids:
            for m in LLMS:
                r = float(m == best(u, cluster[q])) + noise * rng.uniform(-1, 1)
                rows.append((u, q, "t", m, PERF[m], COST[m], r, split[q]))
    cols = ["user_id", "query_id", "task", "llm", "performance", "cost", "reward", "split"]
    return pd.DataFrame(rows, columns=cols), emb


def block(table, split):
    """``(pairs, dense)`` of a split, as ``RoutingGraph.split_block`` gives it."""
    part = table[table["split"] == split]
    wide = part.pivot_table(
        index=["user_id", "query_id", "task"], columns="llm", values=["reward", "performance", "cost"]
    )
    dense = {k: wide[k].reindex(columns=LLMS).to_numpy() for k in ("reward", "performance", "cost")}
    dense["observed"] = ~np.isnan(dense["reward"])
    return wide.index.to_frame(index=False), dense


def run(table, emb, names, **kw):
    train = table[table["split"] == "train"]
    blocks = {s: block(table, s) for s in ("val", "test")}
    return evaluate_baselines_by_split(train, blocks, LLMS, names, query_emb=emb, **kw)


def picked(metrics, user):
    p = metrics["picks"]
    return p.loc[p["user_id"] == user, "llm"]


@pytest.fixture(scope="module")
def opposite():
    """User 0 wants a, user 1 wants b, whatever the query."""
    return make_table(lambda u, c: "a" if u == 0 else "b")


@pytest.fixture(scope="module")
def opposite_results(opposite):
    return run(*opposite, ["per_user", "knn", "mlp", "mf", "best_llm", "oracle", "cheapest", "strongest"])


def test_registry_has_every_baseline_by_name():
    names = "random best_llm per_user per_user_task knn mlp mf oracle cheapest strongest"
    assert set(BASELINES) == set(names.split())
    assert all(cls.name == name for name, cls in BASELINES.items())


@pytest.mark.parametrize("name", ["per_user", "knn", "mlp", "mf"])
def test_personalised_baselines_route_each_user_to_their_own_llm(opposite_results, name):
    test = opposite_results["test"][name]
    assert (picked(test, 0) == "a").all() and (picked(test, 1) == "b").all()
    assert test["overall"]["reward_ratio"] > 0.99


def test_unpersonalised_baseline_gives_everyone_the_same_llm(opposite_results):
    test = opposite_results["test"]["best_llm"]
    assert test["picks"]["llm"].nunique() == 1
    assert test["overall"]["reward_ratio"] < 0.7


def test_oracle_is_the_upper_bound(opposite_results, opposite):
    for split in ("val", "test"):
        m = opposite_results[split]["oracle"]
        assert m["overall"]["reward_ratio"] == pytest.approx(1.0)
        assert m["overall"]["accuracy"] == 1.0 and m["upper_bound"] is True
    assert "upper_bound" not in opposite_results["test"]["knn"]
    pairs, _ = block(opposite[0], "test")
    with pytest.raises(ValueError, match="oracle.*rewards"):
        BASELINES["oracle"](LLMS).fit(opposite[0]).score(pairs)


def test_cheapest_and_strongest_ignore_the_reward(opposite_results):
    assert (opposite_results["test"]["cheapest"]["picks"]["llm"] == "c").all()
    assert (opposite_results["test"]["strongest"]["picks"]["llm"] == "a").all()


def test_knn_beats_per_user_when_the_best_llm_depends_on_the_query_cluster():
    table, emb = make_table(lambda u, c: ("a", "b")[c] if u == 0 else ("b", "c")[c], clusters=2)
    res = run(table, emb, ["per_user", "per_user_task", "knn"])["test"]
    knn, fixed = res["knn"]["overall"], res["per_user"]["overall"]
    assert knn["reward_ratio"] > 0.99
    assert fixed["reward_ratio"] < 0.7 and res["per_user_task"]["overall"]["reward"] == pytest.approx(
        fixed["reward"]
    )


def test_hyperparameters_are_chosen_on_validation_and_never_see_test():
    table, emb = make_table(
        lambda u, c: ("a", "b", "c")[c] if u == 0 else ("c", "b", "a")[c], clusters=3, noise=0.8
    )
    before = run(table, emb, ["knn", "mf"])
    # Reverse every test reward: a selection that looked at test would change.
    flipped = table.copy()
    test_rows = flipped["split"] == "test"
    flipped.loc[test_rows, "reward"] = -flipped.loc[test_rows, "reward"]
    after = run(flipped, emb, ["knn", "mf"])
    for name in ("knn", "mf"):
        b, a = before["val"][name], after["val"][name]
        assert b["selected_on"] == "val" and b["selected"] == a["selected"]
        assert b["val_reward_by_params"] == a["val_reward_by_params"]
        assert b["overall"] == a["overall"]  # validation metrics untouched
        assert before["test"][name]["overall"]["reward"] != after["test"][name]["overall"]["reward"]
        grid = b["val_reward_by_params"]
        best = max(grid, key=lambda g: g["val_reward"])
        assert b["selected"] == {k: v for k, v in best.items() if k != "val_reward"}
        assert len(grid) == len(list(BASELINES[name].grid.values())[0])


def test_without_a_validation_block_the_defaults_are_used(opposite):
    table, emb = opposite
    pairs, dense = block(table, "test")
    res = evaluate_baselines(table[table["split"] == "train"], pairs, dense, LLMS, ["knn"], query_emb=emb)
    assert res["knn"]["selected_on"] == "defaults"
    assert res["knn"]["selected"] == {"k": BASELINES["knn"].defaults["k"]}


@pytest.mark.parametrize("name", ["knn", "mlp", "mf"])
def test_missing_embeddings_are_a_clear_error(opposite, name):
    table, emb = opposite
    train = table[table["split"] == "train"]
    with pytest.raises(ValueError, match=f"baseline '{name}' needs query embeddings: pass query_emb="):
        run(table, None, [name])
    partial = {q: v for q, v in emb.items() if q != train["query_id"].iloc[0]}
    with pytest.raises(ValueError, match=f"no vector for 1 query id.*'{train['query_id'].iloc[0]}'"):
        fit_on_validation(name, LLMS, train, query_emb=partial)


def test_embeddings_as_ids_and_matrix_and_unknown_users(opposite):
    """``(ids, matrix)`` works like the dict; a user with no training rows is still scored."""
    table, emb = opposite
    train = table[table["split"] == "train"]
    ids = list(emb)
    pairs, _ = block(table, "test")
    pairs = pd.concat([pairs, pairs.head(3).assign(user_id=7)], ignore_index=True)
    for name in ("knn", "mlp", "mf"):
        router, _ = fit_on_validation(name, LLMS, train, query_emb=(ids, np.stack([emb[q] for q in ids])))
        scores = router.score(pairs)
        assert scores.shape == (len(pairs), 3) and np.isfinite(scores).all()


@pytest.mark.parametrize("name", ["per_user", "per_user_task", "knn", "mlp", "mf", "cheapest"])
def test_an_llm_without_training_rows_is_never_picked(opposite, name):
    """A new LLM (split=new_llms) has no training rows: no baseline may prefer it blindly."""
    table, emb = opposite
    train = table[(table["split"] == "train") & (table["llm"] != "c")]
    pairs, _ = block(table, "test")
    router, _ = fit_on_validation(name, LLMS, train, query_emb=emb)
    scores = router.score(pairs)
    assert (scores[:, 2] == -np.inf).all() and np.isfinite(scores[:, :2]).all()


def test_fitted_baselines_are_deterministic(opposite):
    table, emb = opposite
    train, val = table[table["split"] == "train"], block(table, "val")
    pairs, _ = block(table, "test")
    for name in ("mlp", "mf"):
        one, two, other = (BASELINES[name](LLMS, seed=s).fit(train, emb, val).score(pairs) for s in (3, 3, 4))
        np.testing.assert_array_equal(one, two)
        assert not np.array_equal(one, other)


def test_every_baseline_is_accepted_by_the_config():
    from proute.config import compose, validate_config

    validate_config(compose("train", [f"baselines=[{','.join(BASELINES)}]"]))
