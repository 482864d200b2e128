"""The adaptation experiments (``python -m proute.study adapt``, proute.study.adaptation) on a
tiny table: users u0-u2 get reward 1 from ``big-llama`` only, u3 and the held-out u4 from
``small-qwen`` only; the router is trained without any row of u4 and places it afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from proute.study import adaptation
from proute.study.__main__ import main as study_main

LLMS = ("big-llama", "small-qwen", "mid-gemma")
TOPICS = ["algebra", "geography", "poetry", "chemistry", "football", "cooking"]
USERS = {"u0": "big-llama", "u1": "big-llama", "u2": "big-llama", "u3": "small-qwen", "u4": "small-qwen"}


def table(path: Path, n_queries: int = 50) -> Path:
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
                        "query": f"A question about {TOPICS[i % 6]} number {i}: what is {i * 7 % 1000}?",
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


def overrides(tmp: Path, cache: Path, experiment: str, *more: str) -> list[str]:
    from conftest import train_overrides

    return train_overrides(tmp / "hydra", cache) + [
        f"experiment={experiment}",
        "dataset=table",
        f"dataset.path={table(tmp / 'users.csv')}",
        "users=from_data",
        "train_epoch=40",
        "trainer.steps_per_epoch=2",
        "trainer.patience=40",
        *more,
    ]


def test_new_users_reward_rises_with_support_queries(tmp_path, cache_dir):
    args = overrides(
        tmp_path,
        cache_dir,
        "adapt_new_users",
        "split.users=[u4]",
        "adapt.ks=[0,10]",
        "adapt.mixture_sharpness=[]",
        "adapt.prior_strength=[1.0]",
        "adapt.feedback_events=[0,10]",
        "adapt.feedback_modes=[full]",
    )
    out = tmp_path / "out"
    assert study_main(["adapt", *args, "--out", str(out)]) == 0
    res = json.loads((out / "new_users_s42.json").read_text())["new_users"]
    assert res["held_out_users"] == ["u4"]
    by_k = {r["k"]: r for r in res["k"]}
    assert sorted(by_k) == [0, 10]
    # k = 0: the average user of u0-u3 prefers big-llama, wrong for u4; 10 support queries fix it
    assert by_k[0]["reward"] < 0.5 < by_k[10]["reward"]
    assert by_k[10]["picks"].get("small-qwen", 0) > by_k[10]["picks"].get("big-llama", 0)
    assert res["best_single_llm"]["llm"] == "big-llama"
    assert res["oracle"] == pytest.approx(1.0)
    assert res["trained_with_them"] > 0.5  # the reference run saw all of u4's training rows
    assert res["average_policy_reward"] == pytest.approx(by_k[0]["reward"])
    curve = res["feedback"]["full"]
    assert [c["events"] for c in curve] == [0, 10]
    assert curve[0]["reward"] < 0.5 < curve[1]["reward"]
    text = (out / "new_users_s42.md").read_text()
    assert "| 10 |" in text and (out / "new_users_s42.png").stat().st_size > 0
    # adapt_feedback reuses both finished training runs (the same train configs)
    runs = out / "runs"
    stamps = {
        d: (runs / d / "router" / "router.json").stat().st_mtime_ns
        for d in ("new_users_without_s42", "new_users_reference_s42")
    }
    feedback_args = [a for a in args if not a.startswith(("experiment=", "adapt.feedback_modes="))]
    fb = adaptation.run(
        [*feedback_args, "experiment=adapt_feedback", "adapt.feedback_imputations=[own]"], out
    )
    assert {d: (runs / d / "router" / "router.json").stat().st_mtime_ns for d in stamps} == stamps
    variants = fb["new_users"]["feedback_variants"]
    assert set(variants) == {"own (fit)", "own+explore (fit)"}
    assert all([c["events"] for c in v["curve"]] == [0, 10] for v in variants.values())
    assert (out / "feedback_s42.md").read_text().count("| own") == 2


def test_new_llms_are_added_and_scored(tmp_path, cache_dir):
    args = overrides(
        tmp_path, cache_dir, "adapt_new_llms", "split.llms=[small-qwen]", "adapt.outcome_queries=[0,5]"
    )
    res = adaptation.run(args, tmp_path / "out")["new_llms"]
    assert res["held_out_llms"] == ["small-qwen"]
    # without small-qwen, u3 and u4 (2 of 5 users) can get no reward: at most 3/5 of the oracle
    assert res["without_it"] <= 0.6 + 1e-9 and res["oracle"] == pytest.approx(1.0)
    assert [a["outcome_queries"] for a in res["added"]] == [0, 5]
    assert res["added"][0]["outcomes"] == 0 and res["added"][1]["outcomes"] > 0
    for a in res["added"]:
        assert 0.0 <= a["reward"] <= res["oracle"] + 1e-9
        assert sum(a["picks"].values()) == 10 * len(USERS)  # every test pair routed
    assert res["trained_with_it"] > res["without_it"]


def test_a_config_without_an_adapt_block_is_refused(train_cfg):
    with pytest.raises(ValueError, match="no `adapt:` block"):
        adaptation.options(train_cfg())
