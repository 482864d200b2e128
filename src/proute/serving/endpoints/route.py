"""``POST /v1/route``: route only. ``{"query", "user" | "user_id"[, "task"][, "explore"]}``
answers one decision (``routed_as`` and the header ``x-proute-routed-as``: ``average`` for an
unknown user routed as the average user); ``{"requests": [...]}`` answers ``{"results": [...]}`` in order, a
bad item getting its own ``{"error": {...}, "status"}`` without failing the others."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response

from proute.serving.auth import authorize
from proute.serving.endpoints import ServiceDep
from proute.serving.errors import APIError
from proute.serving.limits import read_json
from proute.serving.schemas import RouteBatchRequest, RouteDecision, RouteRequest, RouteResults
from proute.serving.service import Service, validated

router = APIRouter()


async def _item(request: Request, service: Service, i: int, item: Any) -> dict[str, Any]:
    try:
        one = validated(RouteRequest, item, limits=service.limits)
        authorize(request, "route", one.the_user, one.user_field)
        return await service.route(one)
    except APIError as err:
        err = err.within(f"requests[{i}]")
        return {**err.body(), "status": err.status}


@router.post("/v1/route", response_model=RouteDecision | RouteResults)
async def route(request: Request, response: Response, service: ServiceDep):
    body = await read_json(request, service.limits)
    if "requests" not in body:
        one = validated(RouteRequest, body, limits=service.limits)
        authorize(request, "route", one.the_user, one.user_field)
        d = await service.route(one)
        response.headers["x-proute-routed-as"] = str(d.get("routed_as", "user"))
        return d
    items = validated(RouteBatchRequest, body, limits=service.limits).requests
    return {
        "results": list(await asyncio.gather(*(_item(request, service, i, x) for i, x in enumerate(items))))
    }
