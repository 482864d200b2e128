"""The router's state: one immutable snapshot that routing reads and adaptation replaces.

A :class:`RouterState` holds everything a route depends on: the model and its cached
per-layer context (:class:`~proute.models.model.ContextCache`), the id maps (users keyed by
:func:`proute.data.ids.user_key`, LLMs, tasks), the task classifiers, the adaptation
context and bookkeeping (``adapt.*`` tensors, each adapted user's evidence and fitted
embedding) and the population's average user, computed when the state is published
(:func:`proute.router.adaptation.with_average`). Nothing in a published state changes:
:mod:`proute.router.adaptation` builds a new one (copy-on-write: new tensors and dicts) and
:class:`~proute.router.PersonalizedRouter` swaps it in, so a reader that took a state sees
one consistent router until it is done.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from proute.data.ids import user_key
from proute.models.model import ContextCache, PersonalizedRouterModel
from proute.router.evidence import Evidence
from proute.router.task_inference import HARD, TASK_MODES, TaskClassifier, TextTaskClassifier
from proute.schema import EDGE_FEATURES, UNKNOWN_USER_ERROR, UNKNOWN_USER_POLICIES

NEW_USER_METHODS = ("fit", "mixture")
# Chosen on the held-out users' validation pairs of the adaptation experiments
# (proute.study.adaptation: `python -m proute.study adapt experiment=adapt_new_users` and
# `experiment=adapt_feedback`), pooled over seeds 42 and 43 (experiments/new_users/): the
# method, the fit's prior strength (in evidence queries) and how sharply the mixture's
# posterior over trained users follows the evidence.
DEFAULT_NEW_USER_METHOD = "fit"
DEFAULT_MIXTURE_SHARPNESS = 3.0
DEFAULT_PRIOR_STRENGTH = 1.0
DEFAULT_FEEDBACK_IMPUTATION = "own"
#: The temperature of the listwise targets (training's ``trainer.listwise_temperature``
#: default); a router records the one it was trained with (router.json field
#: ``listwise_temperature``), this is the fallback for one that records none.
DEFAULT_LISTWISE_TEMPERATURE = 0.1
# What a 1-dimensional outcome edge carries when a router records nothing (the graph's default).
_DEFAULT_EDGE_FEATURE = EDGE_FEATURES[0]


@dataclass(frozen=True)
class RouterState:
    """One consistent snapshot of a router (see the module docstring). ``meta`` is the
    router.json metadata (its ``users`` and ``llms`` lists kept equal to the fields)."""

    model: PersonalizedRouterModel
    context: ContextCache
    meta: dict
    users: tuple
    llms: tuple[str, ...]
    tasks: tuple[str, ...]
    user_index: Mapping[str, int]
    task_index: Mapping[str, int]
    task_centroids: torch.Tensor
    task_classifier: TaskClassifier | None
    text_task_classifier: TextTaskClassifier | None
    task_mode: str
    unknown_user: str
    adapt: Mapping[str, torch.Tensor]
    evidence: Mapping[str, Evidence]
    embedding: Mapping[str, torch.Tensor]
    listwise_temperature: float
    edge_feature: str
    device: torch.device
    #: ``[layers + 1, d]`` states of the population's average user (None without user nodes,
    #: or before :func:`proute.router.adaptation.with_average` published the state).
    average: torch.Tensor | None = None

    def replace(self, **changes: Any) -> "RouterState":
        """A new state with ``changes`` (this one is left as it is)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ derived facts
    @property
    def query_dim(self) -> int:
        return int(self.meta["query_dim"])

    @property
    def edge_dim(self) -> int:
        return int(self.model.gnn.edge_dim)

    @property
    def adapt_info(self) -> dict:
        """router.json ``adapt``: the adaptation settings and the population reward definition."""
        return self.meta.get("adapt", {})

    @property
    def num_trained_users(self) -> int:
        return int(self.adapt_info.get("trained_users", len(self.meta["users"])))

    @property
    def new_user_method(self) -> str:
        return str(self.adapt_info.get("new_user_method", DEFAULT_NEW_USER_METHOD))

    @property
    def prior_strength(self) -> float:
        return float(self.adapt_info.get("prior_strength", DEFAULT_PRIOR_STRENGTH))

    @property
    def feedback_imputation(self) -> str:
        return str(self.adapt_info.get("feedback_imputation", DEFAULT_FEEDBACK_IMPUTATION))

    @property
    def mixture_sharpness(self) -> float:
        return float(self.adapt_info.get("mixture_sharpness", DEFAULT_MIXTURE_SHARPNESS))

    def user_states(self, index: int) -> torch.Tensor:
        """``[layers + 1, d]`` states of the user at row ``index``."""
        return torch.stack([s["user"][index] for s in self.context.states] + [self.context.h["user"][index]])


def stored_user_id(user_id: Any) -> Any:
    """How a user id is written to router.json's ``users``: an integer for a number, the
    key's text for a text (:func:`~proute.data.ids.user_key` gives both the same key)."""
    key = user_key(user_id)
    return key if isinstance(user_id, str) else int(key)


def index_users(users: Sequence) -> dict[str, int]:
    """``{user_key(u): row}``; ``ValueError`` for an id that is not a user id or two ids of one key."""
    index: dict[str, int] = {}
    for i, u in enumerate(users):
        key = user_key(u, field=f"users[{i}]")
        if key in index:
            raise ValueError(f"users[{index[key]}] and users[{i}] ({u!r}) are one user, {key!r}")
        index[key] = i
    return index


def recorded(meta: dict, name: str, *old_path: str, default: Any) -> Any:
    """Field ``name`` of router.json; for routers saved before it was a field, the value at
    ``old_path`` inside the training config it recorded (``config``), else ``default``."""
    if name in meta:
        return meta[name]
    node: Any = meta.get("config", {})
    for key in old_path:
        node = node.get(key) if isinstance(node, dict) else None
    return default if node is None else node


def new_state(
    model: PersonalizedRouterModel,
    context: ContextCache,
    meta: dict,
    task_centroids: torch.Tensor,
    device: str | torch.device = "cpu",
    task_classifier: TaskClassifier | None = None,
    text_task_classifier: TextTaskClassifier | None = None,
    unknown_user: str = UNKNOWN_USER_ERROR,
    adapt: Mapping[str, torch.Tensor] | None = None,
    evidence: Mapping[str, Evidence] | None = None,
    embedding: Mapping[str, torch.Tensor] | None = None,
) -> RouterState:
    """A state (without its average user: :func:`proute.router.adaptation.with_average`)
    from a router's parts, moved to ``device``. ``ValueError`` for a bad user id in
    ``meta["users"]`` or an unknown policy or task mode."""
    device = torch.device(device)
    check_policy(unknown_user)
    task_mode = check_task_mode(meta.get("task_inference", {}).get("mode", HARD))
    temperature = recorded(
        meta, "listwise_temperature", "trainer", "listwise_temperature", default=DEFAULT_LISTWISE_TEMPERATURE
    )
    return RouterState(
        model=model.to(device).eval(),
        context=context.to(device),
        meta=meta,
        users=tuple(meta["users"]),
        llms=tuple(meta["llms"]),
        tasks=tuple(meta["tasks"]),
        user_index=index_users(meta["users"]),
        task_index={t: i for i, t in enumerate(meta["tasks"])},
        task_centroids=task_centroids.to(device),
        task_classifier=None if task_classifier is None else task_classifier.to(device),
        text_task_classifier=None if text_task_classifier is None else text_task_classifier.to(device),
        task_mode=task_mode,
        unknown_user=unknown_user,
        adapt={k: v.to(device) for k, v in (adapt or {}).items()},
        evidence=dict(evidence or {}),
        embedding={k: v.to(device) for k, v in (embedding or {}).items()},
        listwise_temperature=float(temperature),
        edge_feature=str(
            recorded(meta, "edge_feature", "graph", "edge_feature", default=_DEFAULT_EDGE_FEATURE)
        ),
        device=device,
    )


def check_policy(policy: str) -> str:
    if policy not in UNKNOWN_USER_POLICIES:
        raise ValueError(f"unknown_user={policy!r}; expected one of {list(UNKNOWN_USER_POLICIES)}")
    return policy


def check_task_mode(mode: str) -> str:
    if mode not in TASK_MODES:
        raise ValueError(f"task_mode={mode!r}; expected one of {list(TASK_MODES)}")
    return mode


# ---------------------------------------------------------------------- context rows
def with_user_rows(context: ContextCache, states: torch.Tensor) -> ContextCache:
    """A new ContextCache with users appended: ``states`` is ``[n, layers + 1, d]``."""
    layers = [
        {**s, "user": torch.cat([s["user"], states[:, i].to(s["user"])], 0)}
        for i, s in enumerate(context.states)
    ]
    h = {**context.h, "user": torch.cat([context.h["user"], states[:, -1].to(context.h["user"])], 0)}
    return ContextCache(states=layers, h=h)


def set_user_row(context: ContextCache, index: int, states: torch.Tensor) -> ContextCache:
    """A new ContextCache with user ``index``'s row replaced by ``states`` (``[layers + 1, d]``)."""

    def put(t, v):
        t = t.clone()
        t[index] = v
        return t

    layers = [{**s, "user": put(s["user"], states[i])} for i, s in enumerate(context.states)]
    return ContextCache(states=layers, h={**context.h, "user": put(context.h["user"], states[-1])})


def with_llm_row(context: ContextCache, states: torch.Tensor) -> ContextCache:
    """A new ContextCache with one LLM appended (``states``: ``[layers + 1, d]``)."""
    layers = [{**s, "llm": torch.cat([s["llm"], states[i : i + 1]], 0)} for i, s in enumerate(context.states)]
    return ContextCache(states=layers, h={**context.h, "llm": torch.cat([context.h["llm"], states[-1:]], 0)})


def json_id(u: Any) -> Any:
    """A numpy scalar id as the Python value JSON writes."""
    return u.item() if isinstance(u, np.generic) else u
