"""Baseline routers: the same interface as the GNN router, one registry, one evaluation.

A baseline is fitted on the training rows and gives ``score(pairs) -> [n, num_llms]`` for a
frame of (user, query) rows (``user_id``, ``query_id``, ``task``): each is a
:class:`proute.evaluation.scoring.Scorer`, and :func:`proute.evaluation.scoring.evaluate`
scores every router alike (:mod:`proute.baselines.base` has the interface). By name
(``BASELINES``, the ``baselines:`` list of the train config):

- ``random``: uniform random scores (seeded).
- ``best_llm``: the one LLM with the best mean train reward over all users.
- ``cheapest`` / ``strongest``: always the LLM with the lowest mean train cost / the
  highest mean train performance.
- ``per_user``: for each user, the LLM with the best mean train reward — the "best fixed
  policy" the GNN must beat.
- ``per_user_task``: for each (user, task), the LLM with the best mean train reward
  (backing off to ``per_user``); on the paper's users the strong reference (DESIGN §10).
- ``knn``: per user, the similarity-weighted mean reward of the user's k most similar
  training queries (cosine of query embeddings), backing off to ``per_user``.
- ``mlp``: an MLP on [query embedding, learned user embedding] → reward of each LLM.
- ``mf``: RouteLLM-style matrix factorisation with a user term.
- ``oracle``: the true reward of the evaluated block: an **upper bound, never a method**
  (its metrics carry ``"upper_bound": true``).

``knn``, ``mlp`` and ``mf`` need query embeddings (``query_emb=``) and choose their
hyperparameters on the **validation** block only (``"selected"`` in their metrics);
``mlp`` and ``mf`` also stop early on it. The test block is scored once, never fitted on.

A fitted baseline (all but ``oracle``) can be saved as a router directory and served like
the GNN router: ``export_baselines=[knn,mf]`` in a training run writes ``baselines/<name>/``
(:mod:`proute.baselines.export`; :func:`proute.router.load_router` loads either kind).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from proute.baselines.base import BaselineRouter, Block
from proute.baselines.knn import KNNRouter
from proute.baselines.neural import MFRouter, MLPRouter
from proute.baselines.select import fit_on_validation
from proute.baselines.tables import (
    BestLLMRouter,
    CheapestRouter,
    OracleRouter,
    PerUserRouter,
    PerUserTaskRouter,
    RandomRouter,
    StrongestRouter,
)
from proute.evaluation.scoring import evaluate

BASELINES: dict[str, type[BaselineRouter]] = {
    cls.name: cls
    for cls in (
        RandomRouter,
        BestLLMRouter,
        PerUserRouter,
        PerUserTaskRouter,
        KNNRouter,
        MLPRouter,
        MFRouter,
        OracleRouter,
        CheapestRouter,
        StrongestRouter,
    )
}
# What evaluate_baselines runs when no names are given: the cheap ones that need no embeddings.
DEFAULT_BASELINES = ("random", "best_llm", "per_user", "per_user_task")

__all__ = [
    "BASELINES",
    "DEFAULT_BASELINES",
    "BaselineRouter",
    "evaluate_baselines",
    "evaluate_baselines_by_split",
    "fit_on_validation",
]


def _check_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; known: {sorted(BASELINES)}")


def evaluate_baselines_by_split(
    train: pd.DataFrame,
    blocks: Mapping[str, Block],
    llm_names: Sequence[str],
    names: Sequence[str] = DEFAULT_BASELINES,
    *,
    query_emb: Any = None,
    select_on: str | None = "val",
    seed: int = 0,
    fitted: dict[str, tuple[BaselineRouter, dict]] | None = None,
) -> dict[str, dict[str, dict]]:
    """Fit each named baseline once and score it on every block.

    ``blocks`` maps a split name to its ``(pairs, dense)`` block (``RoutingGraph.split_block``);
    hyperparameters and early stopping use ``blocks[select_on]`` (validation) alone, or
    the defaults if it is absent. Returns ``{split: {name: metrics}}``; each metrics dict is
    :func:`proute.evaluation.metrics.routing_metrics`'s, plus ``selected``, ``selected_on``,
    ``fit_seconds`` and ``score_seconds``. ``fitted`` (a dict), when given, receives
    ``{name: (fitted router, selection info)}`` (what :mod:`proute.baselines.export` saves).
    """
    _check_names(names)
    val = blocks.get(select_on) if select_on is not None else None
    out: dict[str, dict[str, dict]] = {split: {} for split in blocks}
    for name in names:
        router, info = fit_on_validation(name, llm_names, train, val=val, query_emb=query_emb, seed=seed)
        if fitted is not None:
            fitted[name] = (router, info)
        for split, block in blocks.items():
            out[split][name] = {**evaluate(router, block, llms=llm_names, timed=True), **info}
    return out


def evaluate_baselines(
    train: pd.DataFrame,
    pairs: pd.DataFrame,
    dense: dict[str, np.ndarray],
    llm_names: Sequence[str],
    names: Sequence[str] = DEFAULT_BASELINES,
    *,
    query_emb: Any = None,
    val: Block | None = None,
    seed: int = 0,
) -> dict[str, dict]:
    """Fit each named baseline on ``train`` and evaluate it on one block (``pairs`` and
    ``dense``: ``reward``, ``performance``, ``cost`` and ``observed`` row-aligned with
    ``pairs``). Hyperparameters are chosen on ``val`` if given, else the defaults are used
    (``"selected_on": "defaults"``); pass the evaluated block as ``val`` only if it *is* the
    validation block. For val and test at once, :func:`evaluate_baselines_by_split`.
    """
    blocks = {"eval": (pairs, dense)}
    if val is not None:
        blocks = {"val": val, **blocks}
    res = evaluate_baselines_by_split(
        train, blocks, llm_names, names, query_emb=query_emb, select_on="val", seed=seed
    )
    return res["eval"]
