"""Routing metrics, overall, per user and per task.

Every router is evaluated the same way: it gives a score per (user-query, LLM); the pick is
the best-scored LLM **among those observed** for that (user, query) (a query may lack some
LLMs; nothing is imputed). A pick is correct when its reward equals the best observed
reward: ties all count (never broken by LLM order).

Metrics: ``accuracy`` (pick is a best LLM), ``reward``/``performance``/``cost`` (means of the
picked LLM's outcome), ``oracle_reward`` (mean best reward), ``reward_ratio``
(``reward / oracle_reward``, the share of the oracle's reward), ``macro_f1`` over LLMs
(tie-aware, below), and ``disagreement`` (the share of query texts asked by two or more
users on which those users got different LLMs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from proute.data.table import USER_COLUMN


def picks(scores: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Index of the best-scored observed LLM per row."""
    masked = np.where(observed, scores, -np.inf)
    return masked.argmax(axis=1)


def tie_aware_macro_f1(choice: np.ndarray, best: np.ndarray) -> float:
    """Macro-F1 over LLMs where a query with k tied best LLMs is a correct pick for any.

    For LLM j: TP = correct picks of j; FP = wrong picks of j; FN = for wrongly picked
    queries on which j is a best LLM, 1/k each. LLMs never picked nor best are left out.
    """
    n, n_llms = best.shape
    rows = np.arange(n)
    correct = best[rows, choice]
    k = best.sum(axis=1).clip(min=1)
    f1s = []
    for j in range(n_llms):
        tp = float(np.sum(correct & (choice == j)))
        fp = float(np.sum(~correct & (choice == j)))
        fn = float(np.sum((~correct & best[:, j]) / k))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def _summary(chosen: pd.DataFrame) -> dict[str, float]:
    reward, oracle = float(chosen["reward"].mean()), float(chosen["oracle_reward"].mean())
    return {
        "n": int(len(chosen)),
        "accuracy": float(chosen["correct"].mean()),
        "reward": reward,
        "performance": float(chosen["performance"].mean()),
        "cost": float(chosen["cost"].mean()),
        "oracle_reward": oracle,
        "reward_ratio": reward / oracle if oracle != 0 else float("nan"),
    }


def routing_metrics(
    scores: np.ndarray,
    reward: np.ndarray,
    performance: np.ndarray,
    cost: np.ndarray,
    observed: np.ndarray,
    pairs: pd.DataFrame,
    llm_names: list[str],
    atol: float = 1e-9,
) -> dict[str, Any]:
    """Metrics for a block of (user, query) rows.

    All arrays are ``[n, num_llms]``, row-aligned with ``pairs`` (columns
    ``user_id``, ``query_id``, ``task``; optional ``new_user``). Rows with no observed LLM
    are skipped. Returns ``{"overall": {...}, "per_user": {...}, "per_task": {...}}`` and a
    ``picks`` DataFrame (one row per (user, query) with the chosen LLM) for analysis.
    """
    scores, reward = np.asarray(scores, float), np.asarray(reward, float)
    observed = np.asarray(observed, bool)
    keep = observed.any(axis=1)
    scores, reward, observed = scores[keep], reward[keep], observed[keep]
    performance, cost = np.asarray(performance, float)[keep], np.asarray(cost, float)[keep]
    nodes = pairs.loc[keep].reset_index(drop=True)

    rows = np.arange(len(scores))
    choice = picks(scores, observed)
    best_reward = np.where(observed, reward, -np.inf).max(axis=1)
    best = observed & (reward >= best_reward[:, None] - atol)
    chosen = nodes[[c for c in (USER_COLUMN, "query_id", "task", "new_user") if c in nodes.columns]].copy()
    chosen["llm"] = np.asarray(llm_names, dtype=object)[choice]
    chosen["correct"] = best[rows, choice]
    chosen["reward"] = reward[rows, choice]
    chosen["performance"] = performance[rows, choice]
    chosen["cost"] = cost[rows, choice]
    chosen["oracle_reward"] = best_reward

    overall = _summary(chosen)
    overall["macro_f1"] = tie_aware_macro_f1(choice, best)
    shared = chosen.groupby("query_id")["llm"].agg(["size", "nunique"])
    shared = shared[shared["size"] > 1]
    overall["disagreement"] = float((shared["nunique"] > 1).mean()) if len(shared) else 0.0
    out: dict[str, Any] = {
        "overall": overall,
        "per_user": {str(u): _summary(g) for u, g in chosen.groupby(USER_COLUMN, sort=True)},
        "per_task": {str(t): _summary(g) for t, g in chosen.groupby("task", sort=True)},
        "picks": chosen,
    }
    if "new_user" in chosen.columns and chosen["new_user"].any():
        out["new_users"] = _summary(chosen[chosen["new_user"].astype(bool)])
    return out


def flat(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    """``{"val/accuracy": ..., ...}`` from the overall block, for loggers and sweepers."""
    return {f"{prefix}/{k}": v for k, v in metrics["overall"].items()}


def per_user_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per user of a metrics block's ``per_user``, each column with its own type
    (``n`` stays an integer; a transposed frame would make every column float)."""
    frame = pd.DataFrame.from_dict(metrics["per_user"], orient="index")
    return frame.astype({"n": int}).rename_axis("user_id").reset_index()
