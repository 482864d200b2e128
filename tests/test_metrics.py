"""Metrics: ties count, missing LLMs are not picked, per-user/task blocks, baselines."""

import numpy as np
import pandas as pd
import pytest

from proute.baselines import BASELINES, evaluate_baselines
from proute.evaluation.metrics import routing_metrics, tie_aware_macro_f1

LLMS = ["a", "b", "c"]


def nodes(users, queries, tasks):
    return pd.DataFrame({"user_id": users, "query_id": queries, "task": tasks})


def test_ties_count_as_correct_and_unobserved_llms_are_never_picked():
    reward = np.array(
        [
            [1.0, 1.0, 0.0],  # tie between a and b
            [0.2, 0.9, 0.5],
            [0.0, 0.3, 9.0],
        ]
    )  # c is best but unobserved
    observed = np.array([[True, True, True], [True, True, True], [True, True, False]])
    scores = np.array(
        [
            [0.1, 0.9, 0.0],  # picks b: tied best -> correct
            [0.9, 0.1, 0.0],  # picks a: wrong
            [0.0, 0.1, 5.0],
        ]
    )  # c scored highest but unobserved -> picks b
    m = routing_metrics(
        scores,
        reward,
        reward * 2,
        reward * 0 + 1,
        observed,
        nodes([0, 0, 1], ["q1", "q2", "q3"], ["t", "t", "u"]),
        LLMS,
    )
    o = m["overall"]
    assert o["accuracy"] == pytest.approx(2 / 3)
    assert o["reward"] == pytest.approx((1.0 + 0.2 + 0.3) / 3)
    assert o["oracle_reward"] == pytest.approx((1.0 + 0.9 + 0.3) / 3)
    assert o["reward_ratio"] == pytest.approx(1.5 / 2.2)
    assert o["performance"] == pytest.approx(2 * 1.5 / 3)
    assert list(m["picks"]["llm"]) == ["b", "a", "b"]
    assert m["per_user"]["0"]["accuracy"] == pytest.approx(0.5)
    assert m["per_user"]["1"]["accuracy"] == pytest.approx(1.0)
    assert m["per_task"]["u"]["n"] == 1


def test_disagreement_counts_shared_queries_only():
    reward = np.zeros((4, 3))
    observed = np.ones((4, 3), bool)
    scores = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0]], float)
    m = routing_metrics(
        scores,
        reward,
        reward,
        reward,
        observed,
        nodes([0, 1, 0, 1], ["q1", "q1", "q2", "q2"], ["t"] * 4),
        LLMS,
    )
    assert m["overall"]["disagreement"] == pytest.approx(0.5)


def test_macro_f1_perfect_and_tie_aware():
    best = np.array([[1, 1, 0], [0, 0, 1]], bool)
    assert tie_aware_macro_f1(np.array([1, 2]), best) == pytest.approx(1.0)
    assert tie_aware_macro_f1(np.array([0, 2]), best) == pytest.approx(1.0)
    # A wrong pick gives FN of 1/2 to each tied LLM.
    f1 = tie_aware_macro_f1(np.array([2, 2]), best)
    assert f1 == pytest.approx(np.mean([0.0, 0.0, 2 / 3]))


def test_baselines_pick_each_users_best_fixed_llm():
    train = pd.DataFrame(
        {
            "user_id": [0, 0, 1, 1] * 2,
            "query_id": ["q1"] * 4 + ["q2"] * 4,
            "task": ["t"] * 8,
            "llm": ["a", "b", "a", "b"] * 2,
            "reward": [1.0, 0.0, 0.0, 1.0, 0.8, 0.1, 0.2, 0.7],
        }
    )
    q = nodes([0, 1], ["q9", "q9"], ["t", "t"])
    for name in ("per_user", "per_user_task"):
        s = BASELINES[name](["a", "b"]).fit(train).score(q)
        assert s[0].argmax() == 0 and s[1].argmax() == 1
    s = BASELINES["best_llm"](["a", "b"]).fit(train).score(q)
    assert s[0].argmax() == s[1].argmax()
    dense = {"reward": np.array([[1.0, 0.0], [0.0, 1.0]]), "observed": np.ones((2, 2), bool)}
    dense.update(performance=dense["reward"], cost=dense["reward"])
    res = evaluate_baselines(train, q, dense, ["a", "b"])
    assert res["per_user"]["overall"]["accuracy"] == 1.0
    assert res["best_llm"]["overall"]["accuracy"] == 0.5
