"""Simulated users on top of real per-query quality and cost (docs/DESIGN.md §6, "Users").

No public per-user routing data exists at a usable size, so users are simulated from the
measured performance and cost of each (query, llm). A simulator turns a query-level table
(no ``user_id``) into a user-level one: one row per (user, query, llm) with a ``reward``
column saying what this user gets from this outcome. Every simulator is seeded and writes
the same table shape.

Query sets (``query_assignment``):

- ``shared``: every user asks every query (the paper's setting);
- ``per_user``: each user asks their own ``queries_per_user`` queries, drawn without
  replacement per user (users may overlap by chance; a query text keeps its ``query_id``).

Simulators:

- :class:`CostEfficiencyUsers` — the paper's "v1" users: user u has a performance
  preference p_u; ``reward = p_u · performance − (1 − p_u) · cost_norm`` with cost
  min-max normalised within each task.
- :class:`ArchetypeUsers` — richer users for whom one global quality/cost weight is not
  enough: per-task preferences (a user who pays for quality on code but not on trivia),
  loyalty to LLM families, and noisy judgement. Each user is drawn from the archetypes
  listed in the config, with a seed.

A dataset that already has users (a ``user_id`` column) is used unchanged; if it lacks a
``reward`` column, ``reward = performance`` (:func:`proute.data.outcomes.with_reward`).
A dataset without users but with a ``reward`` column is an error: a simulator writes each
user's reward and would silently replace the file's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from proute.data.outcomes import cost_efficiency_reward, normalize_cost, with_reward
from proute.data.table import USER_COLUMN, DataError, RoutingData

__all__ = [
    "PAPER_PREFERENCES",
    "ArchetypeUsers",
    "CostEfficiencyUsers",
    "DataUsers",
    "UserSimulator",
    "cost_efficiency_reward",  # defined in proute.data.outcomes
    "normalize_cost",  # defined in proute.data.outcomes
]

PAPER_PREFERENCES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


_TEXT_COLUMNS = ("query",)  # the long one; ids, tasks and LLM names stay plain text


def _assign_queries(
    base: pd.DataFrame,
    users: Sequence,
    assignment: str,
    queries_per_user: int | None,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Expand a query-level table to (user, query, llm) rows.

    The text columns become categoricals first: each user's copy then holds small codes, not
    another copy of every query text (pandas' string columns store the characters per row;
    at 1,000 users the texts alone would take gigabytes)."""
    base = base.astype({c: "category" for c in _TEXT_COLUMNS if c in base.columns})
    query_ids = base["query_id"].drop_duplicates().to_numpy()
    parts = []
    for u in users:
        if assignment == "shared":
            rows = base
        elif assignment == "per_user":
            n = len(query_ids) if queries_per_user is None else int(queries_per_user)
            if not 0 < n <= len(query_ids):
                raise DataError(f"users: queries_per_user={queries_per_user} must be in 1..{len(query_ids)}")
            chosen = rng.choice(query_ids, size=n, replace=False)
            rows = base[base["query_id"].isin(set(chosen))]
        else:
            raise DataError(f"users: query_assignment={assignment!r}; expected 'shared' or 'per_user'")
        part = rows.copy()
        part.insert(0, USER_COLUMN, u)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    return out


@dataclass
class UserSimulator:
    """Base class: expand queries to users and write ``reward``."""

    query_assignment: str = "shared"
    queries_per_user: int | None = None
    seed: int = 42

    def user_profiles(self, rng: np.random.Generator, data: RoutingData) -> pd.DataFrame:
        """One row per user (index = user id) with whatever the reward needs."""
        raise NotImplementedError

    def rewards(
        self,
        table: pd.DataFrame,
        profiles: pd.DataFrame,
        data: RoutingData,
        rng: np.random.Generator,
    ) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, data: RoutingData) -> RoutingData:
        if data.has_users:
            return RoutingData(
                with_reward(data.table), data.llms, data.tasks, data.name, {**data.meta, "users": "from data"}
            )
        if "reward" in data.table.columns:
            raise DataError(
                f"{data.source}: column 'reward' is in a table without 'user_id'; users="
                f"{type(self).__name__} simulates users and writes each user's reward, which "
                "would replace the file's: add a user_id column (with users=from_data) to keep "
                "it, or rename or drop the column"
            )
        rng = np.random.default_rng(self.seed)
        profiles = self.user_profiles(rng, data)
        table = _assign_queries(
            data.table, list(profiles.index), self.query_assignment, self.queries_per_user, rng
        )
        table["reward"] = self.rewards(table, profiles, data, rng)
        meta = {
            **data.meta,
            "users": type(self).__name__,
            "user_profiles": profiles.reset_index().to_dict(orient="records"),
        }
        return RoutingData(table, data.llms, data.tasks, data.name, meta)


@dataclass
class CostEfficiencyUsers(UserSimulator):
    """The paper's cost-efficiency users ("v1").

    User ``i`` has performance preference ``preferences[i]``;
    ``reward = p · performance − (1 − p) · cost_norm``, cost min-max normalised per task.
    The default is the paper's nine users, p = 0.2, 0.3, …, 1.0.
    """

    preferences: Sequence[float] = PAPER_PREFERENCES

    def user_profiles(self, rng, data):
        prefs = [float(p) for p in self.preferences]
        bad = [p for p in prefs if not 0.0 <= p <= 1.0]
        if bad or not prefs:
            raise DataError(f"users: preferences {list(self.preferences)} must be in [0, 1]")
        return pd.DataFrame({"preference": prefs}, index=pd.Index(range(len(prefs)), name="user_id"))

    def rewards(self, table, profiles, data, rng):
        p = profiles["preference"].reindex(table[USER_COLUMN]).to_numpy()
        return cost_efficiency_reward(table["performance"], normalize_cost(table), p)


@dataclass
class ArchetypeUsers(UserSimulator):
    """Users whose preference is more than one global quality/cost weight.

    ``num_users`` users are drawn (seeded) from ``archetypes``:

    - ``task_specialist``: a preference per task, drawn from ``Beta(0.5, 0.5)`` so that a
      user cares about quality on some tasks and about cost on others;
    - ``family_loyal``: a base preference ``p`` plus a bonus ``loyalty_bonus`` on LLMs of
      one family (drawn from the families present), as a user attached to a vendor;
    - ``noisy``: a base preference with per-(user, query, llm) Gaussian judgement noise of
      standard deviation ``noise``;
    - ``cost_efficiency``: the paper's user with ``p ~ U(0.2, 1.0)``.

    ``reward = p_{u,task} · performance − (1 − p_{u,task}) · cost_norm
    + loyalty_bonus · [family(llm) == family_u] + noise``.
    """

    num_users: int = 12
    archetypes: Sequence[str] = ("task_specialist", "family_loyal", "noisy")
    loyalty_bonus: float = 0.3
    noise: float = 0.1

    KNOWN = ("task_specialist", "family_loyal", "noisy", "cost_efficiency")

    def user_profiles(self, rng, data):
        unknown = [a for a in self.archetypes if a not in self.KNOWN]
        if unknown or not self.archetypes:
            raise DataError(f"users: unknown archetype(s) {unknown}; expected from {self.KNOWN}")
        if self.num_users < 1:
            raise DataError(f"users: num_users={self.num_users}; expected >= 1")
        tasks = sorted(data.table["task"].unique())
        families = sorted(data.llms["family"].unique())
        rows = []
        for u in range(int(self.num_users)):
            kind = str(self.archetypes[u % len(self.archetypes)])
            base = float(rng.uniform(0.2, 1.0))
            row = {"user_id": u, "archetype": kind, "preference": base, "family": "", "task_preferences": {}}
            if kind == "task_specialist":
                row["task_preferences"] = {t: float(rng.beta(0.5, 0.5)) for t in tasks}
            elif kind == "family_loyal":
                row["family"] = str(rng.choice(families))
            rows.append(row)
        return pd.DataFrame(rows).set_index("user_id")

    def rewards(self, table, profiles, data, rng):
        users = table[USER_COLUMN].to_numpy()
        p = profiles["preference"].reindex(users).to_numpy(dtype=float).copy()
        task = table["task"].to_numpy()
        for u, prefs in profiles["task_preferences"].items():
            if prefs:
                sel = users == u
                p[sel] = pd.Series(task[sel]).map(prefs).to_numpy(dtype=float)
        reward = cost_efficiency_reward(table["performance"], normalize_cost(table), p)
        fam_of_llm = data.llms["family"].reindex(table["llm"]).to_numpy()
        loyal = profiles["family"].reindex(users).to_numpy()
        reward = np.array(reward, dtype=float) + self.loyalty_bonus * ((loyal != "") & (fam_of_llm == loyal))
        noisy = (profiles["archetype"].reindex(users) == "noisy").to_numpy()
        reward[noisy] += rng.normal(0.0, self.noise, size=int(noisy.sum()))
        return reward


@dataclass
class DataUsers(UserSimulator):
    """Use the users already in the data; fail clearly if there are none."""

    def __call__(self, data: RoutingData) -> RoutingData:
        if not data.has_users:
            raise DataError(
                f"{data.name}: users=from_data, but the table has no 'user_id' column; "
                "choose a simulator, e.g. users=cost_efficiency"
            )
        return super().__call__(data)
