"""``POST /v1/chat/completions``: route the last user message and forward the request.

``model: "proute"`` and the standard ``user`` field (the user id). The request goes to the
chosen LLM's upstream (:mod:`proute.serving.upstreams`) as the client sent it, with the
upstream's model name and without proute's ``task``; the answer is the upstream's JSON with
the decision added as ``proute`` and the headers ``x-proute-model``, ``x-proute-user``,
``x-proute-score``, ``x-proute-task`` and ``x-proute-routed-as`` (``average`` when an
unknown user was routed as the average user under ``--unknown-user average``, else
``user``). ``stream: true`` passes the upstream's server-sent events through (the
decision in the headers). An upstream that fails, answers an error status or times out is
a 502 naming it.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from proute.serving.auth import authorize
from proute.serving.endpoints import ServiceDep
from proute.serving.errors import APIError
from proute.serving.limits import read_json
from proute.serving.schemas import CHAT_HINTS, ChatCompletionRequest, ChatCompletionResponse, RouteRequest
from proute.serving.service import Service, validated
from proute.serving.upstreams import (
    Upstream,
    UpstreamError,
    chat_url,
    parse_response,
    request_headers,
    upstream_body,
)

router = APIRouter()


def _header(value: Any) -> str:
    text = str(value)
    return text if text.isascii() and text.isprintable() else urllib.parse.quote(text, safe="")


def decision_headers(d: dict[str, Any]) -> dict[str, str]:
    return {
        "x-proute-model": _header(d["model_name"]),
        "x-proute-user": _header(d["user_id"]),
        "x-proute-score": f"{d['score']:.6g}",
        "x-proute-task": _header(d.get("task")),
        "x-proute-routed-as": _header(d.get("routed_as", "user")),
    }


def upstream_failure(upstream: Upstream, exc: BaseException) -> APIError:
    """The 502 of a failed call to ``upstream`` (``httpx`` error or :class:`UpstreamError`)."""
    if isinstance(exc, UpstreamError):
        return APIError(502, str(exc), None, "upstream_error")
    where = f"upstream {upstream.llm!r} ({upstream.base_url})"
    if isinstance(exc, httpx.TimeoutException):
        return APIError(
            502, f"{where}: no answer within its timeout of {upstream.timeout:g} s", None, "upstream_timeout"
        )
    return APIError(502, f"{where}: request failed ({type(exc).__name__}: {exc})", None, "upstream_error")


async def _decide(service: Service, body: ChatCompletionRequest) -> tuple[dict[str, Any], Upstream]:
    """The decision for the chat's last user message and the upstream of the chosen LLM."""
    if service.upstreams is None:
        raise APIError(
            503,
            "no upstreams configured: start proute serve with --upstreams FILE.yaml "
            "(POST /v1/route routes without one)",
            None,
            "no_upstreams",
        )
    request = validated(
        RouteRequest, {"query": body.query, "user": body.user, "task": body.task}, limits=service.limits
    )
    d = await service.route(request)
    upstream = service.upstreams.get(d["model_name"])
    if upstream is None:
        chose = f"the router chose {d['model_name']!r}, which has no upstream"
        raise APIError(502, chose, None, "no_upstream")
    d["upstream"] = {"llm": upstream.llm, "model": upstream.model, "base_url": upstream.base_url}
    return d, upstream


@router.post("/v1/chat/completions", response_model=ChatCompletionResponse)
async def chat_completions(request: Request, service: ServiceDep):
    raw = await read_json(request, service.limits)
    body = validated(ChatCompletionRequest, raw, CHAT_HINTS, limits=service.limits)
    authorize(request, "route", body.user, "user")
    service.limits.check_chat(raw)
    d, upstream = await _decide(service, body)
    headers = decision_headers(d)
    client = service.client()
    req = client.build_request(
        "POST",
        chat_url(upstream),
        json=upstream_body(upstream, raw),  # as the client sent it
        headers=request_headers(upstream),
        timeout=upstream.timeout,
    )
    try:
        resp = await client.send(req, stream=True)
    except httpx.HTTPError as exc:
        raise upstream_failure(upstream, exc) from None
    if not body.stream or not 200 <= resp.status_code < 300:
        try:
            data = parse_response(upstream, resp.status_code, await resp.aread())
        except (httpx.HTTPError, UpstreamError) as exc:
            raise upstream_failure(upstream, exc) from None
        finally:
            await resp.aclose()
        data["proute"] = d
        return JSONResponse(data, headers=headers)
    media = resp.headers.get("content-type", "text/event-stream")
    return StreamingResponse(
        _relay(resp, upstream), media_type=media, headers={**headers, "cache-control": "no-cache"}
    )


async def _relay(resp: httpx.Response, upstream: Upstream):
    """The upstream's events; a stream broken midway ends with an error event (the status
    is already sent)."""
    try:
        async for chunk in resp.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        what = (
            "no data within its timeout"
            if isinstance(exc, httpx.TimeoutException)
            else f"{type(exc).__name__}: {exc}"
        )
        where = f"upstream {upstream.llm!r} ({upstream.base_url})"
        err = APIError(502, f"{where}: stream broken ({what})", None, "upstream_error")
        yield f"data: {json.dumps(err.body())}\n\n".encode()
    finally:
        await resp.aclose()
