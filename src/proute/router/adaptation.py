"""New users, feedback and new LLMs without retraining: each builds a new
:class:`~proute.router.state.RouterState` from the current one (copy-on-write: new tensors
and dicts; the given state is left as it is), which the router then publishes.

The method is in :mod:`proute.router.adapt` (measured by :mod:`proute.study.adaptation`);
placing a user is :mod:`proute.router.placement`, reading interactions
:mod:`proute.router.interactions`. Every state returned here carries its average user
(:func:`with_average`), so routing never computes one.

Every update is checked before it is returned (:func:`finite_update`): a state whose new
tensors are not all finite is refused with a ``ValueError`` and the router keeps the one it
had, so no accepted update can make a later route fail.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from proute.data.ids import user_key
from proute.router.adapt import fit_llm_final, llm_states
from proute.router.evidence import Evidence
from proute.router.interactions import check_numbers, finite_number, parse_interactions
from proute.router.placement import average_states, empty_evidence, place_user
from proute.router.routing import Encode, unknown_user_message
from proute.router.state import (
    NEW_USER_METHODS,
    UNKNOWN_USER_ERROR,
    RouterState,
    check_policy,
    check_task_mode,
    set_user_row,
    stored_user_id,
    with_llm_row,
    with_user_rows,
)


def _tensors(state: RouterState) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of every tensor of ``state`` that routing or adaptation reads."""
    for i, layer in enumerate(state.context.states):
        for nt, t in layer.items():
            yield f"context.states[{i}].{nt}", t
    for nt, t in state.context.h.items():
        yield f"context.h.{nt}", t
    if state.average is not None:
        yield "average_user", state.average
    yield from ((f"embedding[{k!r}]", t) for k, t in state.embedding.items())
    yield from ((f"adapt[{k!r}]", t) for k, t in state.adapt.items() if isinstance(t, torch.Tensor))
    for k, ev in state.evidence.items():
        yield f"evidence[{k!r}].query_emb", ev.query_emb
        yield f"evidence[{k!r}].efeat", ev.efeat
        yield f"evidence[{k!r}].reward", ev.reward


def finite_update(update: Callable[..., RouterState]) -> Callable[..., RouterState]:
    """``update(state, ...)`` whose result is refused (``ValueError``; ``state`` stays the
    router's) when a tensor it added or changed is not finite."""

    @functools.wraps(update)
    def checked(state: RouterState, *args: Any, **kwargs: Any) -> RouterState:
        new = update(state, *args, **kwargs)
        old = {id(t) for _, t in _tensors(state)}
        for name, t in _tensors(new):
            if id(t) not in old and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ValueError(
                    f"{update.__name__} refused: it would make the router's {name} non-finite "
                    "(an outcome or embedding out of range?); the router is unchanged"
                )
        return new

    return checked


def with_average(state: RouterState) -> RouterState:
    """``state`` with its average user computed (what routing uses for unknown users)."""
    return state.replace(average=average_states(state))


def with_settings(state: RouterState, **settings: Any) -> RouterState:
    """A state with router settings changed: ``unknown_user``, ``task_mode``,
    ``task_classifier``, ``text_task_classifier`` (state fields) or the adaptation settings
    ``new_user_method`` and ``prior_strength`` (router.json ``adapt``)."""
    fields: dict[str, Any] = {}
    adapt: dict[str, Any] = {}
    for name, value in settings.items():
        if name == "unknown_user":
            fields[name] = check_policy(value)
        elif name == "task_mode":
            fields[name] = check_task_mode(value)
        elif name in ("task_classifier", "text_task_classifier"):
            fields[name] = None if value is None else value.to(state.device)
        elif name == "new_user_method":
            if value not in NEW_USER_METHODS:
                raise ValueError(f"new_user_method={value!r}; expected one of {list(NEW_USER_METHODS)}")
            adapt[name] = value
        elif name == "prior_strength":
            if not 0 <= value < float("inf"):
                raise ValueError(f"prior_strength must be a finite number >= 0; got {value}")
            adapt[name] = float(value)
        else:
            raise TypeError(f"unknown router setting {name!r}")
    new = state.replace(**fields)
    if adapt:  # the average user is placed with them
        new = with_average(new.replace(meta={**state.meta, "adapt": {**state.adapt_info, **adapt}}))
    return new


@finite_update
def add_user(
    state: RouterState, encode: Encode, user_id: Any, interactions: Sequence[dict] = ()
) -> RouterState:
    """``state`` with a new user placed from its interactions
    (:meth:`proute.router.PersonalizedRouter.add_user`)."""
    if not state.model.has_users:
        raise ValueError("this router has no user nodes (graph=no_users): it routes every user alike")
    key = user_key(user_id)
    rows = parse_interactions(state, encode, list(interactions))
    if key in state.user_index:
        raise ValueError(f"user_id {user_id!r} is already known; add interactions with feedback()")
    ev = empty_evidence(state)
    for q, t, llms, efeat, reward in rows:
        ev = ev.extend(q, t, llms, efeat, reward)
    states, e = place_user(state, key, None, ev)
    return _commit_user(state, key, user_id, None, states, e, ev)


@finite_update
def feedback(
    state: RouterState, encode: Encode, user_id: Any, query: Any, llm: str, outcome: Any
) -> RouterState:
    """``state`` with one more interaction of a user
    (:meth:`proute.router.PersonalizedRouter.feedback`)."""
    if isinstance(outcome, dict):
        check_numbers(outcome, "outcome.")
        it = {"llm": llm, **outcome}
    else:
        it = {"llm": llm, "reward": finite_number(outcome, "outcome")}
    if isinstance(query, str):
        it["query"] = query
    else:
        it["query_emb"] = query
    key = user_key(user_id)
    if key not in state.user_index:
        if state.unknown_user == UNKNOWN_USER_ERROR:
            raise KeyError(unknown_user_message(state, user_id))
        return add_user(state, encode, user_id, [it])
    ((q, t, llms, efeat, reward),) = parse_interactions(state, encode, [it])
    index = state.user_index[key]
    ev = state.evidence.get(key) or empty_evidence(state)
    ev = ev.extend(q, t, llms, efeat, reward)
    states, e = place_user(state, key, index, ev, warm=True)
    return _commit_user(state, key, user_id, index, states, e, ev)


def _commit_user(state: RouterState, key: str, user_id, index: int | None, states, e, ev) -> RouterState:
    """The state with the user's new states (a new row, or its row replaced), evidence and
    embedding; the average user is placed again when a trained user's row changed."""
    changes: dict[str, Any] = {"evidence": {**state.evidence, key: ev}}
    if e is not None:
        changes["embedding"] = {**state.embedding, key: e}
    if index is None:
        users = state.users + (stored_user_id(user_id),)
        changes.update(
            context=with_user_rows(state.context, states.unsqueeze(0)),
            users=users,
            user_index={**state.user_index, key: len(users) - 1},
            meta={**state.meta, "users": list(users)},
        )
    else:
        changes["context"] = set_user_row(state.context, index, states)
    new = state.replace(**changes)
    # the average user is placed from the trained users' rows only
    return with_average(new) if index is not None and index < state.num_trained_users else new


def _reward_table_of(state: RouterState, keys: list, tasks: torch.Tensor, pop: torch.Tensor | None):
    """``[m, num_tasks, trained LLMs]`` per outcome: its trained user's own mean reward
    per (task, LLM) on the train rows (users weigh cost differently, so the population's
    mean misplaces a new LLM), else the population's; None without either."""
    if pop is None:
        return None
    own = state.adapt.get("adapt.user_reward")
    rows = []
    for key in keys:
        i = state.user_index.get(key) if key is not None else None
        if own is not None and i is not None and i < own.shape[0]:
            rows.append(own[i])
        else:
            rows.append(pop[:, : (own.shape[2] if own is not None else pop.shape[1])])
    n = min(r.shape[1] for r in rows)
    return torch.stack([r[:, :n] for r in rows])


def _user_states_of(state: RouterState, key: str | None) -> torch.Tensor:
    """``[layers + 1, d]`` states of a known user, else of the average user."""
    i = state.user_index.get(key) if key is not None else None
    if i is not None:
        return state.user_states(i)
    if state.average is None:
        raise ValueError("this router has no user nodes (graph=no_users): outcomes have no user")
    return state.average


def _outcome_evidence(state: RouterState, encode: Encode, name: str, outcomes: list[dict]):
    """``(evidence, user keys, [m, layers + 1, d] user states)`` of a new LLM's outcomes:
    one query node per outcome (two users' outcomes on one text: two nodes)."""
    rows = parse_interactions(state, encode, [{**o, "llm": name} for o in outcomes], llm_names=[name])
    m = len(rows)
    ev = Evidence(
        torch.as_tensor(np.stack([r[0] for r in rows])),
        torch.tensor([r[1] for r in rows]),
        torch.arange(m),
        torch.zeros(m, dtype=torch.int64),
        torch.tensor([r[3][0] for r in rows], dtype=torch.float32),
        torch.tensor([r[4][0] for r in rows], dtype=torch.float32),
    )
    keys = [_outcome_user(o, i) for i, o in enumerate(outcomes)]
    return ev, keys, torch.stack([_user_states_of(state, k) for k in keys])


def _outcome_user(outcome: dict, i: int) -> str | None:
    """The user key of outcome ``i`` (None: the average user)."""
    user_id = outcome.get("user_id")
    return None if user_id is None else user_key(user_id, f"outcomes[{i}].user_id")


def _new_llm_states(state: RouterState, feat: torch.Tensor, ev, keys, user_rows) -> torch.Tensor:
    """``[layers + 1, d]`` of a new LLM: propagated from its description and outcomes, the
    final state fitted on the outcomes (:func:`proute.router.adapt.fit_llm_final`)."""
    msg = state.adapt.get("adapt.llm_msg")
    n = state.adapt_info.get("trained_llms", len(state.llms))
    base = None if msg is None else msg[:, :n].mean(1)
    with torch.no_grad():
        states = llm_states(state.model, state.context, feat, ev, user_rows, base, 1.0)
    if ev is not None:
        imputed = _reward_table_of(state, keys, ev.task, state.adapt.get("adapt.pop_reward"))
        h = fit_llm_final(
            state.model, state.context, states[-1], ev, user_rows, imputed, state.listwise_temperature
        )
        states = torch.cat([states[:-1], h.reshape(1, -1)], 0)
    return states


@finite_update
def add_llm(
    state: RouterState,
    encode: Encode,
    name: str,
    description: str,
    prices: tuple[float, float],
    family: str | None = None,
    outcomes: Sequence[dict] | None = None,
) -> RouterState:
    """``state`` with a new candidate LLM (:meth:`proute.router.PersonalizedRouter.add_llm`)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an LLM name must be a non-empty string; got {name!r}")
    if not isinstance(description, str) or not description.strip():
        raise ValueError(f"field 'description' must be non-empty text; got {description!r}")
    if name in state.llms:
        raise ValueError(f"LLM {name!r} is already a candidate of this router")
    for field, price in zip(("input_price", "output_price"), prices, strict=True):
        if finite_number(price, field) < 0:
            raise ValueError(f"field {field!r} must be >= 0, got {price!r}")
    feat = torch.as_tensor(encode([description]), device=state.device)[0]
    outcomes = list(outcomes or [])
    ev, keys, user_rows = _outcome_evidence(state, encode, name, outcomes) if outcomes else (None, None, None)
    states = _new_llm_states(state, feat, ev, keys, user_rows)
    adapt = dict(state.adapt)
    pop = adapt.get("adapt.pop_reward")
    if pop is not None:
        col = pop.mean(1, keepdim=True)
        if ev is not None and ev.num_outcomes:
            for t in ev.task.unique().tolist():
                sel = ev.task[ev.qnode] == t
                col[t, 0] = ev.reward[sel].mean()
        adapt["adapt.pop_reward"] = torch.cat([pop, col], 1)
    row = {
        "llm": name,
        "description": description,
        "input_price": float(prices[0]),
        "output_price": float(prices[1]),
        "family": family or "",
    }
    llms = state.llms + (name,)
    meta = {**state.meta, "llms": list(llms), "llm_table": list(state.meta.get("llm_table", [])) + [row]}
    new = state.replace(context=with_llm_row(state.context, states), llms=llms, meta=meta, adapt=adapt)
    return with_average(new)  # the average user is scored against the new LLM too
