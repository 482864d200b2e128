"""Baseline routers: the same interface as the GNN router, one registry.

A router is fitted on the training rows and gives ``score(pairs) -> [n, num_llms]``
for a frame of (user, query) rows (columns ``user_id``, ``query_id``, ``task``); the
evaluation in :mod:`proute.metrics` treats every router alike.

- ``random``: uniform random scores (seeded).
- ``best_llm``: the one LLM with the best mean train reward over all users (not
  personalised).
- ``per_user``: for each user, the LLM with the best mean train reward — the "best fixed
  policy" the GNN must beat.
- ``per_user_task``: for each (user, task), the LLM with the best mean train reward,
  backing off to the user's choice for a task the user never asked in training. On the
  paper's users this lookup table is the strong reference (docs/DESIGN.md §10).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from proute.data.table import USER_COLUMN


class BaselineRouter:
    name = "baseline"

    def __init__(self, llm_names: Sequence[str]):
        self.llm_names = list(llm_names)

    def fit(self, train: pd.DataFrame) -> "BaselineRouter":
        return self

    def score(self, pairs: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def _mean_reward(self, train: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        means = train.groupby(keys + ["llm"])["reward"].mean().unstack("llm")
        return means.reindex(columns=self.llm_names)


class RandomRouter(BaselineRouter):
    name = "random"

    def __init__(self, llm_names, seed: int = 0):
        super().__init__(llm_names)
        self.seed = seed

    def score(self, pairs):
        rng = np.random.default_rng(self.seed)
        return rng.random((len(pairs), len(self.llm_names)))


class BestLLMRouter(BaselineRouter):
    name = "best_llm"

    def fit(self, train):
        self.table_ = train.groupby("llm")["reward"].mean().reindex(self.llm_names)
        return self

    def score(self, pairs):
        row = self.table_.fillna(-np.inf).to_numpy(dtype=float)
        return np.tile(row, (len(pairs), 1))


class PerUserRouter(BaselineRouter):
    name = "per_user"

    def fit(self, train):
        self.global_ = train.groupby("llm")["reward"].mean().reindex(self.llm_names)
        self.table_ = self._mean_reward(train, [USER_COLUMN])
        return self

    def score(self, pairs):
        scores = self.table_.reindex(pairs[USER_COLUMN].to_numpy()).to_numpy(dtype=float)
        fallback = np.tile(self.global_.to_numpy(dtype=float), (len(pairs), 1))
        return np.where(np.isnan(scores), fallback, scores)


class PerUserTaskRouter(PerUserRouter):
    name = "per_user_task"

    def fit(self, train):
        super().fit(train)
        self.task_table_ = self._mean_reward(train, [USER_COLUMN, "task"])
        return self

    def score(self, pairs):
        key = pd.MultiIndex.from_arrays([pairs[USER_COLUMN].to_numpy(), pairs["task"].to_numpy()])
        scores = self.task_table_.reindex(key).to_numpy(dtype=float)
        return np.where(np.isnan(scores), super().score(pairs), scores)


BASELINES: dict[str, type[BaselineRouter]] = {
    cls.name: cls for cls in (RandomRouter, BestLLMRouter, PerUserRouter, PerUserTaskRouter)
}


def evaluate_baselines(
    train: pd.DataFrame,
    pairs: pd.DataFrame,
    dense: dict[str, np.ndarray],
    llm_names: Sequence[str],
    names: Sequence[str] = tuple(BASELINES),
) -> dict[str, dict]:
    """Fit each named baseline on ``train`` and evaluate it on ``pairs``.

    ``dense`` holds ``reward``, ``performance``, ``cost`` and ``observed`` matrices
    row-aligned with ``pairs``.
    """
    from proute.metrics import routing_metrics

    out = {}
    for name in names:
        router = BASELINES[name](llm_names).fit(train)
        out[name] = routing_metrics(
            router.score(pairs),
            dense["reward"],
            dense["performance"],
            dense["cost"],
            dense["observed"],
            pairs,
            list(llm_names),
        )
    return out
