"""Feedback from k = 0: a new user improves one routed query at a time.

Each held-out user starts with no interactions. An *event* routes one of the user's training
queries (from the pool: the reference run's data, where the user has all of them) and
reports, with :meth:`~proute.router.PersonalizedRouter.feedback`, the reward of the routed
LLM only (``bandit``: greedy, the router's top LLM, or ``bandit_explore``, an LLM drawn from
the softmax of its scores) or every LLM's (``full``: full information). Val and test reward
of the held-out users after each number of events of ``adapt.feedback_events``.
``adapt.feedback_imputations`` also compares the imputations of
``adapt.feedback_imputation`` (router.json) under bandit feedback.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from proute.study.adaptation.data import Support, block, router_scorer, summary, support_of
from proute.study.adaptation.new_users import NewUserInputs, Setting, load_placed

log = logging.getLogger(__name__)

#: mode name -> (what an event reports, explore)
MODES = {"bandit": ("bandit", False), "bandit_explore": ("bandit", True), "full": ("full", False)}


def _chosen(r, user, s: Support, mode: str, explore: bool, rng) -> list[str]:
    """The LLMs one event reports on: the routed one (bandit) or every observed one."""
    observed = s.rewards
    if mode == "full":
        return list(observed)
    scores, _ = r.score(None, [user], [s.task], query_emb=s.query_emb[None])
    cand = [j for j, m in enumerate(r.llms) if m in observed]
    if explore:
        p = np.exp(scores[0, cand] - scores[0, cand].max())
        return [r.llms[cand[rng.choice(len(cand), p=p / p.sum())]]]
    return [r.llms[max(cand, key=lambda j: scores[0, j])]]


def feedback_curve(
    make: Callable[[], Any],
    inputs: NewUserInputs,
    pool: Mapping[Any, Sequence[Support]],
    events: Sequence[int],
    mode: str,
) -> tuple[list[dict], float]:
    """``(curve, seconds per feedback call)``: val and test reward of the held-out users after
    each number of ``events`` per user, the router from ``make()`` (users added with none)."""
    kind, explore = MODES[mode]
    val, test = block(inputs.data, "val", inputs.held), block(inputs.data, "test", inputs.held)
    r, rng = make(), np.random.default_rng(inputs.seed)
    curve: list[dict] = []
    done, seconds, calls = 0, 0.0, 0
    for n in events:
        while done < n:
            for u in inputs.held:
                if done >= len(pool[u]):
                    continue  # this user has no more training queries
                s = pool[u][done]
                for llm in _chosen(r, u, s, kind, explore, rng):
                    t0 = time.perf_counter()
                    r.feedback(u, s.query_emb, llm, {"reward": s.rewards[llm], "task": s.task})
                    seconds, calls = seconds + time.perf_counter() - t0, calls + 1
            done += 1
        scorer = router_scorer(r, inputs.data)
        v, m = summary(scorer, val)["reward"], summary(scorer, test)
        curve.append({"events": n, "val_reward": v, "reward": m["reward"], "per_user": m["per_user"]})
        log.info("feedback (%s) %d: val %.4f test %.4f", mode, n, v, m["reward"])
    return curve, seconds / max(1, calls)


def fresh(inputs: NewUserInputs, setting: Setting):
    """The router under ``setting`` with every held-out user added with no interactions."""
    return load_placed(inputs.router_dir, setting, {u: [] for u in inputs.held}, 0)[0]


def pool_of(inputs: NewUserInputs) -> dict:
    """Each held-out user's feedback queries: its training queries of the pool data."""
    return {u: support_of(inputs.pool, u, inputs.seed + 7) for u in inputs.held}


def feedback_curves(inputs: NewUserInputs, setting: Setting, opts: Mapping[str, Any]) -> dict:
    """``{mode: curve, f"{mode}_seconds_per_call": s}`` for each of ``adapt.feedback_modes``."""
    pool, events = pool_of(inputs), [int(n) for n in opts["feedback_events"]]
    out: dict[str, Any] = {}
    for mode in opts["feedback_modes"]:
        if mode not in MODES:
            raise ValueError(f"adapt.feedback_modes: unknown mode {mode!r}; expected one of {list(MODES)}")
        curve, sec = feedback_curve(lambda: fresh(inputs, setting), inputs, pool, events, mode)
        out[mode], out[f"{mode}_seconds_per_call"] = curve, sec
    return out


def feedback_variants(inputs: NewUserInputs, setting: Setting, opts: Mapping[str, Any]) -> dict:
    """Bandit feedback (greedy and exploring) under each of ``adapt.feedback_imputations``,
    with the chosen new-user method and with ``fit``: ``{"<imputation>[+explore] (<method>)":
    {"curve": ..., "seconds_per_call": ...}}``."""
    pool, events = pool_of(inputs), [int(n) for n in opts["feedback_events"]]
    out: dict[str, Any] = {}
    for imputation in opts.get("feedback_imputations") or []:
        for mode in ("bandit", "bandit_explore"):
            for method in dict.fromkeys([setting[0], "fit"]):
                chosen = setting if method == setting[0] else ("fit", 1.0)

                def make(chosen=chosen, imputation=imputation):
                    r = fresh(inputs, chosen)
                    r.meta["adapt"]["feedback_imputation"] = str(imputation)
                    return r

                curve, sec = feedback_curve(make, inputs, pool, events, mode)
                name = f"{imputation}{'+explore' if mode == 'bandit_explore' else ''} ({method})"
                out[name] = {"curve": curve, "seconds_per_call": sec}
    return out
