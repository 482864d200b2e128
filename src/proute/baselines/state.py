"""A fitted baseline as JSON metadata and named arrays, and back (:mod:`proute.baselines.export`).

:func:`to_state` gives ``(meta, arrays)``: ``meta`` JSON-able (user ids as JSON writes them,
the sizes a torch module is rebuilt with), ``arrays`` numpy arrays for one safetensors file;
:func:`from_state` rebuilds a baseline that scores exactly as the fitted one. Every fitted
baseline can be stored except the oracle (it reads the evaluated block's rewards: an upper
bound, not a router).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from proute.baselines.base import BaselineRouter
from proute.baselines.knn import KNNRouter
from proute.baselines.neural import _TorchRewardRouter
from proute.baselines.tables import OracleRouter, PerUserRouter, PerUserTaskRouter, RandomRouter, _FixedRouter

Arrays = dict[str, np.ndarray]


class StateError(ValueError):
    """A stored baseline state lacks an array or a field; the message names it."""


def _ids(index) -> list:
    return [u.item() if isinstance(u, np.generic) else u for u in index]


def _get(arrays: Arrays, key: str) -> np.ndarray:
    if key not in arrays:
        raise StateError(f"missing array {key!r}")
    return arrays[key]


def _per_user_state(r: PerUserRouter, prefix: str = "") -> tuple[dict, Arrays]:
    meta = {f"{prefix}users": _ids(r.table_.index)}
    return meta, {f"{prefix}global": r.global_, f"{prefix}table": r.table_.to_numpy(dtype=float)}


def _per_user_load(r: PerUserRouter, meta: dict, arrays: Arrays, prefix: str = "") -> None:
    r.global_ = _get(arrays, f"{prefix}global")
    users = meta.get(f"{prefix}users")
    if users is None:
        raise StateError(f"missing field {prefix}users")
    r.table_ = pd.DataFrame(_get(arrays, f"{prefix}table"), index=pd.Index(users), columns=r.llm_names)


def to_state(router: BaselineRouter) -> tuple[dict[str, Any], Arrays]:
    """``(meta, arrays)`` of a fitted baseline (see the module docstring)."""
    if isinstance(router, OracleRouter):
        raise ValueError(
            "baseline 'oracle' reads the evaluated block's rewards (an upper bound, never a "
            "method): it cannot be exported as a router"
        )
    for cls, (save, _) in _KINDS.items():
        if isinstance(router, cls):
            return save(router)
    raise ValueError(f"baseline {router.name!r} has no stored form; exportable: {exportable()}")


def from_state(
    cls: type[BaselineRouter], router: BaselineRouter, meta: dict, arrays: Arrays
) -> BaselineRouter:
    """``router`` (an unfitted instance of ``cls``) given the fitted state ``meta``/``arrays``."""
    for kind in cls.__mro__:
        if kind in _KINDS:
            _KINDS[kind][1](router, meta, arrays)
            return router
    raise ValueError(f"baseline {cls.name!r} has no stored form; exportable: {exportable()}")


def exportable() -> list[str]:
    """The names of the baselines :func:`to_state` can store."""
    from proute.baselines import BASELINES

    return sorted(n for n, c in BASELINES.items() if any(k in _KINDS for k in c.__mro__))


def _fixed(r: _FixedRouter) -> tuple[dict, Arrays]:
    return {}, {"row": r.row_}


def _fixed_load(r: _FixedRouter, meta: dict, arrays: Arrays) -> None:
    r.row_ = _get(arrays, "row")


def _per_user_task(r: PerUserTaskRouter) -> tuple[dict, Arrays]:
    meta, arrays = _per_user_state(r)
    index = r.task_table_.index
    meta["task_table"] = {"users": _ids(index.get_level_values(0)), "tasks": _ids(index.get_level_values(1))}
    arrays["task_table"] = r.task_table_.to_numpy(dtype=float)
    return meta, arrays


def _per_user_task_load(r: PerUserTaskRouter, meta: dict, arrays: Arrays) -> None:
    _per_user_load(r, meta, arrays)
    keys = meta.get("task_table")
    if not isinstance(keys, dict) or "users" not in keys or "tasks" not in keys:
        raise StateError("missing field task_table (its users and tasks)")
    index = pd.MultiIndex.from_arrays([keys["users"], keys["tasks"]], names=["user_id", "task"])
    r.task_table_ = pd.DataFrame(_get(arrays, "task_table"), index=index, columns=r.llm_names)


def _knn(r: KNNRouter) -> tuple[dict, Arrays]:
    meta, arrays = _per_user_state(r.fallback_, "fallback.")
    users = list(r.by_user_)
    meta["knn_users"] = _ids(users)
    for i, u in enumerate(users):
        arrays[f"knn.{i}.vectors"], arrays[f"knn.{i}.rewards"] = r.by_user_[u]
    return meta, arrays


def _knn_load(r: KNNRouter, meta: dict, arrays: Arrays) -> None:
    r.fallback_ = PerUserRouter(r.llm_names)
    _per_user_load(r.fallback_, meta, arrays, "fallback.")
    users = meta.get("knn_users")
    if users is None:
        raise StateError("missing field knn_users")
    r.by_user_ = {
        u: (_get(arrays, f"knn.{i}.vectors"), _get(arrays, f"knn.{i}.rewards")) for i, u in enumerate(users)
    }
    r.cache_ = {}


def _torch(r: _TorchRewardRouter) -> tuple[dict, Arrays]:
    arrays = {f"module.{k}": v.detach().cpu().numpy() for k, v in r.module_.state_dict().items()}
    arrays["trained_llms"] = r.trained_llms_.astype(np.uint8)
    in_dim = int(r.emb_.matrix.shape[1])
    return {"users": _ids(r.users_), "in_dim": in_dim}, arrays


def _torch_load(r: _TorchRewardRouter, meta: dict, arrays: Arrays) -> None:
    import torch

    if "users" not in meta or "in_dim" not in meta:
        raise StateError("missing field users or in_dim")
    r.users_ = pd.Index(meta["users"])
    r.trained_llms_ = _get(arrays, "trained_llms").astype(bool)
    r.module_ = r._module(int(meta["in_dim"]), len(r.users_))
    weights = {
        k[len("module.") :]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("module.")
    }
    try:
        r.module_.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise StateError(f"the module.* arrays do not match the {r.name} model ({exc})") from None


def _nothing(r: BaselineRouter) -> tuple[dict, Arrays]:
    return {}, {}


_KINDS: dict[type, tuple[Callable, Callable]] = {
    # most specific first: PerUserTaskRouter before PerUserRouter
    PerUserTaskRouter: (_per_user_task, _per_user_task_load),
    PerUserRouter: (lambda r: _per_user_state(r), lambda r, m, a: _per_user_load(r, m, a)),
    _FixedRouter: (_fixed, _fixed_load),
    KNNRouter: (_knn, _knn_load),
    _TorchRewardRouter: (_torch, _torch_load),
    RandomRouter: (_nothing, lambda r, m, a: None),
}
