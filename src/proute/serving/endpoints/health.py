"""``GET /health`` (the router, the upstreams, the batching counters) and ``GET /v1/models``."""

from __future__ import annotations

import time

from fastapi import APIRouter

from proute.serving.endpoints import ServiceDep
from proute.serving.schemas import Health, ModelList

FEATURES = ("feedback", "add_user", "add_llm")
"""The router methods ``/health`` reports as available or not."""

router = APIRouter()


@router.get("/health", response_model=Health)
async def health(service: ServiceDep):
    r, upstreams = service.router, service.upstreams
    return {
        "status": "ok",
        "uptime_s": round(time.time() - service.started, 3),
        "llms": list(r.llms),
        "users": len(r.users),
        "unknown_user": service.policy,
        "features": {n: callable(getattr(r, n, None)) for n in FEATURES},
        "upstreams": None if upstreams is None else {k: u.describe() for k, u in upstreams.items()},
        "batching": service.thread.batcher.stats(),
    }


@router.get("/v1/models", response_model=ModelList)
async def models(service: ServiceDep):
    card = {
        "id": "proute",
        "object": "model",
        "created": int(service.started),
        "owned_by": "proute",
        "llms": list(service.router.llms),
    }
    return {"object": "list", "data": [card]}
