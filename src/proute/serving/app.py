"""``proute serve``: the router behind an OpenAI-compatible HTTP API (FastAPI + uvicorn).

Endpoints (:mod:`proute.serving.endpoints`, one module each):

``POST /v1/chat/completions``
    Routes the last user message for the ``user`` and forwards the request to the chosen
    LLM's upstream; the answer carries the decision (:mod:`.endpoints.completions`).
``POST /v1/route``
    Route only, one request or a batch (:mod:`.endpoints.route`).
``POST /v1/feedback``, ``POST /v1/users``, ``GET /v1/users/{id}``
    Feedback and new users, when the router has them, recorded in the state store
    (:mod:`proute.store`) before they are applied; what the router holds for a user
    (:mod:`.endpoints.users`).
``GET /v1/models``, ``GET /health``

Requests and answers are pydantic models (:mod:`proute.serving.schemas`). Errors are
OpenAI-style ``{"error": {"message", "type", "param", "code"}}`` (:mod:`proute.serving.errors`):
400 for a body that is not a JSON object or lacks a required field, 422 for a field with a
bad value (both name it in ``param``), 404 for an unknown user under the ``error`` policy
(the default; ``average`` routes it as the population's average user and says so),
502 naming the upstream when it fails, answers an error status or times out.

Routing is micro-batched on the router's one thread (:mod:`proute.serving.batching`).

With ``api_keys`` (``proute serve --api-keys FILE``) every path needs ``Authorization:
Bearer KEY`` (401), what a key may do is checked per request (403) and each key has a rate
limit (429): :mod:`proute.serving.auth`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from proute.router import UNKNOWN_USER_ERROR, UNKNOWN_USER_POLICIES
from proute.serving.upstreams import Upstream

if TYPE_CHECKING:
    from proute.serving.limits import Limits


def unknown_user_policy(router, policy: str | None) -> str:
    """Set the router's unknown-user policy; ``None`` is ``error`` (as the Python API,
    ``proute infer`` and ``proute chat``): an unknown user is a 404 naming it, unless the
    server is started with ``average``, and then its decisions say ``routed_as: average``."""
    supported = hasattr(router, "unknown_user")
    if policy is None:
        policy = UNKNOWN_USER_ERROR
    if policy not in UNKNOWN_USER_POLICIES:
        raise ValueError(f"unknown_user={policy!r}; expected one of {list(UNKNOWN_USER_POLICIES)}")
    if supported:
        router.unknown_user = policy
    elif policy != UNKNOWN_USER_ERROR:
        raise ValueError(
            f"unknown_user={policy!r}: this router version has no unknown-user policy "
            "(it refuses every unknown user); use 'error'"
        )
    return policy


def _error_handlers(app) -> None:
    """Every error answered OpenAI-style: ours, Starlette's (an unknown path), FastAPI's
    validation, and anything unforeseen (500)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from proute.serving.errors import APIError

    def answer(err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return answer(exc)

    @app.exception_handler(HTTPException)
    async def _http_error(request, exc: HTTPException):
        return answer(APIError(exc.status_code, str(exc.detail), None, None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return answer(APIError(422, first.get("msg", "invalid request"), param))

    @app.exception_handler(Exception)
    async def _internal(request, exc: Exception):
        return answer(APIError(500, f"internal error: {type(exc).__name__}: {exc}", None, "internal_error"))


def create_app(
    router,
    upstreams: dict[str, Upstream] | None = None,
    *,
    unknown_user: str | None = None,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    warmup: bool = True,
    threads: int | None = None,
    api_keys=None,
    key_rate=None,
    key_burst: int | None = None,
    limits: Limits | None = None,
    store=None,
):
    """The FastAPI app serving ``router`` (a loaded :class:`~proute.router.PersonalizedRouter`).

    ``upstreams``: ``{llm: Upstream}`` (:func:`proute.serving.upstreams.load_upstreams`); without
    it ``/v1/chat/completions`` answers 503 and routing still works. ``unknown_user``:
    ``"error"`` (404 naming the user; the default) or ``"average"`` (the population's average
    user, said by ``routed_as`` and the header ``x-proute-routed-as``; needs a router that
    supports it). ``threads``: torch's intra-op threads
    for routing (default: torch's own choice, one per core); on a machine shared with other
    jobs, 1 avoids the oversubscription that multiplies latency (see scripts/loadtest.py).
    ``warmup``: load the text encoder at start-up, not at the first request.
    ``api_keys``: a keys file (``proute keys create``) or a :class:`~proute.serving.auth.KeyRing`:
    every request then needs a key (:mod:`proute.serving.auth`); ``key_rate`` (``"20/s"``)
    and ``key_burst``: the default limit per key. ``limits``: what a request may hold
    (:class:`proute.serving.limits.Limits`). ``store``: a :class:`proute.store.StateStore`
    recording new users and feedback before they are applied (``router`` restored from it
    by :func:`proute.store.restore`); None records nothing.
    """
    # FastAPI is the serve extra: imported when an app is built, so that this module (and
    # unknown_user_policy, which `proute evaluate` uses) imports without it.
    from fastapi import FastAPI

    from proute.serving.batching import RouterThread
    from proute.serving.endpoints import completions, health, route, users
    from proute.serving.service import Service

    policy = unknown_user_policy(router, unknown_user)
    ring = _key_ring(api_keys, key_rate, key_burst)
    thread = RouterThread(router, max_batch, max_wait_ms, threads)
    service = Service(router, thread, upstreams, policy, limits, store)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.start(warmup)
        yield
        await service.close()

    app = FastAPI(title="proute", version="1", lifespan=lifespan)
    app.state.service, app.state.router, app.state.policy = service, router, policy
    app.state.api_keys = ring
    _add_key_middleware(app, ring)
    app.state.batcher = service.thread.batcher
    for module in (health, route, completions, users):
        app.include_router(module.router)
    _error_handlers(app)
    return app


def _add_key_middleware(app, ring) -> None:
    """With keys: every request checked, around everything (/docs, /openapi.json included)."""
    if ring is not None:
        from proute.serving.auth import APIKeyMiddleware

        app.add_middleware(APIKeyMiddleware, ring=ring)


def _key_ring(api_keys, rate, burst):
    """The :class:`~proute.serving.auth.KeyRing` of ``api_keys`` (a path or one), or ``None``."""
    if api_keys is None:
        return None
    from proute.serving.auth import KeyRing

    return api_keys if isinstance(api_keys, KeyRing) else KeyRing(api_keys, rate, burst)


def serve(
    router_path,
    host: str = "127.0.0.1",
    port: int = 8000,
    upstreams_path=None,
    unknown_user: str | None = None,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    log_level: str = "info",
    threads: int | None = None,
    api_keys=None,
    insecure: bool = False,
    key_rate=None,
    key_burst: int | None = None,
    limits: Limits | None = None,
    state: str | None = None,
) -> None:
    """Load the router (and upstreams) and serve until interrupted. A ``host`` other than
    loopback needs ``api_keys`` (a keys file), or ``insecure=True`` to serve without them.
    What the router learned is restored from the state store ``state`` (a URL; None:
    :func:`proute.store.default_state_url`, beside the router directory) and recorded there."""
    import uvicorn  # the serve extra

    from proute.serving.auth import check_exposure

    check_exposure(host, api_keys, insecure)
    ring = _key_ring(api_keys, key_rate, key_burst)  # a bad keys file fails before the router loads
    from proute.router import load_router
    from proute.serving.upstreams import load_upstreams
    from proute.store import default_state_url, open_store, restore

    router = load_router(router_path)  # a GNN router, or a baseline exported as one
    upstreams = None if upstreams_path is None else load_upstreams(upstreams_path, router.llms)
    with open_store(state or default_state_url(router_path), router_path, exclusive=True) as store:
        restored = restore(router, store)
        print(
            f"proute serve: state {store.url}: snapshot at seq {restored.snapshot_seq}, "
            f"{restored.replayed} events replayed ({restored.refused} refused)",
            flush=True,
        )
        app = create_app(
            restored.router,
            upstreams,
            unknown_user=unknown_user,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            threads=threads,
            api_keys=ring,
            limits=limits,
            store=store,
        )
        uvicorn.run(app, host=host, port=port, log_level=log_level)
