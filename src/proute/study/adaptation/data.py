"""What the adaptation experiments share: their training runs, evaluation data and scorers.

Each experiment trains its routers with :func:`proute.train.run` (the one training path) and
scores them with :func:`proute.evaluation.scoring.evaluate` (the one evaluation path) on
blocks built from the evaluation data's long table (:func:`~proute.evaluation.scoring.dense_block`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from proute.data.pipeline import PreparedData, prepare_from_config
from proute.data.table import USER_COLUMN
from proute.evaluation.scorers import RouterScorer
from proute.evaluation.scoring import Block, Scorer, dense_block, evaluate

log = logging.getLogger(__name__)


@dataclass
class HeldOutInputs:
    """What an experiment on held-out users or LLMs reads: ``router_dir``, the router trained
    without them; ``data``, the evaluation data; ``held``, the held-out ids; ``pool``, the
    data whose training rows feed their interactions; ``reference_dir``, the router trained
    with them (None: not trained); ``seed``."""

    router_dir: Path
    data: PreparedData
    held: list
    pool: PreparedData
    reference_dir: Path | None
    seed: int


def train_router(cfg: DictConfig, run_dir: Path) -> Path:
    """The router directory of ``cfg`` trained into ``run_dir`` by :func:`proute.train.run`;
    a finished run there with the same resolved config is reused (a rerun only evaluates)."""
    from proute.train import run
    from proute.training import lifecycle

    resolved = OmegaConf.to_yaml(cfg, resolve=True)
    config_file = run_dir / "config.yaml"
    same = config_file.is_file() and config_file.read_text() == resolved
    if lifecycle.is_finished(run_dir) and same and (run_dir / "router").is_dir():
        log.info("%s: a finished run of this config, reused", run_dir)
    else:
        run(cfg, run_dir)
    return run_dir / "router"


def prepare(cfg: DictConfig) -> PreparedData:
    """The prepared (encoded) data of ``cfg``."""
    return prepare_from_config(cfg)


def held_out(prepared: PreparedData, kind: str) -> list:
    """The held-out user ids (as the table spells them) or LLM names the split recorded."""
    meta = prepared.data.meta.get("split", {})
    if kind not in meta:
        raise ValueError(
            f"the experiment's split records no {kind!r} (split.kind={meta.get('kind')!r}); "
            "an adaptation experiment needs split=new_users_unseen or split=new_llms_unseen"
        )
    names = {str(x) for x in meta[kind]}
    column = USER_COLUMN if kind == "new_users" else "llm"
    return [u for u in pd.unique(prepared.table[column]) if str(u) in names]


def block(prepared: PreparedData, split: str, users: Sequence | None = None) -> Block:
    """The ``(pairs, dense)`` block of ``split`` (only ``users`` when given), LLM columns in
    the data's LLM order."""
    t = prepared.table
    rows = t[t["split"] == split]
    if users is not None:
        rows = rows[rows[USER_COLUMN].isin(list(users))]
    pairs = rows.drop_duplicates([USER_COLUMN, "query_id"])[[USER_COLUMN, "query_id", "task"]]
    pairs = pairs.reset_index(drop=True)
    return pairs, dense_block(rows, pairs, llms_of(prepared))


def llms_of(prepared: PreparedData) -> list[str]:
    return [str(m) for m in prepared.data.llms.index]


class Aligned:
    """A scorer whose columns are ``llms``: ``inner``'s columns moved there, ``-inf`` for an
    LLM ``inner`` does not know (a router trained without it never picks it)."""

    def __init__(self, inner: Scorer, llms: Sequence[str]):
        self.inner, self._llms = inner, list(llms)

    @property
    def llms(self) -> list[str]:
        return self._llms

    def score(self, pairs: pd.DataFrame) -> np.ndarray:
        inner = self.inner.score(pairs)
        index = {m: j for j, m in enumerate(self.inner.llms)}
        out = np.full((len(pairs), len(self._llms)), -np.inf)
        for j, m in enumerate(self._llms):
            if m in index:
                out[:, j] = inner[:, index[m]]
        return out


def router_scorer(router, prepared: PreparedData) -> Aligned:
    """``router`` scoring (user, query, task) rows of ``prepared`` (tasks given)."""
    inner = RouterScorer(router, prepared.query_embedding_dict(), gold_tasks=True)
    return Aligned(inner, llms_of(prepared))


def summary(scorer: Scorer, split: Block) -> dict[str, Any]:
    """Reward, oracle reward, per-user reward and pick counts of ``scorer`` on ``split``."""
    m = evaluate(scorer, split)
    return {
        "reward": m["overall"]["reward"],
        "oracle": m["overall"]["oracle_reward"],
        "per_user": {u: v["reward"] for u, v in m["per_user"].items()},
        "picks": {str(k): int(v) for k, v in m["picks"]["llm"].value_counts().items()},
    }


@dataclass
class Support:
    """One query of a user with every LLM's outcome: ``interactions`` are what
    ``add_user``/``feedback`` take (``query_emb``, ``task``, ``llm``, ``reward``)."""

    query_id: str
    task: str
    interactions: list[dict]

    @property
    def query_emb(self) -> np.ndarray:
        return self.interactions[0]["query_emb"]

    @property
    def rewards(self) -> dict[str, float]:
        return {it["llm"]: it["reward"] for it in self.interactions}


def support_of(prepared: PreparedData, user: Any, seed: int) -> list[Support]:
    """The user's training queries in a seeded order, each with every observed LLM's reward
    (the user's own ``reward`` column)."""
    t = prepared.table
    rows = t[(t[USER_COLUMN] == user) & (t["split"] == "train")]
    emb = prepared.query_embedding_dict()
    qids = sorted(rows["query_id"].astype(str).unique())
    qids = [qids[i] for i in np.random.default_rng(seed).permutation(len(qids))]
    by_query = {str(q): r for q, r in rows.groupby(rows["query_id"].astype(str))}
    out = []
    for q in qids:
        r = by_query[q]
        task = str(r["task"].iloc[0])
        its = [
            {"query_emb": emb[q], "task": task, "llm": str(m), "reward": float(w)}
            for m, w in zip(r["llm"], r["reward"], strict=True)
        ]
        out.append(Support(q, task, its))
    return out
