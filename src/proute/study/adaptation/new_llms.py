"""A new LLM without retraining: ``add_llm`` from its description (and a few outcomes).

The router was trained without any row of the held-out LLMs, not even their nodes
(``split=new_llms_unseen``). Each is added with
:meth:`~proute.router.PersonalizedRouter.add_llm` from its description and prices, and, for
each n of ``adapt.outcome_queries`` above 0, the outcomes of n of its training queries
(from the pool: the reference run's data, which has them). Test reward over all users next
to the router trained with it (the reference run), the router without it (never a
candidate) and the oracle.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from proute.data.table import USER_COLUMN
from proute.study.adaptation.data import HeldOutInputs, block, router_scorer, summary

log = logging.getLogger(__name__)


class NewLLMInputs(HeldOutInputs):
    """``router_dir``: trained without the held-out LLMs; ``data``: the evaluation data (every
    LLM a candidate); ``pool``: the data with the held-out LLMs' training rows (the
    reference run's; ``data`` when there is none: description only); ``reference_dir``: the
    router trained with them (None: not trained)."""


def outcomes_of(inputs: NewLLMInputs, name: str, n: int) -> list[dict]:
    """``n`` of the LLM's training (user, query) outcomes of the pool, drawn with the seed."""
    t = inputs.pool.table
    rows = t[(t["llm"] == name) & (t["split"] == "train")]
    qids = sorted(rows["query_id"].astype(str).unique())
    if not n or not qids:
        return []
    pick = set(np.random.default_rng(inputs.seed).choice(qids, size=min(n, len(qids)), replace=False))
    sel = rows[rows["query_id"].astype(str).isin(pick)]
    emb = inputs.pool.query_embedding_dict()
    return [
        {"query_emb": emb[str(q)], "task": str(tk), "user_id": u, "reward": float(w)}
        for q, tk, u, w in zip(sel["query_id"], sel["task"], sel[USER_COLUMN], sel["reward"], strict=True)
    ]


def with_added(inputs: NewLLMInputs, n: int):
    """``(router, outcomes given)``: the router with every held-out LLM added (``n`` outcome
    queries each)."""
    from proute.router import PersonalizedRouter

    r = PersonalizedRouter.load(inputs.router_dir)
    llms, given = inputs.data.data.llms, 0
    for name in inputs.held:
        outcomes = outcomes_of(inputs, name, n)
        info = llms.loc[name]
        r.add_llm(
            str(name),
            str(info["description"]),
            float(info["input_price"]),
            float(info["output_price"]),
            family=str(info["family"]),
            outcomes=outcomes,
        )
        given += len(outcomes)
    return r, given


def evaluate_new_llms(inputs: NewLLMInputs, opts: Mapping[str, Any]) -> dict:
    """The new-LLM results (``results.json``'s ``new_llms``); ``opts`` is ``adapt``."""
    from proute.router import PersonalizedRouter

    test = block(inputs.data, "test")
    without = summary(router_scorer(PersonalizedRouter.load(inputs.router_dir), inputs.data), test)
    res: dict[str, Any] = {
        "held_out_llms": [str(m) for m in inputs.held],
        "without_it": without["reward"],
        "oracle": without["oracle"],
        "trained_with_it": None,
        "added": [],
    }
    if inputs.reference_dir is not None:
        ref = summary(router_scorer(PersonalizedRouter.load(inputs.reference_dir), inputs.data), test)
        res["trained_with_it"], res["trained_picks"] = ref["reward"], ref["picks"]
    for n in opts["outcome_queries"]:
        r, given = with_added(inputs, int(n))
        m = summary(router_scorer(r, inputs.data), test)
        trained = res["trained_with_it"]
        res["added"].append(
            {
                "outcome_queries": int(n),
                "outcomes": given,
                "reward": m["reward"],
                "of_trained": m["reward"] / trained if trained else None,
                "of_oracle": m["reward"] / res["oracle"] if res["oracle"] else None,
                "picks": m["picks"],
            }
        )
        log.info("new LLM, %d outcome queries: %.4f (without %.4f)", int(n), m["reward"], without["reward"])
    return res
