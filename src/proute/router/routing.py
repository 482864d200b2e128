"""Routing: requests checked, scored and routed from one :class:`~proute.router.state.RouterState`.

Every function reads the one state it is given (an LLM or user added meanwhile is in all of
its results or in none) and never changes it; a user the router does not know is routed,
under ``unknown_user="average"``, as the state's precomputed average user. Routing a query
never touches the training graph: its representation is computed from the cached context
states (val/test query nodes are receivers only in the training graph, so this is exactly
what evaluation computed; the reference code rebuilt the graph per query: docs/DESIGN.md
§4, flaw 4). User ids are keyed by :func:`proute.data.ids.user_key`: ``3``, ``"3"`` and
``3.0`` are one user.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from proute.data.ids import UserIdError, user_key
from proute.router.state import RouterState, check_task_mode, with_user_rows
from proute.router.task_inference import SOFT
from proute.schema import UNKNOWN_USER_AVERAGE, UNKNOWN_USER_ERROR

#: ``encode(texts) -> [n, query_dim]`` embeddings (the router's text encoder).
Encode = Callable[[Sequence[str]], np.ndarray]


def query_error(query: Any) -> ValueError | None:
    """What is wrong with a query text (training rejects empty ones too), or None."""
    if not isinstance(query, str):
        return ValueError(f"field 'query' must be a string, got {query!r}")
    if not query.strip():
        return ValueError(f"field 'query' is empty; expected non-empty text (got {query!r})")
    return None


def unknown_user_message(state: RouterState, user_id: Any) -> str:
    users = list(state.users[:10])
    return (
        f"unknown user_id {user_id!r}: this router knows {len(state.users)} users "
        f"({users}{' ...' if len(state.users) > 10 else ''})"
    )


def ids_error(state: RouterState, user_id: Any, task: Any) -> KeyError | ValueError | None:
    """A ``ValueError`` for a value that is not a user id, a ``KeyError`` for a user (under
    ``unknown_user="error"``) or task the router does not know, or None."""
    try:
        key = user_key(user_id)
    except UserIdError as exc:
        return ValueError(exc.args[0])
    if key not in state.user_index and state.unknown_user == UNKNOWN_USER_ERROR:
        return KeyError(unknown_user_message(state, user_id))
    if task is not None and (not isinstance(task, str) or task not in state.task_index):
        return KeyError(f"unknown task {task!r}; known tasks: {list(state.tasks)}")
    return None


def request_error(state: RouterState, request: Any) -> KeyError | ValueError | None:
    """What is wrong with one request (not raised), or None when the state can route it."""
    if not isinstance(request, dict):
        return ValueError(f"expected a dict with 'query' and 'user_id'; got {request!r}")
    for key in ("query", "user_id"):
        if key not in request:
            return ValueError(f"missing field {key!r}; expected a dict with 'query' and 'user_id'")
    if not isinstance(request.get("explore", False), bool):
        return ValueError(f"field 'explore' must be true or false; got {request['explore']!r}")
    return query_error(request["query"]) or ids_error(state, request["user_id"], request.get("task"))


def task_proba(
    state: RouterState, query_emb: torch.Tensor, texts: Sequence[str] | None = None
) -> torch.Tensor:
    """``[n, num_tasks]`` task probabilities: the text classifier with the texts, else the
    embedding-only classifier, else (routers exported before both) one-hot at the nearest
    training-task centroid (:mod:`proute.router.task_inference`)."""
    if texts is not None and state.text_task_classifier is not None:
        return state.text_task_classifier.proba(query_emb, texts)
    if state.task_classifier is not None:
        return state.task_classifier.proba(query_emb)
    q = torch.nn.functional.normalize(query_emb, dim=1)
    nearest = (q @ state.task_centroids.T).argmax(dim=1)
    return torch.nn.functional.one_hot(nearest, len(state.tasks)).float()


def _check_inputs(state: RouterState, queries, user_ids: Sequence, tasks, query_emb) -> list:
    """The tasks as a list (None: inferred); raises for the first bad input (``request i: ...``)."""
    if query_emb is None and queries is None:
        raise ValueError("give the query texts or their embeddings")
    n = len(queries) if query_emb is None else len(query_emb)
    if len(user_ids) != n or (tasks is not None and len(tasks) != n):
        raise ValueError(
            f"{n} queries, {len(user_ids)} user ids and "
            f"{'no' if tasks is None else len(tasks)} tasks: give one of each per query"
        )
    tasks = [None] * n if tasks is None else list(tasks)
    for i in range(n):
        error = ids_error(state, user_ids[i], tasks[i])
        if query_emb is None:
            error = query_error(queries[i]) or error
        if error is not None:
            raise type(error)(f"request {i}: {error.args[0]}")
    return tasks


def _user_rows(state: RouterState, user_ids: Sequence):
    """``(context, user indices)``: unknown users (under the ``average`` policy) index an
    appended row holding the state's average user."""
    context = state.context
    idx = [state.user_index.get(user_key(u), -1) for u in user_ids]
    if state.model.has_users and min(idx, default=0) < 0:
        assert state.average is not None, "a published state has its average user"
        n = context.h["user"].shape[0]
        context = with_user_rows(context, state.average.unsqueeze(0))
        idx = [n if i < 0 else i for i in idx]
    return context, torch.tensor(idx, device=state.device)


@torch.no_grad()
def score(
    state: RouterState,
    encode: Encode,
    queries: Sequence[str] | None,
    user_ids: Sequence,
    tasks: Sequence[str | None] | None = None,
    query_emb: np.ndarray | torch.Tensor | None = None,
    task_mode: str | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Logits ``[n, num_llms]`` (columns ``state.llms``) and the task used per query.

    Give the texts (encoded with ``encode``) or ``query_emb``. A task that is ``None`` (or
    ``tasks=None``) is inferred (:func:`task_proba`): ``task_mode="hard"`` scores the query
    under its most probable task, ``"soft"`` averages its scores under every task weighted
    by the task's probability (the reported task is then the most probable one); default
    the state's ``task_mode``, chosen on validation at export. Every input is checked before
    anything is encoded; an error names its index (``request i: ...``).
    """
    tasks = _check_inputs(state, queries, user_ids, tasks, query_emb)
    if query_emb is None:
        assert queries is not None  # _check_inputs: texts or embeddings
        query_emb = encode(queries)
    q = torch.as_tensor(np.asarray(query_emb, dtype=np.float32), device=state.device)
    if q.ndim != 2 or q.shape[1] != state.query_dim:
        raise ValueError(f"query embeddings have shape {tuple(q.shape)}; expected [n, {state.query_dim}]")
    mode = check_task_mode(state.task_mode if task_mode is None else task_mode)
    context, user_idx = _user_rows(state, user_ids)
    proba = task_proba(state, q, queries)  # the texts, when given, sharpen task inference
    task_idx = proba.argmax(dim=1)
    given = torch.tensor([t is not None for t in tasks], dtype=torch.bool, device=state.device)
    for i, t in enumerate(tasks):
        if t is not None:
            task_idx[i] = state.task_index[t]
    # The model ignores user/task indices when its graph has no such nodes.
    logits = state.model.score_new(context, q, user_idx, task_idx)
    if mode == SOFT and not bool(given.all()) and len(state.tasks) > 1:
        free = (~given).nonzero().squeeze(1)
        mixed = torch.zeros_like(logits[free])
        for k in range(len(state.tasks)):
            task_k = torch.full_like(free, k)
            mixed += proba[free, k : k + 1] * state.model.score_new(context, q[free], user_idx[free], task_k)
        logits[free] = mixed
    return logits.float().cpu().numpy(), [state.tasks[i] for i in task_idx.tolist()]


#: What :func:`route_batch` does with a bad request: raise for the first, or return its error in its place.
BATCH_ERRORS = ("raise", "return")


def error_code(error: BaseException) -> str:
    """``unknown_user``, ``unknown_task`` or ``invalid_request``: what kind of problem a
    :func:`request_error` is (``KeyError`` for the unknown ids, ``ValueError`` otherwise)."""
    message = str(error.args[0]) if error.args else ""
    if isinstance(error, KeyError):
        return "unknown_user" if message.startswith("unknown user") else "unknown_task"
    return "invalid_request"


def route_batch(
    state: RouterState, encode: Encode, requests: Sequence[dict[str, Any]], errors: str = "raise"
) -> list[dict[str, Any]]:
    """Route ``[{"query": str, "user_id": id, "task": optional, "explore": optional}, ...]``
    (:meth:`proute.router.PersonalizedRouter.route_batch`). ``errors="raise"``: the first bad
    request raises (``request i: ...``) before anything is routed; ``"return"``: a bad
    request gets ``{"index", "error", "code"}`` in its place (:func:`error_code`) and the
    others are routed."""
    if errors not in BATCH_ERRORS:
        raise ValueError(f"errors={errors!r}; expected one of {list(BATCH_ERRORS)}")
    problems = [request_error(state, r) for r in requests]
    out: list[dict[str, Any]] = []
    for i, error in enumerate(problems):
        if error is not None and errors == "raise":
            raise type(error)(f"request {i}: {error.args[0]}")
        out.append({} if error is None else {"index": i, "error": error.args[0], "code": error_code(error)})
    ok = [i for i, e in enumerate(problems) if e is None]
    if ok:
        for i, d in zip(ok, _decide(state, encode, [requests[i] for i in ok]), strict=True):
            out[i] = d
    return out


def _decide(state: RouterState, encode: Encode, requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decisions of checked requests; ``routed_as``: ``"user"``, or ``"average"`` for a
    user the router does not know, routed as the population's average user."""
    scores, tasks = score(
        state,
        encode,
        [r["query"] for r in requests],
        [r["user_id"] for r in requests],
        [r.get("task") for r in requests],
    )
    return decisions(requests, scores, tasks, list(state.llms), state.user_index)


def decisions(
    requests: Sequence[dict[str, Any]], scores, tasks: Sequence[Any], llms: list[str], known
) -> list[dict[str, Any]]:
    """One decision per request from its score row: the best LLM (an infinite score, e.g.
    a baseline's never-observed LLM, is shown as ±1e30: never picked, and valid JSON), all
    scores, the task used, ``routed_as`` (``"average"`` when the user's key is not in
    ``known``); with ``"explore": true`` the LLM drawn from the softmax of the scores
    (``greedy_model_name``: the best one)."""
    out = []
    rng = np.random.default_rng() if any(r.get("explore") for r in requests) else None
    for r, s, t in zip(requests, scores, tasks, strict=True):
        finite = np.nan_to_num(s, neginf=-1e30, posinf=1e30)
        d = {
            "model_name": llms[int(finite.argmax())],
            "scores": dict(zip(llms, map(float, finite), strict=True)),
            "user_id": r["user_id"],
            "task": t,
            "routed_as": "user" if user_key(r["user_id"]) in known else UNKNOWN_USER_AVERAGE,
        }
        if rng is not None and r.get("explore"):
            p = np.exp(np.clip(finite - finite.max(), -700, 0))
            d["greedy_model_name"] = d["model_name"]
            d["model_name"] = llms[int(rng.choice(len(llms), p=p / p.sum()))]
        out.append(d)
    return out
