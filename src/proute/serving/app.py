"""``proute serve``: the router behind an OpenAI-compatible HTTP API (FastAPI + uvicorn).

Endpoints (``create_app``):

``POST /v1/chat/completions``
    ``model: "proute"`` and the standard ``user`` field (the user id). Routes the last user
    message, forwards the request to the chosen LLM's upstream (:mod:`proute.serving.upstreams`)
    with the upstream's model name, and returns the upstream's JSON with the decision added
    as the field ``proute`` and the headers ``x-proute-model``, ``x-proute-user``,
    ``x-proute-score`` and ``x-proute-task``. ``stream: true`` passes the upstream's
    server-sent events through (the decision in the headers). An optional ``task`` field
    gives the query's task; it is not forwarded.
``POST /v1/route``
    Route only: ``{"query", "user" | "user_id"[, "task"]}`` answers one decision;
    ``{"requests": [...]}`` answers ``{"results": [...]}`` in order, a bad item getting
    its own ``{"error": {...}}`` without failing the others.
``POST /v1/feedback``, ``POST /v1/users``
    ``router.feedback(user, query, llm, outcome)`` and ``router.add_user(user,
    interactions)``; 501 when the loaded router version has neither.
``GET /v1/models``, ``GET /health``

Errors are OpenAI-style ``{"error": {"message", "type", "param", "code"}}``: 400 for a
body that is not a JSON object or lacks a required field, 422 for a field with a bad
value (both name it in ``param``), 404 for an unknown user under the ``error`` policy,
502 naming the upstream when it fails, answers an error status or times out.

Micro-batching: route requests are queued; one background task takes what has arrived
(waiting at most ``max_wait_ms`` after the first, up to ``max_batch``) and routes it in one
``route_batch`` call — one text encoding and one scoring pass — on the router's own
thread, so routing never blocks the event loop. Each request is checked on its own first
(``router.request_error``): a bad one gets its own error and the rest of its batch is
routed. All router calls (routing, feedback, new users) run on that one thread, so state
that feedback and new users change is never read half-written.
"""

import asyncio
import json
import re
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from proute.serving.upstreams import (
    Upstream,
    UpstreamError,
    chat_url,
    message_text,
    parse_response,
    request_headers,
    upstream_body,
)

UNKNOWN_USER_POLICIES = ("error", "average")
MAX_BATCH_REQUESTS = 10_000


class APIError(Exception):
    """An error answered as OpenAI-style JSON."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type_: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type_ or {
            400: "invalid_request_error",
            404: "not_found_error",
            422: "invalid_request_error",
            501: "not_implemented_error",
            502: "upstream_error",
            503: "service_unavailable_error",
        }.get(status, "server_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def unknown_user_policy(router, policy: str | None) -> str:
    """Set the router's unknown-user policy; ``None`` picks ``average`` when the router
    supports a policy at all, else ``error`` (the behaviour of routers without one)."""
    supported = hasattr(router, "unknown_user")
    if policy is None:
        policy = "average" if supported else "error"
    if policy not in UNKNOWN_USER_POLICIES:
        raise ValueError(f"unknown_user={policy!r}; expected one of {list(UNKNOWN_USER_POLICIES)}")
    if supported:
        router.unknown_user = policy
    elif policy != "error":
        raise ValueError(
            f"unknown_user={policy!r}: this router version has no unknown-user policy "
            "(it refuses every unknown user); use 'error'"
        )
    return policy


_FIELD = re.compile(r"field '([A-Za-z_]+)'")


def error_of(exc: BaseException, user_field: str = "user") -> APIError:
    """The HTTP error of an exception the router raised or ``request_error`` returned."""
    if isinstance(exc, APIError):
        return exc
    message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    if isinstance(exc, KeyError):
        if "unknown user" in message:
            return APIError(404, message, user_field, "user_not_found")
        return APIError(422, message, "task" if "unknown task" in message else None, "invalid_value")
    if isinstance(exc, ValueError):
        m = _FIELD.search(message)
        param = m.group(1) if m else None
        if param == "user_id":
            param = user_field
        return APIError(422, message, param, "invalid_value")
    return APIError(500, f"internal error: {type(exc).__name__}: {message}", None, "internal_error")


class MicroBatcher:
    """Collects route requests for at most ``max_wait_ms`` (up to ``max_batch``) and
    routes each collection with one ``router.route_batch`` call on ``executor``."""

    def __init__(self, router, executor: ThreadPoolExecutor, max_batch: int = 64, max_wait_ms: float = 2.0):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch={max_batch}, max_wait_ms={max_wait_ms}: expected >= 1 and >= 0")
        self.router, self.executor = router, executor
        self.max_batch, self.max_wait = int(max_batch), max_wait_ms / 1000.0
        self.batches = self.requests = self.largest = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    def stats(self) -> dict[str, Any]:
        return {
            "max_batch": self.max_batch,
            "max_wait_ms": self.max_wait * 1000.0,
            "batches": self.batches,
            "requests": self.requests,
            "largest_batch": self.largest,
        }

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def route(self, request: dict[str, Any]) -> dict[str, Any]:
        """The routing decision of one request (its error raised as the router's)."""
        self._start()
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((request, future))
        return await future

    async def _collect(self) -> list:
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:
                break
        return [(r, f) for r, f in batch if not f.done()]  # a client that left is dropped

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self.executor, self._route, [r for r, _ in batch])
            except Exception as exc:  # never expected: _route returns errors, it does not raise
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _route(self, requests: list[dict]) -> list:
        """On the router's thread: each request's decision or its own exception."""
        router = self.router
        results: list = [router.request_error(r) for r in requests]
        ok = [i for i, e in enumerate(results) if e is None]
        if not ok:
            return results
        self.batches += 1
        self.requests += len(ok)
        self.largest = max(self.largest, len(ok))
        try:
            for i, decision in zip(ok, router.route_batch([requests[i] for i in ok]), strict=True):
                results[i] = decision
        except Exception:  # something request_error did not foresee: route one by one
            for i in ok:
                try:
                    results[i] = router.route_batch([requests[i]])[0]
                except Exception as exc:
                    results[i] = exc
        return results


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON ({exc})", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(
            400, f"the request body must be a JSON object, got {type(body).__name__}", None, "invalid_json"
        )
    return body


def _route_request(item: Any) -> tuple[dict[str, Any], str]:
    """A router request from ``{"query", "user" | "user_id"[, "task"]}`` and the name of
    the user field the client used."""
    if not isinstance(item, dict):
        raise APIError(
            400, f"expected an object with 'query' and 'user', got {item!r}", None, "invalid_value"
        )
    user_field = "user_id" if "user_id" in item else "user"
    if "query" not in item:
        raise APIError(400, "missing field 'query'", "query", "missing_field")
    if item.get(user_field) is None:
        raise APIError(400, "missing field 'user' (the user id)", user_field, "missing_field")
    request = {"query": item["query"], "user_id": item[user_field]}
    if item.get("task") is not None:
        request["task"] = item["task"]
    if "explore" in item:
        request["explore"] = item["explore"]
    return request, user_field


def decision(result: dict[str, Any]) -> dict[str, Any]:
    """A route result with the chosen LLM's score."""
    return {**result, "score": float(result["scores"][result["model_name"]])}


def _header(value: Any) -> str:
    text = str(value)
    return text if text.isascii() and text.isprintable() else urllib.parse.quote(text, safe="")


def decision_headers(d: dict[str, Any]) -> dict[str, str]:
    return {
        "x-proute-model": _header(d["model_name"]),
        "x-proute-user": _header(d["user_id"]),
        "x-proute-score": f"{d['score']:.6g}",
        "x-proute-task": _header(d.get("task")),
    }


def upstream_failure(upstream: Upstream, exc: BaseException) -> APIError:
    """The 502 of a failed call to ``upstream`` (``httpx`` error or :class:`UpstreamError`)."""
    import httpx

    if isinstance(exc, UpstreamError):
        return APIError(502, str(exc), None, "upstream_error")
    where = f"upstream {upstream.llm!r} ({upstream.base_url})"
    if isinstance(exc, httpx.TimeoutException):
        return APIError(
            502, f"{where}: no answer within its timeout of {upstream.timeout:g} s", None, "upstream_timeout"
        )
    return APIError(502, f"{where}: request failed ({type(exc).__name__}: {exc})", None, "upstream_error")


def last_user_message(messages: Any) -> str:
    """The text of the last ``role: user`` message (400/422 naming ``messages``)."""
    if not isinstance(messages, list) or not messages:
        raise APIError(
            422, "field 'messages' must be a non-empty list of chat messages", "messages", "invalid_value"
        )
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") == "user":
            text = message_text(m.get("content"))
            if text is None:
                raise APIError(
                    422,
                    f"messages[{i}].content must be a string or a list of text parts",
                    f"messages[{i}].content",
                    "invalid_value",
                )
            return text
    raise APIError(
        422, "field 'messages' has no message with role 'user' to route", "messages", "invalid_value"
    )


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def create_app(
    router,
    upstreams: dict[str, Upstream] | None = None,
    *,
    unknown_user: str | None = None,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    warmup: bool = True,
    threads: int | None = None,
):
    """The FastAPI app serving ``router`` (a loaded :class:`~proute.router.PersonalizedRouter`).

    ``upstreams``: ``{llm: Upstream}`` (:func:`proute.serving.upstreams.load_upstreams`); without
    it ``/v1/chat/completions`` answers 503 and routing still works. ``unknown_user``:
    ``"error"`` (404) or ``"average"`` (the population's average user; needs a router that
    supports it), default ``average`` when supported. ``threads``: torch's intra-op threads
    for routing (default: torch's own choice, one per core); on a machine shared with other
    jobs, 1 avoids the oversubscription that multiplies latency (see scripts/loadtest.py).
    """
    import contextlib

    import httpx
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    policy = unknown_user_policy(router, unknown_user)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads}; expected >= 1")
        _set_threads(threads)
    executor = ThreadPoolExecutor(1, "proute-router", initializer=_set_threads, initargs=(threads,))
    batcher = MicroBatcher(router, executor, max_batch, max_wait_ms)
    state: dict[str, Any] = {"client": None, "started": time.time()}

    def client() -> httpx.AsyncClient:
        if state["client"] is None:
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
            state["client"] = httpx.AsyncClient(limits=limits)
        return state["client"]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if warmup:  # load the text encoder now, not on the first request
            await asyncio.get_running_loop().run_in_executor(executor, router.encode, ["warm-up"])
        yield
        await batcher.stop()
        if state["client"] is not None:
            await state["client"].aclose()
        executor.shutdown(wait=False)

    app = FastAPI(title="proute", version="1", lifespan=lifespan)
    app.state.router, app.state.batcher, app.state.policy = router, batcher, policy

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def _http_error(request, exc: HTTPException):
        return JSONResponse(
            APIError(exc.status_code, str(exc.detail), None, None).body(), status_code=exc.status_code
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return JSONResponse(APIError(422, first.get("msg", "invalid request"), param).body(), status_code=422)

    @app.exception_handler(Exception)
    async def _internal(request, exc: Exception):
        err = APIError(500, f"internal error: {type(exc).__name__}: {exc}", None, "internal_error")
        return JSONResponse(err.body(), status_code=500)

    async def route_one(item: Any) -> dict[str, Any]:
        request, user_field = _route_request(item)
        try:
            return decision(await batcher.route(request))
        except Exception as exc:
            raise error_of(exc, user_field) from None

    async def on_router_thread(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "uptime_s": round(time.time() - state["started"], 3),
            "llms": list(router.llms),
            "users": len(router.users),
            "unknown_user": policy,
            "features": {n: callable(getattr(router, n, None)) for n in ("feedback", "add_user", "add_llm")},
            "upstreams": None if upstreams is None else {k: u.describe() for k, u in upstreams.items()},
            "batching": batcher.stats(),
        }

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [
                {
                    "id": "proute",
                    "object": "model",
                    "created": int(state["started"]),
                    "owned_by": "proute",
                    "llms": list(router.llms),
                }
            ],
        }

    @app.post("/v1/route")
    async def route(request: Request):
        body = _json_body(await request.body())
        if "requests" not in body:
            return await route_one(body)
        items = body["requests"]
        if not isinstance(items, list) or not items:
            raise APIError(
                422,
                "field 'requests' must be a non-empty list of route requests",
                "requests",
                "invalid_value",
            )
        if len(items) > MAX_BATCH_REQUESTS:
            raise APIError(
                422,
                f"field 'requests' has {len(items)} items; at most {MAX_BATCH_REQUESTS}",
                "requests",
                "too_many",
            )

        async def one(i: int, item: Any) -> dict[str, Any]:
            try:
                return await route_one(item)
            except APIError as err:
                err.message = f"requests[{i}]: {err.message}"
                err.param = f"requests[{i}].{err.param}" if err.param else f"requests[{i}]"
                return {**err.body(), "status": err.status}

        return {"results": list(await asyncio.gather(*(one(i, x) for i, x in enumerate(items))))}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = _json_body(await request.body())
        if "model" not in body:
            raise APIError(400, "missing field 'model'; use \"proute\"", "model", "missing_field")
        if body["model"] != "proute":
            raise APIError(
                422,
                f"field 'model' is {body['model']!r}; this server answers model \"proute\"",
                "model",
                "model_not_found",
            )
        if "messages" not in body:
            raise APIError(400, "missing field 'messages'", "messages", "missing_field")
        if body.get("user") is None:
            raise APIError(
                400, "missing field 'user': the id of the user to route for", "user", "missing_field"
            )
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise APIError(
                422, f"field 'stream' must be true or false, got {stream!r}", "stream", "invalid_value"
            )
        query = last_user_message(body["messages"])
        if upstreams is None:
            raise APIError(
                503,
                "no upstreams configured: start proute serve with --upstreams FILE.yaml "
                "(POST /v1/route routes without one)",
                None,
                "no_upstreams",
            )
        d = await route_one({"query": query, "user": body["user"], "task": body.get("task")})
        upstream = upstreams.get(d["model_name"])
        if upstream is None:
            raise APIError(
                502, f"the router chose {d['model_name']!r}, which has no upstream", None, "no_upstream"
            )
        d["upstream"] = {"llm": upstream.llm, "model": upstream.model, "base_url": upstream.base_url}
        headers = decision_headers(d)
        payload = upstream_body(upstream, body)
        req = client().build_request(
            "POST",
            chat_url(upstream),
            json=payload,
            headers=request_headers(upstream),
            timeout=upstream.timeout,
        )
        try:
            resp = await client().send(req, stream=True)
        except httpx.HTTPError as exc:
            raise upstream_failure(upstream, exc) from None
        if not stream or not 200 <= resp.status_code < 300:
            try:
                data = parse_response(upstream, resp.status_code, await resp.aread())
            except (httpx.HTTPError, UpstreamError) as exc:
                raise upstream_failure(upstream, exc) from None
            finally:
                await resp.aclose()
            data["proute"] = d
            return JSONResponse(data, headers=headers)

        async def relay():
            try:
                async for chunk in resp.aiter_raw():
                    yield chunk
            except httpx.HTTPError as exc:  # the status is sent: end the stream with an error event
                what = (
                    "no data within its timeout"
                    if isinstance(exc, httpx.TimeoutException)
                    else f"{type(exc).__name__}: {exc}"
                )
                err = APIError(
                    502,
                    f"upstream {upstream.llm!r} ({upstream.base_url}): stream broken ({what})",
                    None,
                    "upstream_error",
                )
                yield f"data: {json.dumps(err.body())}\n\n".encode()
            finally:
                await resp.aclose()

        media = resp.headers.get("content-type", "text/event-stream")
        return StreamingResponse(relay(), media_type=media, headers={**headers, "cache-control": "no-cache"})

    def _needs(name: str):
        fn = getattr(router, name, None)
        if not callable(fn):
            raise APIError(
                501, f"router.{name} is not available in this router version", None, "not_implemented"
            )
        return fn

    def _user(body: dict) -> tuple[Any, str]:
        field = "user_id" if "user_id" in body else "user"
        if body.get(field) is None:
            raise APIError(400, "missing field 'user' (the user id)", "user", "missing_field")
        return body[field], field

    @app.post("/v1/feedback")
    async def feedback(request: Request):
        body = _json_body(await request.body())
        fn = _needs("feedback")
        user, field = _user(body)
        llm_field = "llm" if "llm" in body else "model"
        for name in ("query", llm_field, "outcome"):
            if name not in body:
                raise APIError(400, f"missing field {name!r}", name, "missing_field")
        query, llm, outcome = body["query"], body[llm_field], body["outcome"]
        if not isinstance(query, str) or not query.strip():
            raise APIError(
                422, f"field 'query' must be non-empty text, got {query!r}", "query", "invalid_value"
            )
        if llm not in router.llms:
            raise APIError(
                422,
                f"field {llm_field!r} is {llm!r}; this router's LLMs are {list(router.llms)}",
                llm_field,
                "invalid_value",
            )
        number = (int, float)
        ok = (isinstance(outcome, number) and not isinstance(outcome, bool)) or (
            isinstance(outcome, dict)
            and "performance" in outcome
            and all(isinstance(v, number) and not isinstance(v, bool) for v in outcome.values())
            and set(outcome) <= {"performance", "cost"}
        )
        if not ok:
            raise APIError(
                422,
                f"field 'outcome' must be a reward (number) or {{'performance', 'cost'}}, got {outcome!r}",
                "outcome",
                "invalid_value",
            )
        try:
            result = await on_router_thread(fn, user, query, llm, outcome)
        except (KeyError, ValueError) as exc:
            raise error_of(exc, field) from None
        out = {"status": "ok", "user_id": user, "llm": llm}
        if isinstance(result, dict):
            out["result"] = result
        return out

    @app.post("/v1/users")
    async def add_user(request: Request):
        body = _json_body(await request.body())
        fn = _needs("add_user")
        user, field = _user(body)
        interactions = body.get("interactions", [])
        if not isinstance(interactions, list) or not all(isinstance(x, dict) for x in interactions):
            raise APIError(
                422,
                "field 'interactions' must be a list of objects {query, llm, performance[, cost] | reward}",
                "interactions",
                "invalid_value",
            )
        try:
            result = await on_router_thread(fn, user, interactions)
        except (KeyError, ValueError) as exc:
            err = error_of(exc, field)
            err.status = 422 if err.status == 404 else err.status
            raise err from None
        out = {"status": "ok", "user_id": user, "interactions": len(interactions)}
        if isinstance(result, dict):
            out["result"] = result
        return out

    return app


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
) -> None:
    """Load the router (and upstreams) and serve until interrupted."""
    import uvicorn

    from proute.router import PersonalizedRouter
    from proute.serving.upstreams import load_upstreams

    router = PersonalizedRouter.load(router_path)
    upstreams = None if upstreams_path is None else load_upstreams(upstreams_path, router.llms)
    app = create_app(
        router,
        upstreams,
        unknown_user=unknown_user,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        threads=threads,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
