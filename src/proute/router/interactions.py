"""Observed interactions (of a new user, a feedback event, a new LLM's outcomes) as evidence rows.

An interaction is ``{"query": str (or "query_emb": vector), "llm": name, "reward": float}``
or, instead of ``reward``, ``"performance"`` (and ``"cost"``), rewarded by the population
reward definition of the router's training users (router.json ``adapt.reward_definition``);
``"task"`` is optional (inferred from the embedding when absent).

Every number in an interaction must be finite and within :data:`MAX_MAGNITUDE` (a
``ValueError`` naming the field otherwise): a ``NaN`` or ``1e400`` reward accepted here
would make the user's state, and through the average user every later route, non-finite.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np
import torch

from proute.router.routing import Encode, query_error, task_proba
from proute.router.state import RouterState

#: The largest magnitude of a reward, performance, cost, price or embedding entry.
MAX_MAGNITUDE = 1e6
#: The numbers of an interaction (or an outcome) and the fields that hold them.
NUMBER_FIELDS = ("reward", "performance", "cost")

#: ``(query_emb [dq], task index, [llm index], [edge feature], [reward])`` of one interaction.
Row = tuple[np.ndarray, int, list[int], list[list[float]], list[float]]


def finite_number(value: Any, field: str, bound: float = MAX_MAGNITUDE) -> float:
    """``value`` as a float when it is a number (not a bool), finite and ``|value| <= bound``;
    else a ``ValueError`` naming ``field``.

    >>> finite_number(0.5, "reward")
    0.5
    >>> finite_number(10**400, "reward")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: field 'reward' must be a finite number with |x| <= 1e+06, got inf
    >>> finite_number(float("nan"), "outcome")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: field 'outcome' must be a finite number with |x| <= 1e+06, got nan
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"field {field!r} must be a number, got {value!r}")
    try:
        x = float(value)
    except OverflowError:  # an integer beyond a float's range
        x = math.inf
    if not (math.isfinite(x) and abs(x) <= bound):
        raise ValueError(f"field {field!r} must be a finite number with |x| <= {bound:g}, got {x!r}")
    return x


def finite_vector(value: Any, field: str, bound: float = MAX_MAGNITUDE) -> np.ndarray:
    """``value`` as a float32 vector whose entries are finite and within ``bound``; else a
    ``ValueError`` naming ``field`` (and the first bad entry)."""
    try:
        v = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"field {field!r} must be a list of finite numbers, got {type(value).__name__}"
        ) from None
    bad = ~(np.isfinite(v) & (np.abs(v) <= bound))
    if bad.any():
        i = int(bad.nonzero()[0][0])
        raise ValueError(f"field '{field}[{i}]' must be a finite number with |x| <= {bound:g}, got {v[i]!r}")
    return v.astype(np.float32)


def check_numbers(it: dict, where: str = "") -> None:
    """Each of ``reward``, ``performance``, ``cost`` that ``it`` gives is a finite number
    (``where``: the prefix of the field's name, e.g. ``"outcome."``)."""
    for name in NUMBER_FIELDS:
        if it.get(name) is not None:
            finite_number(it[name], where + name)


def reward_of(state: RouterState, outcome: dict, task: str) -> tuple[float, float | None, float | None]:
    """``(reward, performance, cost_norm)`` of an outcome: its ``reward`` when given, else
    the population reward definition of the router's training users on ``performance``
    and ``cost`` (router.json ``adapt.reward_definition``; without one, reward =
    performance, as for data without a reward column)."""
    perf = outcome.get("performance")
    cost = outcome.get("cost")
    definition = state.adapt_info.get("reward_definition", {})
    cost_norm = None
    if cost is not None:
        lo, hi = definition.get("cost_range", {}).get(task, [0.0, 0.0])
        cost_norm = float(np.clip((float(cost) - lo) / (hi - lo), 0.0, 1.0)) if hi > lo else 0.0
    if outcome.get("reward") is not None:
        return float(outcome["reward"]), None if perf is None else float(perf), cost_norm
    if perf is None:
        raise ValueError(f"an outcome needs 'reward' or 'performance' (and 'cost'); got {outcome!r}")
    if not definition:
        return float(perf), float(perf), cost_norm
    reward = definition["performance"] * float(perf) + definition["intercept"]
    reward += definition["cost_norm"] * (cost_norm or 0.0)
    return float(reward), float(perf), cost_norm


def edge_feature_of(
    state: RouterState, reward: float, perf: float | None, cost_norm: float | None
) -> list[float]:
    """The outcome edge feature the router was trained with (router.json ``edge_feature``)."""
    if state.edge_dim == 2:
        return [cost_norm or 0.0, reward if perf is None else perf]
    if state.edge_feature == "performance" and perf is not None:
        return [perf]
    return [reward]


def _check(state: RouterState, interactions: Sequence[dict], llm_index: dict[str, int]):
    """``(texts, embs)``: the indices of the interactions given as text, and ``(i, vector)``
    of those given as embeddings; raises for the first bad interaction."""
    texts, embs = [], []
    for i, it in enumerate(interactions):
        if not isinstance(it, dict):
            raise ValueError(f"interaction {i}: expected a dict, got {it!r}")
        try:
            check_numbers(it)
        except ValueError as exc:
            raise ValueError(f"interaction {i}: {exc}") from None
        if "query_emb" in it and it["query_emb"] is not None:
            try:
                embs.append((i, finite_vector(it["query_emb"], "query_emb")))
            except ValueError as exc:
                raise ValueError(f"interaction {i}: {exc}") from None
        else:
            error = query_error(it.get("query"))
            if error is not None:
                raise ValueError(f"interaction {i}: {error.args[0]}")
            texts.append(i)
        if it.get("llm") not in llm_index:
            raise KeyError(f"interaction {i}: unknown llm {it.get('llm')!r}; known LLMs: {list(llm_index)}")
        task = it.get("task")
        if task is not None and task not in state.task_index:
            raise KeyError(f"interaction {i}: unknown task {task!r}; known tasks: {list(state.tasks)}")
    return texts, embs


def parse_interactions(
    state: RouterState, encode: Encode, interactions: Sequence[dict], llm_names: Sequence[str] | None = None
) -> list[Row]:
    """One :data:`Row` per interaction (``llm_names``: the LLMs they may name; default the state's)."""
    if isinstance(interactions, dict) or not isinstance(interactions, Sequence):
        raise ValueError(f"interactions must be a list of dicts; got {type(interactions).__name__}")
    llm_index = {m: i for i, m in enumerate(state.llms if llm_names is None else llm_names)}
    texts, embs = _check(state, interactions, llm_index)
    q = np.zeros((len(interactions), state.query_dim), dtype=np.float32)
    for i, e in embs:
        if e.shape[0] != q.shape[1]:
            raise ValueError(f"interaction {i}: query_emb has {e.shape[0]} values; expected {q.shape[1]}")
        q[i] = e
    if texts:
        q[texts] = encode([interactions[i]["query"] for i in texts])
    inferred = (
        task_proba(state, torch.as_tensor(q, device=state.device)).argmax(dim=1).tolist() if len(q) else []
    )
    rows: list[Row] = []
    for i, it in enumerate(interactions):
        t = state.task_index[it["task"]] if it.get("task") is not None else int(inferred[i])
        reward, perf, cost_norm = reward_of(state, it, state.tasks[t])
        llm = llm_index[it["llm"]]
        rows.append((q[i], t, [llm], [edge_feature_of(state, reward, perf, cost_norm)], [reward]))
    return rows
