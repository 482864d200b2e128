"""Fit baselines, their hyperparameters chosen on validation (scored by
:func:`proute.evaluation.scoring.evaluate`)."""

from __future__ import annotations

import itertools
import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from proute.baselines.base import BaselineRouter, Block, mean_pick_reward


def registry() -> dict[str, type[BaselineRouter]]:
    from proute.baselines import BASELINES

    return BASELINES


def fit_on_validation(
    name: str,
    llm_names: Sequence[str],
    train: pd.DataFrame,
    val: Block | None = None,
    query_emb: Any = None,
    seed: int = 0,
    grid: Mapping[str, Sequence] | None = None,
) -> tuple[BaselineRouter, dict[str, Any]]:
    """Fit baseline ``name`` on ``train``, its hyperparameters chosen on ``val``.

    Every point of the grid (the class's ``grid``, or ``grid``) is fitted on ``train`` and
    scored on the validation block; the one with the best validation reward wins (the first
    in grid order on a tie). Without a validation block the class's defaults are used.
    Returns the fitted router and ``{"selected": {...}, "selected_on": "val" | "defaults",
    "val_reward_by_params": [...], "fit_seconds": ...}``. The test block never enters.
    """
    cls = registry()[name]
    if cls.needs_query_emb and query_emb is None:
        raise ValueError(
            f"baseline {name!r} needs query embeddings: pass query_emb= (a dict query_id -> vector, "
            "e.g. PreparedData.query_embedding_dict(), or (query_ids, matrix))"
        )
    grid = dict(cls.grid if grid is None else grid)
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    router: BaselineRouter | None
    if val is None or not grid:
        router = cls(llm_names, seed=seed).fit(train, query_emb=query_emb, val=val)
        info["selected"] = {k: router.params[k] for k in grid}
        info["selected_on"] = "val" if val is not None else "defaults"
    else:
        tried, best = [], -np.inf
        router = None
        fitted = None
        if set(grid) <= set(cls.score_params):  # one fit serves the whole grid
            fitted = cls(llm_names, seed=seed).fit(train, query_emb=query_emb, val=val)
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values, strict=True))
            if fitted is not None:
                candidate = fitted.with_params(**params)
            else:
                candidate = cls(llm_names, seed=seed, **params).fit(train, query_emb=query_emb, val=val)
            reward = mean_pick_reward(candidate.score(val[0]), val[1])
            tried.append({**params, "val_reward": reward})
            if reward > best:
                best, router, info["selected"] = reward, candidate, params
        info["selected_on"] = "val"
        info["val_reward_by_params"] = tried
    assert router is not None  # the grid is not empty
    if hasattr(router, "fit_info_"):
        info.update(router.fit_info_)
    info["fit_seconds"] = time.perf_counter() - t0
    return router, info
