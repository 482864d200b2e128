"""What the endpoints share: the router, its thread, the upstreams, the HTTP client.

One :class:`Service` per app (``app.state.service``); the endpoints reach it through the
dependency :func:`proute.serving.endpoints.service`.
"""

from __future__ import annotations

import json
import time
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from proute.data.ids import user_key
from proute.serving.batching import RouterThread
from proute.serving.errors import APIError, router_error, validation_error
from proute.serving.limits import TRIM_EVERY, Limits, trim_heap
from proute.serving.schemas import RouteRequest
from proute.serving.upstreams import Upstream
from proute.store import Event, StateStore, StoreError

Model = TypeVar("Model", bound=BaseModel)


def json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object (400 when it is not one), whatever its content type."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON ({exc})", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(
            400, f"the request body must be a JSON object, got {type(body).__name__}", None, "invalid_json"
        )
    return body


def validated(model: type[Model], data: Any, hints: dict[str, str] | None = None, **context: Any) -> Model:
    """``data`` as a ``model`` (``context``: what its checks need), or the :class:`APIError`
    of its first problem."""
    try:
        return model.model_validate(data, context=context or None)
    except ValidationError as exc:
        raise validation_error(exc, hints) from None


def decision(result: dict[str, Any]) -> dict[str, Any]:
    """A route result with the chosen LLM's score."""
    return {**result, "score": float(result["scores"][result["model_name"]])}


class Service:
    """The router served, on its own thread, and where its LLMs are served (``upstreams``)."""

    def __init__(
        self,
        router,
        thread: RouterThread,
        upstreams: dict[str, Upstream] | None,
        policy: str,
        limits: Limits | None = None,
        store: StateStore | None = None,
    ):
        self.router, self.thread, self.upstreams, self.policy = router, thread, upstreams, policy
        self.limits = limits or Limits()
        self.store = store  # None: what the router learns is not recorded (its opener closes it)
        self.started = time.time()
        self.users_at_start = len(getattr(router, "users", ()))
        self.updates = 0
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        """The client that calls the upstreams (one, made at the first call)."""
        if self._client is None:
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
            self._client = httpx.AsyncClient(limits=limits)
        return self._client

    async def route(self, request: RouteRequest) -> dict[str, Any]:
        """The decision of one validated request (the router's error as an :class:`APIError`)."""
        try:
            return decision(await self.thread.route(request.router_request()))
        except Exception as exc:
            raise router_error(exc, request.user_field) from None

    async def call(self, fn, *args: Any, user_field: str = "user") -> Any:
        """``fn(*args)`` (a router method) on the router's thread; its ``KeyError`` or
        ``ValueError`` as an :class:`APIError` (404 for an unknown user)."""
        try:
            return await self.thread.call(fn, *args)
        except (KeyError, ValueError) as exc:
            raise router_error(exc, user_field) from None
        finally:
            self.updates += 1
            if self.updates % TRIM_EVERY == 0:  # what the old states freed (trim_heap)
                await self.thread.call(trim_heap)

    def check_new_user(self, user: int | str, field: str) -> None:
        """422 when ``user`` is new and ``max_new_users`` users were added since the start."""
        users = getattr(self.router, "users", ())
        added, most = len(users) - self.users_at_start, self.limits.max_new_users
        known = getattr(getattr(self.router, "state", None), "user_index", {})
        if added >= most and user_key(user) not in known:
            msg = f"field {field!r}: {added} users were added since the start; at most max_new_users = {most}"
            raise APIError(422, msg, field, "too_many_users")

    async def learn(self, event: Event, fn, *args: Any, user_field: str = "user") -> Any:
        """``fn(*args)`` (an adaptation method) recorded as ``event`` first: on the router's
        thread, the event is appended to the store (durably) and only then applied, so the
        store's order is the order applied. A failed append is a 503 and nothing is applied;
        an event the router refuses is discarded from the store again."""
        if self.store is None:
            return await self.call(fn, *args, user_field=user_field)
        store = self.store

        def logged() -> Any:
            seq = store.append(event)
            try:
                return fn(*args)
            except BaseException:
                store.discard(seq)
                raise

        try:
            return await self.call(logged, user_field=user_field)
        except StoreError as exc:
            raise APIError(
                503, f"the state store failed; nothing was applied: {exc}", None, "state_unavailable"
            ) from None

    def user_info(self, user_id: str) -> dict[str, Any]:
        """What the router holds for a user (``GET /v1/users/{id}``); 404 when it has none."""
        from proute.serving.user_info import user_info

        return user_info(self.router, self.store, user_id)

    def needs(self, name: str):
        """``router.<name>``, or 501 when this router version has none."""
        fn = getattr(self.router, name, None)
        if not callable(fn):
            raise APIError(
                501, f"router.{name} is not available in this router version", None, "not_implemented"
            )
        return fn

    async def start(self, warmup: bool) -> None:
        if warmup:
            await self.thread.warm_up()

    async def close(self) -> None:
        await self.thread.close()
        if self._client is not None:
            await self._client.aclose()
