"""Splits: by query text for every user, stratified, seeded; new users; new LLMs."""

import numpy as np
import pandas as pd
import pytest

from proute.data.pipeline import prepare
from proute.data.splits import (
    NewLLMSplit,
    NewUserSplit,
    ProvidedSplit,
    QuerySplit,
    check_query_disjoint,
    split_sizes,
)
from proute.data.table import DataError, RoutingData, make_llm_table, make_task_table
from proute.data.users import CostEfficiencyUsers


def user_data(n_queries=100, n_users=4, llms=("a-llama", "b-qwen", "c-gemma")) -> RoutingData:
    rng = np.random.default_rng(0)
    rows = []
    for q in range(n_queries):
        task = ["math", "code", "trivia", "qa"][q % 4]
        for llm in llms:
            rows.append(
                {
                    "query_id": f"q{q:03d}",
                    "query": f"question {q}",
                    "task": task,
                    "llm": llm,
                    "performance": float(rng.random() < 0.5),
                    "cost": float(rng.random()),
                }
            )
    data = RoutingData(
        pd.DataFrame(rows),
        make_llm_table({n: {} for n in llms}),
        make_task_table({t: "" for t in ["math", "code", "trivia", "qa"]}),
        "toy",
    )
    return CostEfficiencyUsers(preferences=np.linspace(0.2, 1.0, n_users).tolist())(data)


def test_query_split_sizes_stratified_and_disjoint_across_users():
    data = QuerySplit(ratios=[0.6, 0.2, 0.2], seed=1)(user_data())
    t = data.table
    check_query_disjoint(t)
    per_query = t.groupby("query_id")["split"].nunique()
    assert (per_query == 1).all()
    # 25 queries per task -> 15 / 5 / 5 in each task.
    counts = t.drop_duplicates("query_id").groupby(["task", "split"]).size().unstack()
    assert (counts["train"] == 15).all() and (counts["val"] == 5).all()
    assert (counts["test"] == 5).all()
    sizes = split_sizes(t)
    assert list(sizes.index) == ["train", "val", "test"]
    assert sizes.loc["train", "queries"] == 60 and sizes.loc["train", "user_queries"] == 240
    assert sizes.loc["test", "rows"] == 20 * 4 * 3


def test_query_split_is_seeded():
    d = user_data()
    a = QuerySplit(seed=5)(d).table["split"]
    b = QuerySplit(seed=5)(d).table["split"]
    c = QuerySplit(seed=6)(d).table["split"]
    assert a.equals(b)
    assert not a.equals(c)


@pytest.mark.parametrize("ratios", [[0.5, 0.5], [0.7, 0.2, 0.2], [1.2, -0.1, -0.1]])
def test_bad_ratios_are_rejected(ratios):
    with pytest.raises(DataError, match="split_ratio"):
        QuerySplit(ratios=ratios)(user_data())


def test_provided_split_is_honoured_and_required():
    d = user_data()
    d.table["split"] = np.where(d.table["query_id"] < "q050", "train", "test")
    for splitter in (QuerySplit(), ProvidedSplit()):
        out = splitter(d).table
        assert (out["split"] == d.table["split"]).all()
    d.table = d.table.drop(columns="split")
    with pytest.raises(DataError, match="no 'split' column"):
        ProvidedSplit()(d)


def test_leaky_provided_split_is_caught():
    d = user_data()
    d.table["split"] = np.where(d.table["user_id"] == 0, "test", "train")
    with pytest.raises(DataError, match="one split for every user"):
        prepare(d, users=None, split=ProvidedSplit())


def test_new_users_keep_only_support_queries():
    out = NewUserSplit(users=[1], support_queries=3, seed=2)(user_data()).table
    new = out[out["new_user"]]
    assert set(new["user_id"]) == {1}
    assert new[new.split == "train"]["query_id"].nunique() == 3
    old = out[~out["new_user"]]
    assert old[old.split == "train"].groupby("user_id")["query_id"].nunique().eq(60).all()
    # The new user's val/test queries are all still there.
    assert new[new.split == "test"]["query_id"].nunique() == 20
    check_query_disjoint(out)


def test_new_llms_have_no_training_rows():
    out = NewLLMSplit(llms=["b-qwen"])(user_data()).table
    assert not ((out["llm"] == "b-qwen") & (out["split"] == "train")).any()
    assert ((out["llm"] == "b-qwen") & (out["split"] == "test")).any()
    assert out.loc[out["llm"] == "b-qwen", "new_llm"].all()
    with pytest.raises(DataError, match="not in the data"):
        NewLLMSplit(llms=["gpt-9"])(user_data())


def test_held_out_rows_none_and_all_draw_the_same_users_and_support():
    """``held_out_rows``: none (no row of the held-out users/LLMs: adaptation without
    retraining), all (every row: the router trained with them), the same draw either way."""
    support = NewUserSplit(user_fraction=0.25, support_queries=3, seed=2)(user_data())
    held = support.meta["split"]["new_users"]
    none = NewUserSplit(user_fraction=0.25, support_queries=3, seed=2, held_out_rows="none")(user_data())
    every = NewUserSplit(user_fraction=0.25, support_queries=3, seed=2, held_out_rows="all")(user_data())
    assert none.meta["split"]["new_users"] == every.meta["split"]["new_users"] == held
    assert not none.table["user_id"].astype(str).isin(held).any()
    assert none.table.equals(support.table[~support.table["new_user"]])  # the other users untouched
    assert len(every.table) == len(user_data().table)
    with pytest.raises(DataError, match="split.held_out_rows is 'some'"):
        NewUserSplit(users=[1], held_out_rows="some")(user_data())
    gone = NewLLMSplit(llms=["b-qwen"], held_out_rows="none")(user_data())
    assert "b-qwen" not in set(gone.table["llm"])
    assert prepare(
        user_data(), users=None, split=NewLLMSplit(llms=["b-qwen"], held_out_rows="none")
    ).data.llms.index.tolist() == ["a-llama", "c-gemma"]
    kept = NewLLMSplit(llms=["b-qwen"], held_out_rows="all")(user_data()).table
    assert ((kept["llm"] == "b-qwen") & (kept["split"] == "train")).any()


def test_prepare_validates_and_sorts():
    p = prepare(user_data(), users=None, split=QuerySplit())
    t = p.table
    assert list(t.columns[:2]) == ["user_id", "query_id"]
    assert t.equals(t.sort_values(["user_id", "query_id", "llm"], ignore_index=True))
    assert p.query_ids == sorted(p.query_ids)
    assert p.query_emb is None
