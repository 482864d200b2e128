"""A tiny synthetic routing table with embeddings, for tests.

``make_synthetic()`` gives 2 users x 40 queries x 3 LLMs x 2 tasks with random 8-dim
embeddings: cost-efficiency users (reward = p * performance - (1 - p) * cost_norm, cost
min-max normalised within each task; user 0 has p = 1.0, so its rewards are 0/1 with many
ties, user 1 has p = 0.2), performance 0/1, and a split by query_id (the same text is on
the same side for every user): 60% train, 20% val, 20% test.

Import it from a test as ``from synthetic import make_synthetic`` (pytest puts ``tests/`` on
``sys.path``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Synthetic:
    table: pd.DataFrame
    query_emb: dict  # query_id -> np.ndarray [dim]
    task_emb: dict  # task -> np.ndarray [dim]
    llm_emb: dict  # llm -> np.ndarray [dim]
    llm_family: dict  # llm -> family

    def graph_inputs(self) -> tuple:
        """``(table, query_emb, task_emb, llm_emb)`` for ``build_graph(*s.graph_inputs())``."""
        return self.table, self.query_emb, self.task_emb, self.llm_emb


def make_synthetic(
    num_users: int = 2,
    num_queries: int = 40,
    num_llms: int = 3,
    num_tasks: int = 2,
    dim: int = 8,
    seed: int = 0,
    missing_rate: float = 0.0,
    prefs: list[float] | None = None,
) -> Synthetic:
    """Build the synthetic data set (see the module docstring).

    ``missing_rate`` drops that fraction of (query, llm) observations (for every user, never
    all LLMs of a query). ``prefs`` overrides the users' performance preferences.
    """
    rng = np.random.default_rng(seed)
    users = list(range(num_users))
    if prefs is None:
        prefs = list(np.linspace(1.0, 0.2, num_users)) if num_users > 1 else [1.0]
    llms = [
        f"{fam}-{i}"
        for i, fam in enumerate((["llama", "qwen", "llama", "gpt", "qwen", "mistral"] * 10)[:num_llms])
    ]
    family = {m: m.split("-")[0] for m in llms}
    tasks = [f"task{k}" for k in range(num_tasks)]
    qids = [f"q{i}" for i in range(num_queries)]
    q_task = {q: tasks[i % num_tasks] for i, q in enumerate(qids)}
    split_of = {}
    for i, q in enumerate(rng.permutation(qids)):
        frac = i / num_queries
        split_of[q] = "train" if frac < 0.6 else ("val" if frac < 0.8 else "test")
    skill = rng.uniform(0.2, 0.9, size=(num_llms, num_tasks))
    price = np.sort(rng.uniform(0.1, 2.0, size=num_llms))
    perf = np.zeros((num_queries, num_llms))
    cost = np.zeros((num_queries, num_llms))
    present = np.ones((num_queries, num_llms), dtype=bool)
    for i, q in enumerate(qids):
        k = tasks.index(q_task[q])
        perf[i] = (rng.uniform(size=num_llms) < skill[:, k]).astype(float)
        cost[i] = price * rng.uniform(0.5, 1.5, size=num_llms)
        if missing_rate > 0:
            drop = rng.uniform(size=num_llms) < missing_rate
            if drop.all():
                drop[rng.integers(num_llms)] = False
            present[i] = ~drop
    # cost min-max within task (over all rows, as the user simulators do)
    cnorm = np.zeros_like(cost)
    for task in tasks:
        rows = [i for i, q in enumerate(qids) if q_task[q] == task]
        c = cost[rows][present[rows]]
        lo, hi = c.min(), c.max()
        cnorm[rows] = (cost[rows] - lo) / (hi - lo if hi > lo else 1.0)
    records = []
    for u, p in zip(users, prefs, strict=True):
        for i, q in enumerate(qids):
            for j, m in enumerate(llms):
                if not present[i, j]:
                    continue
                records.append(
                    {
                        "user_id": u,
                        "query_id": q,
                        "query": f"query text {q}",
                        "task": q_task[q],
                        "llm": m,
                        "performance": perf[i, j],
                        "cost": cost[i, j],
                        "reward": p * perf[i, j] - (1 - p) * cnorm[i, j],
                        "split": split_of[q],
                    }
                )
    table = pd.DataFrame.from_records(records)
    query_emb = {q: rng.normal(size=dim).astype(np.float32) for q in qids}
    task_emb = {t: rng.normal(size=dim).astype(np.float32) for t in tasks}
    llm_emb = {m: rng.normal(size=dim).astype(np.float32) for m in llms}
    return Synthetic(table, query_emb, task_emb, llm_emb, family)


def make_large(
    num_users: int = 9,
    num_queries: int = 6000,
    num_llms: int = 9,
    num_tasks: int = 10,
    dim: int = 16,
    seed: int = 0,
) -> Synthetic:
    """A default-size random graph input (9 users x 6000 queries = 54k query nodes) for
    timing; vectorised, rewards random, split 60/20/20 by query."""
    rng = np.random.default_rng(seed)
    qids = np.array([f"q{i}" for i in range(num_queries)], dtype=object)
    tasks = [f"task{k}" for k in range(num_tasks)]
    llms = [f"llm{j}" for j in range(num_llms)]
    q_task = np.arange(num_queries) % num_tasks
    r = rng.permutation(num_queries) / num_queries
    q_split = np.where(r < 0.6, "train", np.where(r < 0.8, "val", "test"))
    U, Q, L = num_users, num_queries, num_llms
    u = np.repeat(np.arange(U), Q * L)
    q = np.tile(np.repeat(np.arange(Q), L), U)
    m = np.tile(np.arange(L), U * Q)
    perf = (rng.uniform(size=U * Q * L) < 0.5).astype(float)
    cost = rng.uniform(size=U * Q * L)
    table = pd.DataFrame(
        {
            "user_id": u,
            "query_id": qids[q],
            "query": qids[q],
            "task": np.asarray(tasks, dtype=object)[q_task[q]],
            "llm": np.asarray(llms, dtype=object)[m],
            "performance": perf,
            "cost": cost,
            "reward": perf - 0.5 * cost,
            "split": q_split[q],
        }
    )
    query_emb = (list(qids), rng.normal(size=(Q, dim)).astype(np.float32))
    task_emb = {t: rng.normal(size=dim).astype(np.float32) for t in tasks}
    llm_emb = {x: rng.normal(size=dim).astype(np.float32) for x in llms}
    return Synthetic(table, query_emb, task_emb, llm_emb, {x: "other" for x in llms})
