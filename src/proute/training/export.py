"""The export from training: a trained model and its graph frozen into a router.

:func:`export_router` takes what only training has (the model, the full graph, the prepared
data, the Hydra config) and gives a :class:`~proute.router.PersonalizedRouter` whose
router.json records, as fields of their own, everything loading and adapting it needs
(``listwise_temperature``, ``edge_feature``, ``adapt``); the resolved config is kept only as
the run's record. The router package never imports this one.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from proute.data.ids import user_key
from proute.data.outcomes import normalize_cost, reward_column
from proute.router import PersonalizedRouter
from proute.router.adapt import node_messages
from proute.router.artifact import FORMAT_VERSION
from proute.router.state import DEFAULT_LISTWISE_TEMPERATURE, DEFAULT_PRIOR_STRENGTH, json_id, new_state
from proute.router.task_inference import HARD, TaskClassifier, TextTaskClassifier


def export_router(model, rg, prepared, cfg: DictConfig, environment: dict) -> PersonalizedRouter:
    """Freeze a trained model and its graph context into a router (``environment``: the
    versions recorded in router.json)."""
    model.eval()
    with torch.no_grad():
        context = model.context_cache(rg.graph)
    table = prepared.table
    emb = prepared.query_embedding_dict()
    dim = prepared.query_emb.shape[1]
    centroids = task_centroids(table, emb, list(rg.tasks), dim)
    classifier, task_info, text_classifier, text_info = fit_task_classifiers(table, emb, list(rg.tasks))
    encoder_cfg = OmegaConf.to_container(cfg.text_encoder, resolve=True)
    assert isinstance(encoder_cfg, dict)
    encoder_cfg = {k: v for k, v in encoder_cfg.items() if k not in ("cache_dir",)}
    llm_table = prepared.data.llms.reindex(rg.llms)
    temperature = OmegaConf.select(cfg, "trainer.listwise_temperature", default=DEFAULT_LISTWISE_TEMPERATURE)
    meta = {
        "format_version": FORMAT_VERSION,
        "model": dict(model.hparams),
        "users": [json_id(u) for u in rg.users],
        "llms": list(rg.llms),
        "tasks": list(rg.tasks),
        "llm_table": json.loads(llm_table.reset_index().to_json(orient="records")),
        "encoder": encoder_cfg,
        "query_dim": int(dim),
        "listwise_temperature": float(temperature),
        "edge_feature": str(rg.edge_feature),
        "dataset": prepared.data.name,
        "environment": environment,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "task_inference": {
            "method": "softmax_regression",
            "mode": HARD,  # until the live protocol chooses on val
            **task_info,
            "text": {"method": "softmax_regression_text_ngrams", **text_info},
        },
    }
    adapt, meta["adapt"] = adaptation_context(model, rg, table)
    state = new_state(
        model, context, meta, torch.from_numpy(centroids), "cpu", classifier, text_classifier, adapt=adapt
    )
    return PersonalizedRouter(state)


def task_centroids(table: pd.DataFrame, emb: dict, tasks: list[str], dim: int) -> np.ndarray:
    """``[tasks, dim]``: the L2-normalised mean embedding of each task's training queries
    (task inference of routers exported before the classifiers; kept in every router)."""
    train_q = table.loc[table["split"] == "train"].drop_duplicates("query_id")
    centroids = np.zeros((len(tasks), dim), dtype=np.float32)
    for i, task in enumerate(tasks):
        ids = train_q.loc[train_q["task"] == task, "query_id"]
        if len(ids):
            c = np.mean([emb[q] for q in ids], axis=0)
            centroids[i] = c / max(np.linalg.norm(c), 1e-12)
    return centroids


def fit_task_classifiers(table: pd.DataFrame, emb: dict, tasks: list[str]):
    """The task classifiers of the training queries, their L2 chosen on the val queries:
    ``(embedding-only classifier, its info, text classifier, its info)``."""
    index = {t: i for i, t in enumerate(tasks)}
    parts, texts = {}, {}
    for split in ("train", "val"):
        q = table.loc[table["split"] == split].drop_duplicates("query_id")
        q = q[q["task"].astype(str).isin(index)]
        x = np.stack([emb[i] for i in q["query_id"]]) if len(q) else None
        parts[split] = (x, [index[str(t)] for t in q["task"]])
        texts[split] = [str(t) for t in q["query"]]
    (xt, yt), (xv, yv) = parts["train"], parts["val"]
    if xt is None:
        raise ValueError("task classifier: no training queries")
    classifier, info = TaskClassifier.fit(xt, yt, len(tasks), xv, yv)
    text_classifier, text_info = TextTaskClassifier.fit(
        xt, texts["train"], yt, len(tasks), xv, texts["val"], yv
    )
    return classifier, info, text_classifier, text_info


def _mean_reward(train: pd.DataFrame, col: str, tasks: list, llms: list) -> np.ndarray:
    """``[tasks, LLMs]``: the population's mean reward on the train rows (a pair without
    rows: the LLM's mean over the tasks that have some)."""
    pop = np.zeros((len(tasks), len(llms)), dtype=np.float32)
    task_i = {t: i for i, t in enumerate(tasks)}
    llm_i = {m: i for i, m in enumerate(llms)}
    filled = np.zeros_like(pop, dtype=bool)
    for (t, m), v in train.groupby(["task", "llm"], observed=True)[col].mean().items():
        if str(t) in task_i and str(m) in llm_i:
            pop[task_i[str(t)], llm_i[str(m)]] = v
            filled[task_i[str(t)], llm_i[str(m)]] = True
    col_mean = np.where(filled.any(0), pop.sum(0) / np.maximum(filled.sum(0), 1), 0.0)
    return np.where(filled, pop, col_mean[None, :]).astype(np.float32)


def _user_reward(train: pd.DataFrame, col: str, rg, pop: np.ndarray) -> np.ndarray:
    """``[users, tasks, LLMs]``: each trained user's own mean reward per (task, LLM) on the
    train rows; the population's where it has none."""
    own = np.repeat(pop[None], len(rg.users), 0)
    task_i = {t: i for i, t in enumerate(rg.tasks)}
    llm_i = {m: i for i, m in enumerate(rg.llms)}
    user_i = {user_key(u): i for i, u in enumerate(rg.users)}
    for (u, t, m), v in train.groupby(["user_id", "task", "llm"], observed=True)[col].mean().items():
        if user_key(u) in user_i and str(t) in task_i and str(m) in llm_i:
            own[user_i[user_key(u)], task_i[str(t)], llm_i[str(m)]] = v
    return own.astype(np.float32)


def _reward_definition(train: pd.DataFrame, col: str) -> dict:
    """The population reward definition: a least-squares ``reward ≈ a·performance +
    b·cost_norm + c`` over the train rows (cost min-max normalised per task on them)."""
    cost_norm = normalize_cost(train)
    x = np.stack([train["performance"].to_numpy(float), cost_norm, np.ones(len(train))], 1)
    coef = np.linalg.lstsq(x, train[col].to_numpy(float), rcond=None)[0] if len(train) else [1.0, 0.0, 0.0]
    cost = train.groupby("task", observed=True)["cost"].agg(["min", "max"])
    return {
        "kind": "linear",
        "performance": float(coef[0]),
        "cost_norm": float(coef[1]),
        "intercept": float(coef[2]),
        "cost_range": {str(t): [float(r["min"]), float(r["max"])] for t, r in cost.iterrows()},
        "note": "population least squares over the train rows; an interaction with 'reward' uses it as given",
    }


def adaptation_context(model, rg, table: pd.DataFrame) -> tuple[dict[str, torch.Tensor], dict]:
    """What add_user / feedback / add_llm need from training (proute.router.adapt): each
    trained user's and LLM's per-layer received message and in-degree, the population's
    (and each user's) mean reward per (task, LLM) on the train rows, and the population
    reward definition, for interactions that give no reward."""
    adapt: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for nt in ("user", "llm"):
            if nt not in model.gnn.ntypes:
                continue
            msgs, deg = node_messages(model, rg.graph, nt)
            adapt[f"adapt.{nt}_msg"] = torch.stack(msgs, 0).cpu()  # [layers, n, d]
            adapt[f"adapt.{nt}_deg"] = deg.cpu()
    train = table.loc[table["split"] == "train"]
    col = reward_column(train)
    pop = _mean_reward(train, col, list(rg.tasks), list(rg.llms))
    adapt["adapt.pop_reward"] = torch.from_numpy(pop)
    if rg.has_users:
        adapt["adapt.user_reward"] = torch.from_numpy(_user_reward(train, col, rg, pop))
    info = {
        "trained_users": len(rg.users) if rg.has_users else 0,
        "trained_llms": len(rg.llms),
        "prior_strength": DEFAULT_PRIOR_STRENGTH,
        "reward_definition": _reward_definition(train, col),
    }
    return adapt, info
