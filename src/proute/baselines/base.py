"""What every baseline router shares: the interface, query embeddings, the reward matrix.

A router is built from the LLM names (and its hyperparameters), fitted on training rows and
scores a frame of (user, query) rows:

- ``fit(train, query_emb=None, val=None)``: ``train`` is the long routing table's training
  rows (``user_id``, ``query_id``, ``task``, ``llm``, ``reward``; ``cost`` and
  ``performance`` for the routers that read them); ``query_emb`` maps query ids to vectors
  (the routers with ``needs_query_emb`` refuse to fit without it); ``val`` is the validation
  block ``(pairs, dense)`` for the routers that stop early on it (never the test block).
- ``score(pairs, dense=None) -> [n, num_llms]``: higher is better, columns :attr:`llms`.
  ``dense`` is the evaluated block's outcome matrices; only the oracle
  (``uses_eval_rewards``) reads them.

So every baseline is a :class:`proute.evaluation.scoring.Scorer`, and
:func:`proute.evaluation.scoring.evaluate` scores it as it scores the GNN.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd

from proute.data.table import USER_COLUMN
from proute.evaluation.metrics import picks
from proute.evaluation.scoring import Block

__all__ = [
    "BaselineRouter",
    "Block",
    "QueryEmbeddings",
    "mean_pick_reward",
    "normalise_rows",
    "reward_matrix",
]


class BaselineRouter:
    """The interface every baseline implements (see the module docstring).

    ``grid`` lists the values of each hyperparameter that selection on validation tries
    (:func:`proute.baselines.select.fit_on_validation`); ``params`` holds the values this
    instance uses (the first grid value unless given).
    """

    name: ClassVar[str] = "baseline"
    needs_query_emb: ClassVar[bool] = False
    uses_eval_rewards: ClassVar[bool] = False  # the oracle: an upper bound, never a method
    grid: ClassVar[dict[str, tuple]] = {}
    defaults: ClassVar[dict[str, Any]] = {}
    score_params: ClassVar[tuple[str, ...]] = ()  # hyperparameters that only ``score`` reads

    def __init__(self, llm_names: Sequence[str], seed: int = 0, **params: Any):
        self.llm_names = list(llm_names)
        self.seed = int(seed)
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise TypeError(
                f"baseline {self.name!r} has no hyperparameter {unknown}; it has {sorted(self.defaults)}"
            )
        self.params = {**self.defaults, **params}

    @property
    def llms(self) -> list[str]:
        """The LLM names of the score columns (:class:`~proute.evaluation.scoring.Scorer`)."""
        return self.llm_names

    def with_params(self, **params: Any) -> "BaselineRouter":
        """A copy of this fitted router with other values of its ``score_params`` (shares
        the fitted state): a grid over them needs one fit."""
        bad = sorted(set(params) - set(self.score_params))
        if bad:
            raise TypeError(f"baseline {self.name!r}: {bad} change the fit; refit instead")
        out = copy.copy(self)
        out.params = {**self.params, **params}
        return out

    def fit(self, train: pd.DataFrame, query_emb: Any = None, val: Block | None = None) -> "BaselineRouter":
        return self

    def score(self, pairs: pd.DataFrame, dense: dict[str, np.ndarray] | None = None) -> np.ndarray:
        raise NotImplementedError

    def _mean_by(self, train: pd.DataFrame, keys: list[str], column: str = "reward") -> pd.DataFrame:
        """Mean ``column`` per ``keys`` (rows) and LLM (columns, in ``llm_names`` order)."""
        _require_columns(train, [*keys, "llm", column], self.name)
        means = train.groupby(keys + ["llm"])[column].mean().unstack("llm")
        return means.reindex(columns=self.llm_names)

    def _llm_means(self, train: pd.DataFrame, column: str) -> np.ndarray:
        _require_columns(train, ["llm", column], self.name)
        return train.groupby("llm")[column].mean().reindex(self.llm_names).to_numpy(dtype=float)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], who: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"baseline {who!r} needs the training columns {missing}; got {list(frame.columns)}")


class QueryEmbeddings:
    """Query id → row of one float32 matrix, from a mapping ``{query_id: vector}`` or an
    ``(ids, matrix)`` pair (``PreparedData.query_ids, PreparedData.query_emb``)."""

    index: pd.Index
    matrix: np.ndarray

    def __init__(self, query_emb: Any, who: str):
        if query_emb is None:
            raise ValueError(
                f"baseline {who!r} needs query embeddings: pass query_emb= (a dict query_id -> "
                "vector, e.g. PreparedData.query_embedding_dict(), or (query_ids, matrix)) to "
                "fit / evaluate_baselines"
            )
        if isinstance(query_emb, QueryEmbeddings):
            self.index, self.matrix = query_emb.index, query_emb.matrix
            return
        if isinstance(query_emb, Mapping):
            ids, rows = list(query_emb.keys()), [np.asarray(v, np.float32) for v in query_emb.values()]
            matrix = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
        else:
            ids, matrix = query_emb
            ids, matrix = list(ids), np.asarray(matrix, np.float32)
            if len(ids) != len(matrix):
                raise ValueError(f"query_emb: {len(ids)} ids but {len(matrix)} vectors")
        self.index = pd.Index([str(i) for i in ids])
        self.matrix = matrix

    def rows(self, query_ids: Sequence, who: str) -> np.ndarray:
        """The vectors of ``query_ids``; an id without a vector is an error naming it."""
        pos = self.index.get_indexer([str(q) for q in query_ids])
        if (pos < 0).any():
            missing = pd.unique(np.asarray(query_ids, dtype=object)[pos < 0])
            raise ValueError(
                f"baseline {who!r}: query_emb has no vector for {len(missing)} query id(s), "
                f"e.g. {list(missing[:3])}"
            )
        return self.matrix[pos]


def normalise_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def reward_matrix(train: pd.DataFrame, llm_names: Sequence[str], who: str) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per training (user, query): ``pairs`` (``user_id``, ``query_id``) and their
    ``[n, num_llms]`` rewards, NaN where the LLM was not observed."""
    _require_columns(train, [USER_COLUMN, "query_id", "llm", "reward"], who)
    wide = train.groupby([USER_COLUMN, "query_id", "llm"])["reward"].mean().unstack("llm")
    wide = wide.reindex(columns=list(llm_names))
    return wide.index.to_frame(index=False), wide.to_numpy(dtype=float)


def mean_pick_reward(scores: np.ndarray, dense: dict[str, np.ndarray]) -> float:
    """The ``reward`` of :func:`proute.evaluation.metrics.routing_metrics` (mean reward of the
    best-scored observed LLM over rows with an observed LLM), without its tables: the
    number hyperparameter selection and early stopping maximise."""
    observed = np.asarray(dense["observed"], bool)
    keep = observed.any(axis=1)
    choice = picks(np.asarray(scores, float)[keep], observed[keep])
    reward = np.asarray(dense["reward"], float)[keep]
    return float(reward[np.arange(len(choice)), choice].mean()) if len(choice) else float("nan")
