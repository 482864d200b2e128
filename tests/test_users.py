"""User simulators: the paper's reward formula, richer archetypes, query sets, seeding."""

import numpy as np
import pandas as pd
import pytest

from proute.data.table import DataError, RoutingData, best_mask, make_llm_table, make_task_table
from proute.data.users import (
    ArchetypeUsers,
    CostEfficiencyUsers,
    DataUsers,
    normalize_cost,
)


def query_table(n_queries=6, llms=("cheap-llama", "pricey-qwen")) -> RoutingData:
    rows = []
    for q in range(n_queries):
        task = "math" if q % 2 else "trivia"
        for j, llm in enumerate(llms):
            rows.append(
                {
                    "query_id": f"q{q}",
                    "query": f"question {q}",
                    "task": task,
                    "llm": llm,
                    "performance": float((q + j) % 2),
                    "cost": 1.0 + 4.0 * j + q,
                }
            )
    llm_table = make_llm_table({name: {} for name in llms})
    return RoutingData(pd.DataFrame(rows), llm_table, make_task_table({"math": "", "trivia": ""}), "toy")


def test_normalize_cost_is_min_max_within_task():
    t = pd.DataFrame({"task": ["a", "a", "a", "b", "b"], "cost": [1.0, 3.0, 2.0, 5.0, 5.0]})
    np.testing.assert_allclose(normalize_cost(t), [0.0, 1.0, 0.5, 0.0, 0.0])


def test_normalize_cost_fitted_on_some_rows():
    """The graph's edge_dim=2 form: min and max from the fit rows only, applied to all rows;
    a task without fit rows gives 0; the arithmetic is in the dtype asked for."""
    t = pd.DataFrame({"task": ["a", "a", "a", "b", "b"], "cost": [1.0, 3.0, 5.0, 2.0, 4.0]})
    fit = np.array([True, True, False, False, False])
    got = normalize_cost(t, fit=fit, dtype=np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array([0.0, 1.0, 2.0, 0.0, 0.0], np.float32))


def test_reward_defaults_to_performance():
    from proute.data.outcomes import reward_column, with_reward

    t = pd.DataFrame({"performance": [1, 0]})
    assert reward_column(t) == "performance"
    assert with_reward(t)["reward"].tolist() == [1.0, 0.0]
    t = t.assign(reward=[0.5, 0.25])
    assert reward_column(t) == "reward" and with_reward(t) is t


def test_cost_efficiency_reward_formula_exactly():
    data = query_table()
    out = CostEfficiencyUsers(preferences=[0.2, 1.0])(data).table
    assert sorted(out["user_id"].unique()) == [0, 1]
    assert len(out) == 2 * len(data.table)
    cost_norm = normalize_cost(data.table)
    for uid, p in [(0, 0.2), (1, 1.0)]:
        got = out[out["user_id"] == uid]["reward"].to_numpy()
        want = p * data.table["performance"].to_numpy() - (1 - p) * cost_norm
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_opposite_users_prefer_different_llms():
    data = query_table()
    # Make the pricey LLM always better: the quality user picks it, the thrifty one does not.
    data.table["performance"] = np.where(data.table["llm"] == "pricey-qwen", 0.6, 0.5)
    out = CostEfficiencyUsers(preferences=[0.0, 1.0])(data).table
    best = out[best_mask(out)]
    assert set(best[best.user_id == 0]["llm"]) == {"cheap-llama"}
    assert set(best[best.user_id == 1]["llm"]) == {"pricey-qwen"}


def test_preferences_outside_unit_interval_are_rejected():
    with pytest.raises(DataError, match="preferences"):
        CostEfficiencyUsers(preferences=[0.5, 1.5])(query_table())


def test_per_user_query_sets_are_seeded_and_sized():
    data = query_table(n_queries=20)
    sim = CostEfficiencyUsers(
        preferences=[0.3, 0.6, 0.9], query_assignment="per_user", queries_per_user=5, seed=7
    )
    a, b = sim(data).table, sim(data).table
    pd.testing.assert_frame_equal(a, b)
    per_user = a.groupby("user_id")["query_id"].nunique()
    assert (per_user == 5).all()
    sets = [frozenset(a[a.user_id == u]["query_id"]) for u in range(3)]
    assert len(set(sets)) > 1  # users ask different queries
    c = CostEfficiencyUsers(
        preferences=[0.3, 0.6, 0.9], query_assignment="per_user", queries_per_user=5, seed=8
    )(data).table
    assert not a[["user_id", "query_id"]].equals(c[["user_id", "query_id"]])


def test_bad_query_assignment_is_rejected():
    with pytest.raises(DataError, match="query_assignment"):
        CostEfficiencyUsers(query_assignment="everyone")(query_table())
    with pytest.raises(DataError, match="queries_per_user"):
        CostEfficiencyUsers(query_assignment="per_user", queries_per_user=99)(query_table())


def test_archetypes_go_beyond_one_global_weight():
    data = query_table(n_queries=40)
    sim = ArchetypeUsers(
        num_users=6, archetypes=["task_specialist", "family_loyal", "noisy"], noise=0.05, seed=3
    )
    out = sim(data)
    table = out.table
    profiles = pd.DataFrame(out.meta["user_profiles"]).set_index("user_id")
    assert list(profiles["archetype"]) == ["task_specialist", "family_loyal", "noisy"] * 2
    cost_norm = normalize_cost(table)
    # A task specialist's effective preference differs between tasks.
    spec = table[table.user_id == 0]
    prefs = profiles.loc[0, "task_preferences"]
    assert prefs["math"] != prefs["trivia"]
    p = spec["task"].map(prefs).to_numpy()
    np.testing.assert_allclose(
        spec["reward"], p * spec["performance"] - (1 - p) * cost_norm[spec.index], atol=1e-12
    )
    # A loyal user gets the bonus exactly on their family's LLMs.
    fam = profiles.loc[1, "family"]
    loyal = table[table.user_id == 1]
    p1 = profiles.loc[1, "preference"]
    base = p1 * loyal["performance"] - (1 - p1) * cost_norm[loyal.index]
    bonus = (loyal["reward"] - base).to_numpy()
    fam_of = data.llms["family"].reindex(loyal["llm"]).to_numpy()
    np.testing.assert_allclose(bonus, 0.3 * (fam_of == fam), atol=1e-12)
    # Noisy judgement: residuals are non-zero and seeded.
    again = sim(data).table
    np.testing.assert_array_equal(table["reward"], again["reward"])


def test_unknown_archetype_is_rejected():
    with pytest.raises(DataError, match="archetype"):
        ArchetypeUsers(archetypes=["contrarian"])(query_table())


def test_data_with_users_is_used_unchanged():
    data = query_table()
    data.table.insert(0, "user_id", "alice")
    out = DataUsers()(data).table
    assert (out["user_id"] == "alice").all()
    np.testing.assert_array_equal(out["reward"], data.table["performance"])
    pd.testing.assert_frame_equal(out.drop(columns="reward"), data.table)
    # A simulator also leaves existing users alone.
    out2 = CostEfficiencyUsers()(data).table
    assert len(out2) == len(data.table)


def test_from_data_without_users_is_an_error():
    with pytest.raises(DataError, match="user_id"):
        DataUsers()(query_table())
