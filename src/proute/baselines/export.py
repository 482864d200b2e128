"""A fitted baseline as a router directory, served like the GNN router.

Layout (``router.json`` field ``kind: baseline/<name>``; :func:`proute.router.load_router`
loads either kind)::

    router.json          kind, format_version, the baseline's name, hyperparameters, seed and
                         fitted-state metadata (:mod:`proute.baselines.state`), the id lists
                         (users, llms, tasks), the text encoder spec and query size of the
                         GNN router of the same run, the validation selection, integrity
                         (sha256 of state.safetensors and of the fields that decide a route)
    state.safetensors    the fitted arrays and the task centroids

:class:`ExportedBaseline` has the GNN router's routing interface (``llms``, ``users``,
``tasks``, ``score``, ``route_batch``, ``route_single``, ``request_error``, ``encode``,
``unknown_user``, ``save``, ``load``), so ``proute infer`` / ``serve`` and
:class:`~proute.evaluation.scorers.RouterScorer` use it unchanged. A query without a task is
given the task of the nearest training-task centroid. It does not adapt: ``add_user``,
``feedback`` and ``add_llm`` raise :class:`NotAdaptable` (an ``AttributeError``, so the
server answers 501 and ``/health`` reports them unavailable).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from proute.baselines.base import BaselineRouter, QueryEmbeddings
from proute.baselines.reading import (
    FORMAT_VERSION,
    HASHED_FIELDS,
    KIND_PREFIX,
    _arrays,
    _centroids,
    _format_error,
    _read,
)
from proute.baselines.state import StateError, from_state, to_state
from proute.data.ids import UserIdError, user_key
from proute.schema import UNKNOWN_USER_ERROR

ADAPTATION = ("add_user", "feedback", "add_llm")
_UNKNOWN = "\x00unknown user"  # no training user has this id: every baseline's fallback


class NotAdaptable(AttributeError, NotImplementedError):
    """A baseline router cannot adapt (add users, take feedback, add LLMs) without refitting."""


class ExportedBaseline:
    """A fitted baseline that routes (user, query) requests (see the module docstring)."""

    def __init__(self, baseline: BaselineRouter, meta: dict[str, Any], centroids: np.ndarray, encoder=None):
        self.baseline, self.meta, self.centroids = baseline, meta, np.asarray(centroids, np.float32)
        self._encoder = encoder
        self._users = {user_key(u): u for u in meta["users"]}
        self._unknown_user = UNKNOWN_USER_ERROR
        self._arrays: dict[str, np.ndarray] | None = None  # the fitted state, until saved

    kind = property(lambda self: str(self.meta["kind"]))
    llms = property(lambda self: list(self.meta["llms"]))
    users = property(lambda self: list(self.meta["users"]))
    tasks = property(lambda self: list(self.meta["tasks"]))

    def __getattr__(self, name: str):
        if name in ADAPTATION:
            raise NotAdaptable(
                f"router kind {self.meta['kind']!r} cannot {name}: a baseline does not adapt "
                "without refitting (export a GNN router, kind 'gnn', for add_user/feedback/add_llm)"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def unknown_user(self) -> str:
        """``"error"`` (a ``KeyError`` naming the user) or ``"average"`` (the baseline's own
        fallback for a user it has no rows of)."""
        return self._unknown_user

    @unknown_user.setter
    def unknown_user(self, policy: str) -> None:
        from proute.router.state import check_policy

        self._unknown_user = check_policy(policy)

    # ------------------------------------------------------------------ the artefact
    @classmethod
    def from_fitted(
        cls, baseline: BaselineRouter, gnn_router, info: dict | None = None
    ) -> "ExportedBaseline":
        """A fitted baseline with the encoder, id lists and task centroids of the GNN router
        ``gnn_router`` exported from the same run (``info``: the validation selection)."""
        state_meta, arrays = to_state(baseline)
        meta = {
            "kind": KIND_PREFIX + baseline.name,
            "format_version": FORMAT_VERSION,
            "baseline": {
                "name": baseline.name,
                "params": baseline.params,
                "seed": baseline.seed,
                "state": state_meta,
            },
            "users": list(gnn_router.meta["users"]),
            "llms": list(baseline.llms),
            "tasks": list(gnn_router.tasks),
            "encoder": dict(gnn_router.meta["encoder"]),
            "query_dim": int(gnn_router.meta["query_dim"]),
            "selection": {k: v for k, v in (info or {}).items() if k in ("selected", "selected_on")},
            # the run's resolved training config, for the record (`proute evaluate` checks with
            # it that an evaluated split is held out); never read to route
            "config": gnn_router.meta.get("config"),
        }
        meta = json.loads(json.dumps(meta, default=_json_default))
        out = cls(baseline, meta, gnn_router.task_centroids.detach().cpu().numpy())
        out._arrays = arrays
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write the router directory atomically (a failed save leaves an existing one), its
        integrity hashes recorded in router.json."""
        from safetensors.numpy import save as save_arrays

        from proute.router.artifact import _sha256, _umask, _write_durably, field_digest

        path = Path(path)
        arrays = self._arrays if self._arrays is not None else to_state(self.baseline)[1]
        arrays = {k: np.ascontiguousarray(v) for k, v in {**arrays, "task_centroids": self.centroids}.items()}
        blob = save_arrays(arrays)
        meta = {k: v for k, v in self.meta.items() if k != "integrity"}
        meta["integrity"] = {
            "algorithm": "sha256",
            "files": {"state.safetensors": _sha256(blob)},
            "fields": {f: field_digest(f, meta.get(f)) for f in HASHED_FIELDS},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            _write_durably(tmp / "state.safetensors", blob)
            _write_durably(tmp / "router.json", json.dumps(meta, indent=2).encode("utf-8"))
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp made it 0700
            if path.exists():
                shutil.rmtree(path)
            tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        encoder=None,
        verify: bool = True,
        unknown_user: str = UNKNOWN_USER_ERROR,
    ) -> "ExportedBaseline":
        """Load a baseline router directory; :class:`~proute.router.RouterFormatError` naming
        the file and field for anything missing, unknown or changed since export."""
        path = Path(path)
        meta, blob = _read(path, verify)
        arrays = _arrays(path, blob)
        spec = meta["baseline"]
        from proute.baselines import BASELINES

        cls_ = BASELINES[spec["name"]]
        try:
            baseline = cls_(meta["llms"], seed=int(spec.get("seed", 0)), **dict(spec.get("params") or {}))
            from_state(cls_, baseline, dict(spec.get("state") or {}), arrays)
        except (StateError, TypeError) as exc:
            raise _format_error(
                f"{path / 'state.safetensors'}: does not match router.json field 'baseline' ({exc})"
            ) from None
        out = cls(baseline, meta, _centroids(path, arrays, meta), encoder)
        out._arrays = {k: v for k, v in arrays.items() if k != "task_centroids"}  # saved again as loaded
        out.unknown_user = unknown_user
        return out

    # ------------------------------------------------------------------ routing
    @property
    def encoder(self):
        """The text encoder of router.json's ``encoder`` spec, created on first use."""
        if self._encoder is None:
            from proute.data.text_encoders import TextEncoder

            spec = {k: v for k, v in self.meta["encoder"].items() if not k.startswith("_")}
            self._encoder = TextEncoder(**{**spec, "cache_dir": None, "show_progress": False})
        return self._encoder

    def encode(self, queries: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(list(queries))

    def _ids_error(self, user_id: Any, task: Any) -> KeyError | ValueError | None:
        try:
            key = user_key(user_id)
        except UserIdError as exc:
            return ValueError(exc.args[0])
        if key not in self._users and self._unknown_user == UNKNOWN_USER_ERROR:
            return KeyError(f"unknown user_id {user_id!r}: this router knows {len(self._users)} users")
        if task is not None and task not in set(self.meta["tasks"]):
            return KeyError(f"unknown task {task!r}; known tasks: {self.tasks}")
        return None

    def request_error(self, request: Any) -> KeyError | ValueError | None:
        """What is wrong with one request (not raised), as the GNN router reports it."""
        from proute.router.routing import query_error

        if not isinstance(request, dict):
            return ValueError(f"expected a dict with 'query' and 'user_id'; got {request!r}")
        for key in ("query", "user_id"):
            if key not in request:
                return ValueError(f"missing field {key!r}; expected a dict with 'query' and 'user_id'")
        if not isinstance(request.get("explore", False), bool):
            return ValueError(f"field 'explore' must be true or false; got {request['explore']!r}")
        return query_error(request["query"]) or self._ids_error(request["user_id"], request.get("task"))

    def score(
        self,
        queries: Sequence[str] | None,
        user_ids: Sequence,
        tasks: Sequence[str | None] | None = None,
        query_emb: Any = None,
        task_mode: str | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """Scores ``[n, num_llms]`` (columns :attr:`llms`) and the task used per query, as
        :meth:`proute.router.PersonalizedRouter.score` (``task_mode`` is ignored: a query
        without a task gets the nearest training-task centroid's)."""
        if query_emb is None and queries is None:
            raise ValueError("give the query texts or their embeddings")
        n = len(queries) if query_emb is None else len(query_emb)  # type: ignore[arg-type]
        tasks = [None] * n if tasks is None else list(tasks)
        if len(user_ids) != n or len(tasks) != n:
            raise ValueError(
                f"{n} queries, {len(user_ids)} user ids and {len(tasks)} tasks: give one of each"
            )
        for i in range(n):
            error = self._ids_error(user_ids[i], tasks[i])
            if error is not None:
                raise type(error)(f"request {i}: {error.args[0]}")
        q = np.asarray(self.encode(queries) if query_emb is None else query_emb, dtype=np.float32)  # type: ignore[arg-type]
        if q.ndim != 2 or q.shape[1] != self.meta["query_dim"]:
            raise ValueError(f"query embeddings have shape {q.shape}; expected [n, {self.meta['query_dim']}]")
        used = self._tasks(q, tasks)
        ids = [f"\x00q{i}" for i in range(n)]
        pairs = pd.DataFrame(
            {
                "user_id": [self._users.get(user_key(u), _UNKNOWN) for u in user_ids],
                "query_id": ids,
                "task": used,
            }
        )
        scorer = copy.copy(self.baseline)  # this call's queries; shared state is only read
        scorer.emb_ = QueryEmbeddings((ids, q), scorer.name)  # type: ignore[attr-defined]
        if hasattr(scorer, "cache_"):
            scorer.cache_ = {}
        return np.asarray(scorer.score(pairs), dtype=float), used

    def _tasks(self, q: np.ndarray, tasks: list) -> list[str]:
        norm = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        nearest = (norm @ self.centroids.T).argmax(axis=1) if len(self.centroids) else np.zeros(len(q), int)
        return [
            t if t is not None else self.meta["tasks"][int(j)] for t, j in zip(tasks, nearest, strict=True)
        ]

    def route_batch(self, requests: Sequence[dict[str, Any]], errors: str = "raise") -> list[dict[str, Any]]:
        """Route requests as :meth:`proute.router.PersonalizedRouter.route_batch` does: each
        decision ``{"model_name", "scores", "user_id", "task", "routed_as"}``; ``errors="raise"``
        raises for the first bad request, ``"return"`` puts ``{"index", "error", "code"}`` in
        its place."""
        from proute.router.routing import BATCH_ERRORS, error_code

        if errors not in BATCH_ERRORS:
            raise ValueError(f"errors={errors!r}; expected one of {list(BATCH_ERRORS)}")
        problems = [self.request_error(r) for r in requests]
        out: list[dict[str, Any]] = []
        for i, error in enumerate(problems):
            if error is not None and errors == "raise":
                raise type(error)(f"request {i}: {error.args[0]}")
            out.append(
                {} if error is None else {"index": i, "error": error.args[0], "code": error_code(error)}
            )
        ok = [i for i, e in enumerate(problems) if e is None]
        if ok:
            for i, d in zip(ok, self._decide([requests[i] for i in ok]), strict=True):
                out[i] = d
        return out

    def _decide(self, requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        scores, used = self.score(
            [r["query"] for r in requests],
            [r["user_id"] for r in requests],
            [r.get("task") for r in requests],
        )
        from proute.router.routing import decisions

        return decisions(requests, scores, used, list(self.llms), self._users)

    def route_single(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.route_batch([request])[0]


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON: {x!r}")


def export_baselines(names: Sequence[str], fitted: dict, gnn_router, out: Path) -> list[Path]:
    """Save each of ``names`` (``fitted``: ``{name: (fitted baseline, selection info)}``, as
    :func:`proute.baselines.evaluate_baselines_by_split` fills it) as a router directory
    ``out/<name>``, with the encoder, users and tasks of the run's GNN router ``gnn_router``."""
    missing = [n for n in names if n not in fitted]
    if missing:
        raise ValueError(f"export_baselines: {missing} were not fitted (fitted: {sorted(fitted)})")
    paths = []
    for n in names:
        baseline, info = fitted[n]
        paths.append(ExportedBaseline.from_fitted(baseline, gnn_router, info).save(out / n))
    return paths
