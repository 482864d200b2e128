"""New users without retraining: ``add_user`` from k support queries, against references.

The router was trained without any row of the held-out users (``split=new_users_unseen``).
Each held-out user is placed with :meth:`~proute.router.PersonalizedRouter.add_user` from its
first k support queries (each with every LLM's outcome, rewards the user's own), for every
``(method, setting)`` of the grid; the setting is chosen on the held-out users' *validation*
pairs (mean over k), and the test pairs are reported at each k next to the router trained
with them (the reference run), the best single LLM of the known users' training rows and the
oracle. Feedback from k = 0 is :mod:`proute.study.adaptation.feedback`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from proute.baselines.tables import BestLLMRouter
from proute.data.table import USER_COLUMN
from proute.schema import UNKNOWN_USER_AVERAGE
from proute.study.adaptation.data import (
    HeldOutInputs,
    Support,
    block,
    llms_of,
    router_scorer,
    summary,
    support_of,
)

log = logging.getLogger(__name__)

Setting = tuple[str, float]  # (new_user_method, its value: mixture sharpness or prior strength)


class NewUserInputs(HeldOutInputs):
    """``router_dir``: trained without the held-out users; ``data``: the evaluation data (their
    support, val and test rows); ``pool``: the data whose training rows feed the feedback
    events (the reference run's, where the users have all their training queries);
    ``reference_dir``: the router trained with them (None: not trained)."""


def load_placed(router_dir: Path, setting: Setting, support: Mapping[Any, Sequence[Support]], k: int):
    """``(router, seconds per user)``: the router of ``router_dir`` under ``setting`` with each
    user of ``support`` added from its first ``k`` support queries."""
    from proute.router import PersonalizedRouter

    method, value = setting
    r = PersonalizedRouter.load(router_dir)
    r.new_user_method = method
    if method == "fit":
        r.prior_strength = float(value)
    elif method == "mixture":
        r.meta["adapt"]["mixture_sharpness"] = float(value)
    else:
        raise ValueError(f"unknown new-user method {method!r}; expected 'fit' or 'mixture'")
    t0 = time.perf_counter()
    for u, queries in support.items():
        r.add_user(u, [it for s in queries[:k] for it in s.interactions])
    return r, (time.perf_counter() - t0) / max(1, len(support))


def settings_of(opts: Mapping[str, Any]) -> list[Setting]:
    """The ``(method, value)`` grid: ``adapt.mixture_sharpness`` values of ``"mixture"`` and
    ``adapt.prior_strength`` values of ``"fit"`` (an empty list leaves the method out)."""
    out = [("mixture", float(v)) for v in opts.get("mixture_sharpness") or []]
    out += [("fit", float(v)) for v in opts.get("prior_strength") or []]
    if not out:
        raise ValueError(
            "adapt.mixture_sharpness and adapt.prior_strength are both empty: no add_user setting to try"
        )
    return out


def run_grid(inputs: NewUserInputs, settings: Sequence[Setting], ks: Sequence[int]) -> dict:
    """``{(method, value, k): {"val": reward, "test": summary, "seconds_per_user": s}}``."""
    val = block(inputs.data, "val", inputs.held)
    test = block(inputs.data, "test", inputs.held)
    support = {u: support_of(inputs.data, u, inputs.seed) for u in inputs.held}
    grid = {}
    for setting in settings:
        for k in ks:
            r, sec = load_placed(inputs.router_dir, setting, support, k)
            scorer = router_scorer(r, inputs.data)
            g = grid[(*setting, k)] = {
                "val": summary(scorer, val)["reward"],
                "test": summary(scorer, test),
                "seconds_per_user": sec,
            }
            log.info("%s %.1f k=%d: val %.4f test %.4f", *setting, k, g["val"], g["test"]["reward"])
    return grid


def best_single_llm(inputs: NewUserInputs, test) -> dict:
    """The one LLM with the best mean reward on the known users' training rows, on ``test``."""
    t = inputs.data.table
    known = t[(t["split"] == "train") & ~t[USER_COLUMN].isin(inputs.held)]
    router = BestLLMRouter(llms_of(inputs.data)).fit(known)
    return {"llm": router.llms[int(np.argmax(router.row_))], "reward": summary(router, test)["reward"]}


def evaluate_new_users(inputs: NewUserInputs, opts: Mapping[str, Any]) -> dict:
    """The new-user results (``results.json``'s ``new_users``); ``opts`` is ``adapt``."""
    ks = [int(k) for k in opts["ks"]]
    settings = settings_of(opts)
    grid = run_grid(inputs, settings, ks)
    chosen = max(settings, key=lambda s: np.mean([grid[(*s, k)]["val"] for k in ks]))
    test = block(inputs.data, "test", inputs.held)
    res: dict[str, Any] = {
        "held_out_users": [str(u) for u in inputs.held],
        "test_pairs": len(test[0]),
        "method": chosen[0],
        "setting": chosen[1],
        "grid": [
            {"method": m, "setting": v, "k": k, "val_reward": g["val"], "test_reward": g["test"]["reward"]}
            | {"seconds_per_user": g["seconds_per_user"]}
            for (m, v, k), g in grid.items()
        ],
    }
    res["oracle"] = grid[(*chosen, ks[0])]["test"]["oracle"]
    res["best_single_llm"] = best_single_llm(inputs, test)
    res["trained_with_them"] = None
    if inputs.reference_dir is not None:
        from proute.router import PersonalizedRouter

        ref = PersonalizedRouter.load(inputs.reference_dir)
        res["trained_with_them"] = summary(router_scorer(ref, inputs.data), test)["reward"]
    res["k"] = [_k_row(k, grid[(*chosen, k)], res) for k in ks]
    res["average_policy_reward"] = average_policy_reward(inputs, chosen, test)
    return res


def _k_row(k: int, g: dict, res: dict) -> dict:
    reward, trained = g["test"]["reward"], res["trained_with_them"]
    return {
        "k": k,
        "reward": reward,
        "of_trained": reward / trained if trained else None,
        "of_oracle": reward / res["oracle"] if res["oracle"] else None,
        "per_user": g["test"]["per_user"],
        "seconds_per_user": g["seconds_per_user"],
        "picks": g["test"]["picks"],
    }


def average_policy_reward(inputs: NewUserInputs, setting: Setting, test) -> float:
    """Test reward of the held-out users routed as unknown users under
    ``unknown_user="average"`` (no add_user): k = 0 by construction, a check of it."""
    r, _ = load_placed(inputs.router_dir, setting, {}, 0)
    r.unknown_user = UNKNOWN_USER_AVERAGE
    pairs, dense = test
    unknown = pairs.assign(user_id=[f"unknown-{u}" for u in pairs[USER_COLUMN]])
    scores = router_scorer(r, inputs.data).score(unknown)

    class Fixed:  # the scores computed for the renamed users, evaluated on the real pairs
        llms = llms_of(inputs.data)

        def score(self, pairs):
            return scores

    return summary(Fixed(), (pairs, dense))["reward"]
