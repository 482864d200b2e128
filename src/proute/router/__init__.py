"""The exported router: a directory that routes queries without the training data.

:class:`PersonalizedRouter` is a small façade around one immutable
:class:`~proute.router.state.RouterState` (ids, tensors, user and LLM states, the average
user), in three parts:

- :mod:`proute.router.artifact`: the directory on disk (save, load, integrity, older
  formats; :class:`RouterFormatError`, :class:`RouterIntegrityWarning`);
- :mod:`proute.router.routing`: scoring and routing from one snapshot of the state;
- :mod:`proute.router.adaptation`: new users, feedback and new LLMs without retraining
  (the method in :mod:`proute.router.adapt`, measured by :mod:`proute.study.adaptation`): each
  builds a new state, which the router publishes (copy-on-write under a lock: a reader
  never sees a half-updated state); :meth:`~PersonalizedRouter.save` persists them with
  their evidence (``evidence.*`` tensors) and new integrity hashes.

A router is exported from a trained model on the training side
(:func:`proute.training.export.export_router`); this package never imports the trainer.
:func:`load_router` loads any exported router: this one, or a baseline exported as a router
(``router.json`` field ``kind: baseline/<name>``, :mod:`proute.baselines.export`).
An unknown user follows :attr:`~PersonalizedRouter.unknown_user`: ``"error"`` (default) or
``"average"`` (the population's average user). User ids are keyed by
:func:`proute.data.ids.user_key`: ``3``, ``"3"`` and ``3.0`` are one user.

Threads: one router may serve many threads. Its lazy state (the text encoder) is created
once under a lock; the encoder loads its transformers model once, under the process-wide
:data:`~proute.data.text_encoders.MODEL_LOAD_LOCK`, which :meth:`PersonalizedRouter.load`
also holds while it builds the GNN (transformers' ``from_pretrained`` patches torch's module
creation for the whole process while it runs, so a load beside a router being built would
leave modules on the meta device).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from proute.data.ids import user_key
from proute.data.text_encoders import TextEncoder
from proute.router import adaptation, artifact, routing
from proute.router.artifact import (
    FILES,
    FORMAT_VERSION,
    HASHED_FIELDS,
    MODEL_INIT_LOCK,
    READABLE_FORMATS,
    RouterFormatError,
    RouterIntegrityWarning,
    field_digest,
)
from proute.router.loading import load_router, router_kind
from proute.router.state import (
    DEFAULT_FEEDBACK_IMPUTATION,
    DEFAULT_LISTWISE_TEMPERATURE,
    DEFAULT_MIXTURE_SHARPNESS,
    DEFAULT_NEW_USER_METHOD,
    DEFAULT_PRIOR_STRENGTH,
    NEW_USER_METHODS,
    RouterState,
)
from proute.schema import UNKNOWN_USER_AVERAGE, UNKNOWN_USER_ERROR, UNKNOWN_USER_POLICIES

_MODEL_INIT_LOCK = MODEL_INIT_LOCK  # the name tests and older callers use

__all__ = [
    "DEFAULT_FEEDBACK_IMPUTATION",
    "DEFAULT_LISTWISE_TEMPERATURE",
    "DEFAULT_MIXTURE_SHARPNESS",
    "DEFAULT_NEW_USER_METHOD",
    "DEFAULT_PRIOR_STRENGTH",
    "FILES",
    "FORMAT_VERSION",
    "HASHED_FIELDS",
    "NEW_USER_METHODS",
    "READABLE_FORMATS",
    "UNKNOWN_USER_AVERAGE",
    "UNKNOWN_USER_ERROR",
    "UNKNOWN_USER_POLICIES",
    "PersonalizedRouter",
    "RouterFormatError",
    "RouterIntegrityWarning",
    "RouterState",
    "field_digest",
    "load_router",
    "router_kind",
]


def _kind_or_none(path) -> str | None:
    """router.json's ``kind`` when it can be read (artifact.load reports every other problem)."""
    try:
        return router_kind(path)
    except RouterFormatError:
        return None


class PersonalizedRouter:
    """Routes (user, query) to the LLM the user would want.

    >>> router = PersonalizedRouter.load("outputs/train/runs/<time>/router")  # doctest: +SKIP
    >>> router.route_single({"query": "What is 2 + 2?", "user_id": 3})        # doctest: +SKIP
    {'model_name': 'gemma-2-9b-it', 'scores': {...}, 'user_id': 3, 'task': 'gsm8k'}
    """

    def __init__(self, state: RouterState, encoder=None):
        """A router on ``state`` (its average user is placed here when it has none yet);
        ``encoder`` replaces the text encoder named in router.json (same embedding size)."""
        if state.average is None and state.model.has_users:
            state = adaptation.with_average(state)
        self._state = state
        self._encoder = encoder
        self._lock = threading.Lock()  # the lazy text encoder
        # Writers (add_user, feedback, add_llm, settings) build a new state under
        # _update_lock (so two updates never race) and swap it in under _state_lock;
        # readers take self._state once and use only that snapshot.
        self._state_lock = threading.RLock()
        self._update_lock = threading.RLock()

    # ------------------------------------------------------------------ the state
    @property
    def state(self) -> RouterState:
        """The current snapshot (immutable: adaptation publishes a new one)."""
        return self._state

    def _update(self, change: Callable[[RouterState], RouterState]) -> None:
        """Publish ``change(current state)``, serialised with every other writer."""
        with self._update_lock:
            new = change(self._state)
            with self._state_lock:
                self._state = new

    model = property(lambda self: self._state.model, doc="The GNN and decoder (eval mode).")
    context = property(lambda self: self._state.context, doc="The cached per-layer context states.")
    meta = property(lambda self: self._state.meta, doc="router.json's metadata of the current state.")
    device = property(lambda self: self._state.device)
    task_centroids = property(lambda self: self._state.task_centroids)
    llms = property(lambda self: list(self._state.llms), doc="The candidate LLMs (score columns).")
    tasks = property(lambda self: list(self._state.tasks))
    users = property(lambda self: list(self._state.users), doc="The known user ids.")

    @property
    def task_classifier(self):
        return self._state.task_classifier

    @task_classifier.setter
    def task_classifier(self, classifier) -> None:
        self._update(lambda s: adaptation.with_settings(s, task_classifier=classifier))

    @property
    def text_task_classifier(self):
        return self._state.text_task_classifier

    @text_task_classifier.setter
    def text_task_classifier(self, classifier) -> None:
        self._update(lambda s: adaptation.with_settings(s, text_task_classifier=classifier))

    @property
    def task_mode(self) -> str:
        """How a query without a task is scored (:mod:`proute.router.task_inference`):
        ``"hard"`` or ``"soft"``, chosen on validation at export; saved with the router."""
        return self._state.task_mode

    @task_mode.setter
    def task_mode(self, mode: str) -> None:
        self._update(lambda s: adaptation.with_settings(s, task_mode=mode))

    @property
    def unknown_user(self) -> str:
        """What routing does with a user id the router does not know: ``"error"`` (the
        library default: ``KeyError`` naming the user) or ``"average"`` (route it as the
        population's average user: the state a new user gets from :meth:`add_user` with no
        interactions; the user is not added)."""
        return self._state.unknown_user

    @unknown_user.setter
    def unknown_user(self, policy: str) -> None:
        self._update(lambda s: adaptation.with_settings(s, unknown_user=policy))

    @property
    def new_user_method(self) -> str:
        """How :meth:`add_user` (and :meth:`feedback` of an added user) places a new user:
        ``"fit"`` (default: the embedding fit and propagation of :mod:`proute.router.adapt`) or
        ``"mixture"`` (the posterior mixture of the trained users' states given the evidence,
        the population's preferences as the prior: faster, safer for users like the trained
        ones, unable to represent users unlike them). Chosen on the held-out users'
        validation pairs of the adaptation experiment (``python -m proute.study adapt
        experiment=adapt_new_users``, :mod:`proute.study.adaptation`), pooled over seeds 42
        and 43."""
        return self._state.new_user_method

    @new_user_method.setter
    def new_user_method(self, method: str) -> None:
        self._update(lambda s: adaptation.with_settings(s, new_user_method=method))

    @property
    def prior_strength(self) -> float:
        """Weight of the prior on a new user's embedding, in units of evidence queries."""
        return self._state.prior_strength

    @prior_strength.setter
    def prior_strength(self, value: float) -> None:
        self._update(lambda s: adaptation.with_settings(s, prior_strength=value))

    # ------------------------------------------------------------------ the artefact
    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        encoder=None,
        device: str | torch.device = "cpu",
        verify: bool = True,
        unknown_user: str = UNKNOWN_USER_ERROR,
    ) -> "PersonalizedRouter":
        """Load a router directory; needs nothing else (not the data, not the configs).

        ``encoder`` (optional) replaces the text encoder named in ``router.json``; it must
        produce embeddings of the same size. The sha256 hashes in ``router.json`` are checked
        (a mismatch raises :class:`RouterFormatError`); ``verify=False`` loads a deliberately
        edited router anyway, with a :class:`RouterIntegrityWarning`. ``unknown_user``: the
        policy for user ids the router does not know (:attr:`unknown_user`).
        """
        kind = _kind_or_none(path)
        if kind is not None and kind != "gnn":
            raise RouterFormatError(
                f"{Path(path) / 'router.json'}: field 'kind' is {kind!r}, not a GNN router; "
                "load it with proute.router.load_router(path)"
            )
        return cls(artifact.load(path, device, verify, unknown_user), encoder)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the router directory atomically (:func:`proute.router.artifact.save`): a
        failed save leaves an existing one; new integrity hashes."""
        return artifact.save(self._state, path)

    # ------------------------------------------------------------------ routing
    @property
    def encoder(self):
        """The text encoder, created on first use (once, also when threads race to it)."""
        encoder = self._encoder
        if encoder is None:
            with self._lock:
                if self._encoder is None:
                    spec = {k: v for k, v in self.meta["encoder"].items() if not k.startswith("_")}
                    spec.update(cache_dir=None, show_progress=False)
                    self._encoder = TextEncoder(**spec)
                encoder = self._encoder
        return encoder

    def encode(self, queries: Sequence[str]) -> np.ndarray:
        """Embeddings of ``queries`` with the router's encoder; safe from many threads.

        The first encode loads the model (once, under
        :data:`~proute.data.text_encoders.MODEL_LOAD_LOCK`); encodes run concurrently.
        """
        return self.encoder.encode(list(queries))

    def user_index(self, user_id) -> int:
        """The row of a known user (``KeyError`` naming it otherwise)."""
        state = self._state
        try:
            return state.user_index[user_key(user_id)]
        except KeyError:
            raise KeyError(routing.unknown_user_message(state, user_id)) from None

    def request_error(self, request: Any) -> KeyError | ValueError | None:
        """What is wrong with one request (not raised), or None when the router can route it.

        A ``ValueError`` for a malformed request (not a dict, a missing field, a query that
        is not a non-empty string, a user id that is not one: :func:`proute.data.ids.user_key`),
        a ``KeyError`` for a user or task this router does not know. Its message names the
        field; callers add where the request came from.
        """
        return routing.request_error(self._state, request)

    def task_proba(self, query_emb: torch.Tensor, texts: Sequence[str] | None = None) -> torch.Tensor:
        """``[n, num_tasks]`` task probabilities (:func:`proute.router.routing.task_proba`)."""
        return routing.task_proba(self._state, query_emb, texts)

    def infer_tasks(self, query_emb: torch.Tensor, texts: Sequence[str] | None = None) -> torch.Tensor:
        """The most probable task of each query (:meth:`task_proba`)."""
        return self.task_proba(query_emb, texts).argmax(dim=1)

    def score(
        self,
        queries: Sequence[str] | None,
        user_ids: Sequence,
        tasks: Sequence[str | None] | None = None,
        query_emb: np.ndarray | torch.Tensor | None = None,
        task_mode: str | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """Logits ``[n, num_llms]`` (columns :attr:`llms`) and the task used per query, from
        one snapshot of the state (:func:`proute.router.routing.score` for the arguments)."""
        return routing.score(self._state, self.encode, queries, user_ids, tasks, query_emb, task_mode)

    def route_batch(self, requests: Sequence[dict[str, Any]], errors: str = "raise") -> list[dict[str, Any]]:
        """Route ``[{"query": str, "user_id": id, "task": optional, "explore": optional}, ...]``.

        Each decision is ``{"model_name", "scores", "user_id", "task", "routed_as"}``:
        ``routed_as`` is ``"average"`` when the user is unknown and was routed as the
        population's average user (``unknown_user="average"``), else ``"user"``.

        ``"explore": true`` draws the LLM from the softmax of the scores instead of taking
        the best (``greedy_model_name`` is then the best): what lets bandit
        :meth:`feedback` improve a user, who would otherwise only ever report on the LLM
        the router already prefers (experiments/new_users/README.md).

        ``errors="raise"`` (default): a bad request raises before anything is routed:
        ``ValueError`` (malformed) or ``KeyError`` (unknown user or task), its message
        starting ``request <index>: ``. ``errors="return"``: a bad request gets
        ``{"index": i, "error": message, "code": "unknown_user" | "unknown_task" |
        "invalid_request"}`` in its place and the others are routed (what the server's
        batches use).
        """
        return routing.route_batch(self._state, self.encode, requests, errors)

    def route_single(self, request: dict[str, Any]) -> dict[str, Any]:
        """Route one ``{"query": str, "user_id": id[, "task": str]}``."""
        return self.route_batch([request])[0]

    def average_user_states(self) -> torch.Tensor:
        """``[layers + 1, d]`` states of the population's average user: a new user without
        interactions (:meth:`add_user` with none); part of each published state."""
        average = self._state.average
        if average is None:
            raise ValueError("this router has no user nodes (graph=no_users): it has no average user")
        return average

    # ------------------------------------------------------------------ adaptation
    def add_user(self, user_id, interactions: Sequence[dict] = ()) -> None:
        """Place a new user from k observed interactions, without retraining.

        Each interaction is ``{"query": str (or "query_emb": vector), "llm": name,
        "reward": float}`` or, instead of ``reward``, ``"performance"`` (and ``"cost"``),
        rewarded by the population reward definition of the router's training users
        (router.json ``adapt.reward_definition``: a per-user preference is not known to the
        router, so give ``reward`` when the user's own is known); ``"task"`` is optional
        (inferred when absent). Interactions on one query with several LLMs form one query
        node. The method is :attr:`new_user_method` (:mod:`proute.router.adapt`): by default
        (``"fit"``) the user's embedding is fitted to what it preferred, with a prior at the
        trained users' mean, and its per-layer states computed with the model's own layers
        from its interactions' query nodes and the cached task/LLM states; ``"mixture"``
        places it as the posterior mixture of the trained users given the interactions, the
        population's preferences as the prior. Nothing is retrained; the user's states are
        appended to the cached context (a new state, safe beside routing threads) and saved
        with :meth:`save`. Raises ``ValueError`` for a user the router knows (use
        :meth:`feedback`) or a value that is not a user id.
        """
        self._update(lambda s: adaptation.add_user(s, self.encode, user_id, interactions))

    def feedback(self, user_id, query, llm: str, outcome) -> None:
        """Add one interaction to a user's state online: ``outcome`` is the reward (float) or
        ``{"performance": ..., "cost": ...}`` (or ``{"reward": ...}``); ``query`` a text or
        an embedding. A new user (under ``unknown_user="average"``, else ``KeyError``) is
        added with it. A user the router was trained with keeps its training evidence: the
        new interaction enters its message with weight ``n / (N + n)`` and its embedding's
        prior grows with its ``N`` training queries, so a known user moves little per
        event; a new user moves as in :meth:`add_user`."""
        self._update(lambda s: adaptation.feedback(s, self.encode, user_id, query, llm, outcome))

    def add_llm(
        self,
        name: str,
        description: str,
        input_price: float,
        output_price: float,
        family: str | None = None,
        outcomes: Sequence[dict] | None = None,
    ) -> None:
        """Add a candidate LLM without retraining; routes can pick it from then on.

        Its layer-0 state is the input projection of its description's embedding (the
        router's text encoder, as the trained LLM nodes), its message the population mean
        LLM message blended with the outcome messages of ``outcomes`` when given: a list of
        ``{"query" | "query_emb", "reward" | "performance"[, "cost"][, "user_id"][, "task"]}``
        (each becomes a query node of its user, or of the average user, with one outcome
        edge to the new LLM). Prices and family are recorded in router.json's LLM table.
        """
        prices = (input_price, output_price)
        self._update(
            lambda s: adaptation.add_llm(s, self.encode, name, description, prices, family, outcomes)
        )
