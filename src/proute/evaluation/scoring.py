"""One evaluation path: every router is a :class:`Scorer`, every split is scored by :func:`evaluate`.

A *scorer* maps rows of (user, query[, task]) — a ``pairs`` frame with columns ``user_id``,
``query_id`` and ``task`` — to a score per LLM, an array ``[n, num_llms]`` whose columns are
the scorer's fixed :attr:`Scorer.llms`; higher is better. Every baseline of
:mod:`proute.baselines` is one; the GNN is one through the adapters of
:mod:`proute.evaluation.scorers` (the model in training on its graph, and the exported
:class:`~proute.router.PersonalizedRouter`).

A *split* is a block ``(pairs, dense)``: the pairs and their ``reward``, ``performance``,
``cost`` and ``observed`` matrices, row-aligned (``RoutingGraph.split_block``, or
:func:`outcome_matrix` over a routing table). :func:`evaluate` gives the metrics of
:func:`proute.evaluation.metrics.routing_metrics` for any scorer on any split: validation
and the test pass, the live protocol, ``proute evaluate``, the baselines, the experiments.

>>> import numpy as np, pandas as pd
>>> class Always:  # the smallest scorer: always the second LLM
...     llms = ["a", "b"]
...     def score(self, pairs):
...         return np.tile([0.0, 1.0], (len(pairs), 1))
>>> pairs = pd.DataFrame({"user_id": [0, 1], "query_id": ["q", "q"], "task": ["t", "t"]})
>>> dense = {"reward": np.array([[1.0, 0.5], [0.0, 0.5]]), "observed": np.ones((2, 2), bool)}
>>> dense["performance"], dense["cost"] = dense["reward"], np.zeros((2, 2))
>>> m = evaluate(Always(), (pairs, dense))
>>> m["overall"]["reward"], m["overall"]["accuracy"]
(0.5, 0.5)
"""

from __future__ import annotations

import time
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

from proute.evaluation.metrics import routing_metrics

Block = tuple[pd.DataFrame, dict[str, np.ndarray]]  # (pairs, dense), as RoutingGraph.split_block gives
KEY = ["user_id", "query_id"]
OUTCOMES = ("reward", "performance", "cost")


@runtime_checkable
class Scorer(Protocol):
    """(user, query[, task]) rows → a score per LLM (see the module docstring).

    A scorer that reads the evaluated block's own rewards (the oracle, an upper bound)
    says so with a true ``uses_eval_rewards`` attribute; :func:`evaluate` then passes it
    the block's ``dense`` as a second argument and marks its metrics ``upper_bound``.
    """

    @property
    def llms(self) -> Sequence[str]:
        """The LLM names of the score columns, in order."""
        ...

    def score(self, pairs: pd.DataFrame) -> np.ndarray:
        """Scores ``[len(pairs), len(llms)]`` of the rows ``user_id``, ``query_id``, ``task``."""
        ...


def evaluate(
    scorer: Scorer, split: Block, *, llms: Sequence[str] | None = None, timed: bool = False
) -> dict[str, Any]:
    """:func:`~proute.evaluation.metrics.routing_metrics` of ``scorer`` on ``split``.

    ``split`` is a ``(pairs, dense)`` block; ``llms`` names the score columns (default:
    ``scorer.llms``); ``dense``'s columns must be in the same order. ``timed`` adds
    ``score_seconds``. Only a scorer with ``uses_eval_rewards`` (the oracle) sees the
    block's outcomes, and its metrics carry ``"upper_bound": True``.
    """
    pairs, dense = split
    reads_rewards = bool(getattr(scorer, "uses_eval_rewards", False))
    t0 = time.perf_counter()
    scores = scorer.score(pairs, dense) if reads_rewards else scorer.score(pairs)  # type: ignore[call-arg]
    seconds = time.perf_counter() - t0
    out = routing_metrics(
        scores,
        dense["reward"],
        dense["performance"],
        dense["cost"],
        dense["observed"],
        pairs,
        list(scorer.llms if llms is None else llms),
    )
    if timed:
        out["score_seconds"] = seconds
    if reads_rewards:
        out["upper_bound"] = True  # read the evaluated rewards: a ceiling, not a method
    return out


def task_accuracy(tasks: Sequence[str], pairs: pd.DataFrame) -> float:
    """The share of ``pairs`` whose task was inferred right (``tasks``: one per row)."""
    return float(np.mean(np.asarray(tasks) == pairs["task"].astype(str).to_numpy()))


def outcome_matrix(
    outcomes: pd.DataFrame, pairs: pd.DataFrame, llms: Sequence[str], column: str
) -> np.ndarray:
    """``[len(pairs), len(llms)]`` matrix of ``column`` of the long ``outcomes`` table (one
    row per observed (user, query, LLM)), row-aligned with ``pairs``; NaN where not observed.
    Keys are compared as text (CSV and JSON give ``user_id`` as int or string).

    >>> o = pd.DataFrame({"user_id": [0, 0, 1], "query_id": ["q", "q", "q"],
    ...                   "llm": ["a", "b", "b"], "reward": [1.0, 0.5, 0.2]})
    >>> outcome_matrix(o, pd.DataFrame({"user_id": ["1", 0], "query_id": ["q", "q"]}), ["a", "b"], "reward")
    array([[nan, 0.2],
           [1. , 0.5]])
    """
    wide = outcomes.assign(**{k: outcomes[k].astype(str) for k in KEY}).pivot_table(
        index=KEY, columns="llm", values=column, aggfunc="first", observed=True
    )
    index = pd.MultiIndex.from_arrays([pairs[k].astype(str) for k in KEY])
    return wide.reindex(index=index, columns=list(llms)).to_numpy(dtype=float)


def dense_block(outcomes: pd.DataFrame, pairs: pd.DataFrame, llms: Sequence[str]) -> dict[str, np.ndarray]:
    """The ``dense`` half of a block from a long table: ``reward``, ``performance`` and
    ``cost`` (:func:`outcome_matrix`, 0 where not observed) and ``observed`` (where the
    reward is)."""
    out = {col: outcome_matrix(outcomes, pairs, llms, col) for col in OUTCOMES}
    out["observed"] = ~np.isnan(out["reward"])
    for col in OUTCOMES:
        out[col] = np.nan_to_num(out[col])
    return out
