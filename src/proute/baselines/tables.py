"""Baselines that are a lookup table of training means (no embeddings), and the oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd

from proute.baselines.base import BaselineRouter
from proute.data.table import USER_COLUMN


class RandomRouter(BaselineRouter):
    """Uniform random scores (seeded)."""

    name = "random"

    def score(self, pairs, dense=None):
        rng = np.random.default_rng(self.seed)
        return rng.random((len(pairs), len(self.llm_names)))


class _FixedRouter(BaselineRouter):
    """One score row for every (user, query): a per-LLM training mean (``column``, signed)."""

    column = "reward"
    sign = 1.0

    def fit(self, train, query_emb=None, val=None):
        self.row_ = np.nan_to_num(self.sign * self._llm_means(train, self.column), nan=-np.inf)
        return self

    def score(self, pairs, dense=None):
        return np.tile(self.row_, (len(pairs), 1))


class BestLLMRouter(_FixedRouter):
    """The one LLM with the best mean train reward over all users (not personalised)."""

    name = "best_llm"


class CheapestRouter(_FixedRouter):
    """Always the LLM with the lowest mean train cost (the next cheapest where it is missing)."""

    name = "cheapest"
    column, sign = "cost", -1.0


class StrongestRouter(_FixedRouter):
    """Always the LLM with the highest mean train performance, whatever it costs."""

    name = "strongest"
    column = "performance"


class PerUserRouter(BaselineRouter):
    """For each user, the LLM with the best mean train reward — the "best fixed policy" the
    GNN must beat; a user without training rows gets :class:`BestLLMRouter`'s choice, and
    an LLM without training rows is never picked while another is observed."""

    name = "per_user"

    def fit(self, train, query_emb=None, val=None):
        self.global_ = self._llm_means(train, "reward")
        self.table_ = self._mean_by(train, [USER_COLUMN])
        return self

    def score(self, pairs, dense=None):
        scores = self.table_.reindex(pairs[USER_COLUMN].to_numpy()).to_numpy(dtype=float)
        fallback = np.tile(np.nan_to_num(self.global_, nan=-np.inf), (len(pairs), 1))  # no train row: last
        return np.where(np.isnan(scores), fallback, scores)


class PerUserTaskRouter(PerUserRouter):
    """For each (user, task), the LLM with the best mean train reward, backing off to the
    user's choice for a task the user never asked in training. On the paper's users this
    lookup table is the strong reference (docs/DESIGN.md §10)."""

    name = "per_user_task"

    def fit(self, train, query_emb=None, val=None):
        super().fit(train)
        self.task_table_ = self._mean_by(train, [USER_COLUMN, "task"])
        return self

    def score(self, pairs, dense=None):
        key = pd.MultiIndex.from_arrays([pairs[USER_COLUMN].to_numpy(), pairs["task"].to_numpy()])
        scores = self.task_table_.reindex(key).to_numpy(dtype=float)
        return np.where(np.isnan(scores), super().score(pairs), scores)


class OracleRouter(BaselineRouter):
    """The true reward of each (pair, LLM) of the evaluated block: it always picks a best
    observed LLM, so its ``reward_ratio`` is 1. An **upper bound, never a method**: it reads
    the rewards it is scored on (``score(pairs, dense)``), which no router can know."""

    name = "oracle"
    uses_eval_rewards = True

    def score(self, pairs, dense=None):
        if dense is None or "reward" not in dense:
            raise ValueError(
                "baseline 'oracle' scores with the evaluated block's rewards: call "
                "score(pairs, dense) with dense['reward'] row-aligned with pairs"
            )
        reward = np.asarray(dense["reward"], float)
        if reward.shape != (len(pairs), len(self.llm_names)):
            raise ValueError(
                f"oracle: dense['reward'] is {reward.shape}, pairs need {(len(pairs), len(self.llm_names))}"
            )
        return np.nan_to_num(reward, nan=-np.inf)
