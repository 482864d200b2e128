"""New users, feedback and new LLMs without retraining (proute.router.adapt, PersonalizedRouter
.add_user / .feedback / .add_llm / .unknown_user), and their thread safety.

One tiny router per module: four users who ask the same queries, three of whom get reward 1
from ``big-llama`` only and one from ``small-qwen`` only, so the population's choice is
``big-llama``; it is trained once (debug config, a few dozen steps) and copied per test.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from proute.router import PersonalizedRouter
from proute.router.interactions import reward_of

LLMS = ("big-llama", "small-qwen", "mid-gemma")
TOPICS = ["algebra", "geography", "poetry", "chemistry", "football", "cooking"]
USERS = {"u0": "big-llama", "u1": "big-llama", "u2": "big-llama", "u3": "small-qwen"}


def text(i: int) -> str:
    return f"A question about {TOPICS[i % 6]} number {i}: what is {i * 7 % 1000}?"


def table(path: Path, n_queries: int = 60) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_queries):
        split = "train" if i % 5 < 3 else ("val" if i % 5 == 3 else "test")
        for user, good in USERS.items():
            for llm in LLMS:
                rows.append(
                    {
                        "user_id": user,
                        "query_id": f"id{i}",
                        "query": text(i),
                        "task": TOPICS[i % 2],
                        "llm": llm,
                        "performance": float(rng.random() < 0.5),
                        "cost": 1.0,
                        "reward": 1.0 if llm == good else 0.0,
                        "split": split,
                    }
                )
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir) -> PersonalizedRouter:
    from conftest import train_overrides
    from proute.config import compose
    from proute.train import run

    tmp = tmp_path_factory.mktemp("adapt")
    cfg = compose(
        "train",
        train_overrides(tmp, cache_dir)
        + [
            "dataset=table",
            f"dataset.path={table(tmp / 'users.csv')}",
            "users=from_data",
            "split=provided",
            "train_epoch=40",
            "trainer.steps_per_epoch=2",
            "trainer.patience=40",
        ],
    )
    run(cfg, tmp / "run")
    return PersonalizedRouter.load(tmp / "run" / "router")


@pytest.fixture
def router(trained) -> PersonalizedRouter:
    """A private copy (its own locks; it starts from the trained router's immutable state,
    and its updates publish states of its own; the model and encoder are shared)."""
    r = copy.copy(trained)
    r._state_lock, r._update_lock = threading.RLock(), threading.RLock()
    return r


def interactions(good: str, queries) -> list[dict]:
    return [{"query": text(i), "llm": m, "reward": float(m == good)} for i in queries for m in LLMS]


NEW_Q = [{"query": text(i), "user_id": None} for i in range(100, 106)]


def routes(router, user_id) -> list[str]:
    return [r["model_name"] for r in router.route_batch([{**q, "user_id": user_id} for q in NEW_Q])]


def test_trained_router_personalises(router):
    assert routes(router, "u0") == ["big-llama"] * len(NEW_Q)
    assert routes(router, "u3") == ["small-qwen"] * len(NEW_Q)


@pytest.mark.parametrize("method", ["mixture", "fit"])
def test_add_user_places_two_opposite_new_users(router, method):
    router.new_user_method = method
    router.add_user("new_big", interactions("big-llama", range(3)))
    router.add_user("new_small", interactions("small-qwen", range(3)))
    assert routes(router, "new_big") == ["big-llama"] * len(NEW_Q)
    assert routes(router, "new_small") == ["small-qwen"] * len(NEW_Q)
    with pytest.raises(ValueError, match="already known"):
        router.add_user("new_big", [])
    with pytest.raises(KeyError, match="unknown llm 'gpt-9'"):
        router.add_user("x", [{"query": "hi", "llm": "gpt-9", "reward": 1.0}])


def test_no_interactions_routes_like_the_population_and_as_the_average_policy(router):
    router.add_user("blank", [])
    assert routes(router, "blank") == ["big-llama"] * len(NEW_Q)
    with pytest.raises(KeyError, match="unknown user_id 'stranger'"):
        router.route_single({"query": "hello", "user_id": "stranger"})
    assert isinstance(router.request_error({"query": "hello", "user_id": "stranger"}), KeyError)
    router.unknown_user = "average"
    assert router.request_error({"query": "hello", "user_id": "stranger"}) is None
    blank = router.score(None, ["blank"] * 6, query_emb=router.encode([q["query"] for q in NEW_Q]))[0]
    avg = router.score(None, ["stranger"] * 6, query_emb=router.encode([q["query"] for q in NEW_Q]))[0]
    np.testing.assert_allclose(blank, avg, rtol=1e-5, atol=1e-5)
    assert "stranger" not in router.users  # routing an unknown user does not add it
    with pytest.raises(ValueError, match="unknown_user"):
        router.unknown_user = "guess"


def test_load_accepts_the_unknown_user_policy(trained, tmp_path):
    trained.save(tmp_path / "r")
    r = PersonalizedRouter.load(tmp_path / "r", unknown_user="average")
    assert r.unknown_user == "average"
    assert r.route_single({"query": "hello", "user_id": "stranger"})["model_name"] in LLMS


@pytest.mark.slow  # about 40 s of embedding fits
def test_feedback_moves_a_users_choice(router):
    router.add_user("fb", [])
    assert routes(router, "fb")[0] == "big-llama"
    for i in range(6):  # bandit feedback: the LLM it tried and what it got
        router.feedback("fb", text(i), "big-llama", 0.0)
        router.feedback("fb", text(i), "small-qwen", {"reward": 1.0})
    assert routes(router, "fb") == ["small-qwen"] * len(NEW_Q)
    # a known user's state moves too (a little: it keeps its training evidence)
    before = router.score([q["query"] for q in NEW_Q], ["u0"] * 6)[0]
    router.feedback("u0", text(1), "mid-gemma", 1.0)
    after = router.score([q["query"] for q in NEW_Q], ["u0"] * 6)[0]
    assert not np.allclose(before, after) and routes(router, "u0")[0] == "big-llama"
    with pytest.raises(KeyError, match="unknown user_id"):
        router.feedback("nobody", "hi", "big-llama", 1.0)
    router.unknown_user = "average"
    router.feedback("nobody", "hi", "big-llama", 1.0)  # under "average": added
    assert "nobody" in router.users


def test_own_imputation_moves_only_the_routed_llm():
    """Bandit evidence (one LLM of a query observed): the unobserved LLMs keep the user's
    own predicted odds and the routed LLM's share follows its reward; a fully observed
    query has the same target under either imputation."""
    import torch

    from proute.router.adapt import Evidence, fit_target

    pop = torch.tensor([[0.8, 0.1, 0.1]])  # the population prefers LLM 0
    own = torch.tensor([[0.0, 5.0, 3.0]])  # this user is predicted to prefer LLM 1
    ev = Evidence.empty(2, 1).extend([1.0, 0.0], 0, [1], [[0.0]], [0.0])  # LLM 1 failed
    own_t, mask, useful = fit_target(ev, 3, pop, 0.1, own)
    pop_t, _, _ = fit_target(ev, 3, pop, 0.1)
    p = torch.softmax(own, 1)
    assert bool(mask.all() and useful.all())
    assert float(own_t[0, 2] / own_t[0, 0]) == pytest.approx(float(p[0, 2] / p[0, 0]), rel=1e-4)
    assert own_t[0, 1] < p[0, 1]  # the failed routed LLM loses share ...
    assert own_t[0, 2] > own_t[0, 0]  # ... to the user's own next choice, not the population's
    assert pop_t[0, 0] > pop_t[0, 2]  # (population imputation: the population's choice)
    good = Evidence.empty(2, 1).extend([1.0, 0.0], 0, [1], [[1.0]], [1.0])
    assert fit_target(good, 3, pop, 0.1, own)[0][0, 1] > p[0, 1]
    full = ev.extend([1.0, 0.0], 0, [0, 2], [[0.5], [0.2]], [0.5, 0.2])
    torch.testing.assert_close(fit_target(full, 3, pop, 0.1, own)[0], fit_target(full, 3, pop, 0.1)[0])


@pytest.mark.slow  # fits: about a minute
@pytest.mark.parametrize("method", ["mixture", "fit"])
def test_bandit_feedback_leaves_a_bad_llm_and_keeps_a_good_one(router, method):
    """New users fed back only the reward of the LLM they were routed to: one whose
    population choice (big-llama) fails leaves it and gains reward; one for whom it is good
    keeps it."""
    router.new_user_method = method
    likes = {"leaver": "small-qwen", "keeper": "big-llama"}
    for user in likes:
        router.add_user(user, [])
    gained = {user: 0.0 for user in likes}
    for i in range(8):
        for user, good in likes.items():
            llm = router.route_single({"query": text(i), "user_id": user})["model_name"]
            router.feedback(user, text(i), llm, float(llm == good))
            gained[user] += float(llm == good) * (i >= 4)
    assert routes(router, "keeper") == ["big-llama"] * len(NEW_Q)
    assert "big-llama" not in routes(router, "leaver")
    assert gained["leaver"] >= 1  # in its last four events: it found its LLM
    assert routes(router, "leaver").count("small-qwen") >= len(NEW_Q) // 2


def test_outcomes_without_reward_use_the_population_definition(router):
    definition = router.meta["adapt"]["reward_definition"]
    assert definition["kind"] == "linear"
    reward, perf, _ = reward_of(router.state, {"performance": 1.0, "cost": 1.0}, "algebra")
    expected = definition["performance"] + definition["intercept"] + definition["cost_norm"] * 0.0
    assert perf == 1.0 and reward == pytest.approx(expected)
    assert reward_of(router.state, {"reward": 0.25, "performance": 1.0}, "algebra")[0] == 0.25


def test_add_llm_makes_a_new_llm_routable(router):
    n = len(router.llms)
    router.add_llm("tiny-phi", "Phi, a tiny cheap model by Microsoft", 0.05, 0.1, family="phi")
    assert router.llms[-1] == "tiny-phi" and len(router.llms) == n + 1
    out = router.route_single({"query": text(200), "user_id": "u0"})
    assert set(out["scores"]) == set(LLMS) | {"tiny-phi"}
    assert router.meta["llm_table"][-1]["input_price"] == 0.05
    # its outcomes decide its place: with the best outcomes for u3 it is u3's choice, and
    # the same description with bad outcomes scores below it
    good = [{"query": text(i), "reward": 1.0, "user_id": "u3"} for i in range(12)]
    router.add_llm("great-mistral", "Mistral, a strong open model", 0.2, 0.6, outcomes=good)
    bad = [{**o, "reward": 0.0} for o in good]
    router.add_llm("poor-mistral", "Mistral, a strong open model", 0.2, 0.6, outcomes=bad)
    scores = router.route_single({"query": text(200), "user_id": "u3"})["scores"]
    assert scores["great-mistral"] > scores["poor-mistral"]
    assert routes(router, "u3") == ["great-mistral"] * len(NEW_Q)  # best for u3: chosen for u3
    assert routes(router, "u0") == ["big-llama"] * len(NEW_Q)  # no evidence for u0: unchanged
    # a new user who gets the best outcomes from it is routed to it ("fit": a mixture of the
    # trained users cannot prefer an LLM none of them has seen)
    router.new_user_method = "fit"
    router.add_user(
        "fan",
        [
            {"query": text(i), "llm": m, "reward": float(m == "great-mistral")}
            for i in range(6)
            for m in router.llms
        ],
    )
    assert routes(router, "fan") == ["great-mistral"] * len(NEW_Q)
    with pytest.raises(ValueError, match="already a candidate"):
        router.add_llm("tiny-phi", "again", 0, 0)


def test_save_and_load_keep_added_users_and_llms(router, tmp_path):
    router.add_user("new_small", interactions("small-qwen", range(3)))
    router.add_llm("tiny-phi", "Phi, a tiny cheap model by Microsoft", 0.05, 0.1)
    router.feedback("u1", text(2), "mid-gemma", 1.0)
    queries = [q["query"] for q in NEW_Q]
    users = ["new_small", "u1", "u0", "new_small", "u3", "u2"]
    before = router.score(queries, users)[0]
    router.save(tmp_path / "r")
    again = PersonalizedRouter.load(tmp_path / "r")  # the integrity hashes were recomputed
    assert again.users == router.users and again.llms == router.llms
    np.testing.assert_array_equal(again.score(queries, users)[0], before)
    # the saved evidence lets feedback continue after a reload
    again.feedback("new_small", text(4), "small-qwen", 1.0)
    assert routes(again, "new_small")[0] == "small-qwen"


def test_routing_is_consistent_while_users_are_added_and_updated(router):
    router.new_user_method = "mixture"  # fast updates: many of them land while readers run
    queries = [q["query"] for q in NEW_Q]
    emb = router.encode(queries)
    untouched = ["u0", "u3", "u2", "u1", "u0", "u3"]
    expected = router.score(None, untouched, query_emb=emb)[0]
    stop = threading.Event()
    errors: list[str] = []
    results: list[np.ndarray] = []

    def reader():
        try:
            while not stop.is_set():
                results.append(router.score(None, untouched, query_emb=emb)[0])
                router.route_batch([{"query": queries[0], "user_id": "u0"}])
        except Exception as exc:  # collected: a thread's exception would be lost
            errors.append(f"{type(exc).__name__}: {exc}")

    def writer():
        try:
            for i in range(4):
                router.add_user(f"w{i}", interactions(LLMS[i % 2], range(i, i + 2)))
                router.feedback(f"w{i}", text(i + 10), LLMS[2], 1.0)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            stop.set()

    threads = [threading.Thread(target=reader) for _ in range(8)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(results) >= 8 and all(np.allclose(r, expected, atol=1e-5) for r in results)
    assert all(f"w{i}" in router.users for i in range(4))
