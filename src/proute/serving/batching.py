"""The router's one thread and the micro-batching queue in front of it.

Route requests are queued; one background task takes what has arrived (waiting at most
``max_wait_ms`` after the first, up to ``max_batch``) and routes it in one
``route_batch`` call — one text encoding and one scoring pass — on the router's own
thread, so routing never blocks the event loop. Each request is checked on its own first
(``route_batch(..., errors="return")``, or ``router.request_error`` first for a router
without it: is the user known, the task): a bad one gets its own error and the rest of its
batch is routed. All router calls (routing, feedback, new users) run on that
one thread (:class:`RouterThread`), so state that feedback and new users change is never
read half-written.
"""

from __future__ import annotations

import asyncio
import inspect
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable


def set_threads(threads: int | None) -> None:
    """torch's intra-op threads (``None``: leave torch's own choice)."""
    if threads is not None:
        import torch  # heavy: only when a thread count is asked for

        torch.set_num_threads(threads)


class MicroBatcher:
    """Collects route requests for at most ``max_wait_ms`` (up to ``max_batch``) and
    routes each collection with one ``router.route_batch`` call on ``executor``."""

    def __init__(self, router, executor: ThreadPoolExecutor, max_batch: int = 64, max_wait_ms: float = 2.0):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch={max_batch}, max_wait_ms={max_wait_ms}: expected >= 1 and >= 0")
        self.router, self.executor = router, executor
        self.max_batch, self.max_wait = int(max_batch), max_wait_ms / 1000.0
        self.batches = self.requests = self.largest = 0
        self._queue: asyncio.Queue = asyncio.Queue()
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
        if returns_errors(self.router.route_batch):
            try:
                results = [_item(d) for d in self.router.route_batch(requests, errors="return")]
            except Exception:  # something request_error did not foresee: one by one
                results = [self._one(r) for r in requests]
            self._count(sum(1 for r in results if not isinstance(r, BaseException)))
            return results
        return self._route_checked(requests)

    def _count(self, n: int) -> None:
        if n:
            self.batches += 1
            self.requests += n
            self.largest = max(self.largest, n)

    def _one(self, request: dict) -> Any:
        try:
            return self.router.route_batch([request])[0]
        except Exception as exc:
            return exc

    def _route_checked(self, requests: list[dict]) -> list:
        """:meth:`_route` for a router whose ``route_batch`` raises for a bad request: each
        is checked first (``request_error``), the good ones routed together."""
        router = self.router
        results: list = [router.request_error(r) for r in requests]
        ok = [i for i, e in enumerate(results) if e is None]
        if not ok:
            return results
        self._count(len(ok))
        try:
            for i, decision in zip(ok, router.route_batch([requests[i] for i in ok]), strict=True):
                results[i] = decision
        except Exception:  # something request_error did not foresee: route one by one
            for i in ok:
                results[i] = self._one(requests[i])
        return results


def returns_errors(route_batch: Callable) -> bool:
    """Whether ``route_batch`` takes ``errors="return"`` (per-request errors in place)."""
    try:
        return "errors" in inspect.signature(route_batch).parameters
    except (TypeError, ValueError):
        return False


def _item(d: dict[str, Any]) -> Any:
    """A decision, or the exception of an item of ``route_batch(..., errors="return")``:
    ``KeyError`` for an unknown user or task, ``ValueError`` for a malformed request (as
    ``request_error`` gives them, so the server answers 404 / 422 alike)."""
    if "error" not in d:
        return d
    return (KeyError if d.get("code") in ("unknown_user", "unknown_task") else ValueError)(d["error"])


class RouterThread:
    """The one thread every router call runs on, and the micro-batcher routing on it.

    ``threads``: torch's intra-op threads there (and in this process), ``None`` for torch's
    own choice."""

    def __init__(self, router, max_batch: int = 64, max_wait_ms: float = 2.0, threads: int | None = None):
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads={threads}; expected >= 1")
            set_threads(threads)
        self.router = router
        self.executor = ThreadPoolExecutor(1, "proute-router", initializer=set_threads, initargs=(threads,))
        self.batcher = MicroBatcher(router, self.executor, max_batch, max_wait_ms)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the router's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def route(self, request: dict[str, Any]) -> dict[str, Any]:
        """The decision of one router request, micro-batched with the others in flight."""
        return await self.batcher.route(request)

    async def warm_up(self) -> None:
        """Load the text encoder now, not on the first request."""
        await self.call(self.router.encode, ["warm-up"])

    async def close(self) -> None:
        await self.batcher.stop()
        self.executor.shutdown(wait=False)
