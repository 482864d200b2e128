"""``POST /v1/feedback`` (``router.feedback(user, query, llm, outcome)``) and ``POST
/v1/users`` (``router.add_user(user, interactions)``); 501 when the loaded router version
has neither; 403 for a user the API key may not update (:func:`proute.serving.auth.authorize`).
Each is recorded in the state store before it is applied and acknowledged
(:meth:`~proute.serving.service.Service.learn`: 503 when the store fails). ``GET
/v1/users/{id}``: what the router holds for the user."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from proute.serving.auth import authorize
from proute.serving.endpoints import ServiceDep
from proute.serving.errors import APIError
from proute.serving.limits import read_json
from proute.serving.schemas import AddUserRequest, AddUserResponse, FeedbackRequest, FeedbackResponse
from proute.serving.service import validated
from proute.store import make_event

router = APIRouter()


@router.post("/v1/feedback", response_model=FeedbackResponse, response_model_exclude_unset=True)
async def feedback(request: Request, service: ServiceDep):
    raw = await read_json(request, service.limits)
    fn = service.needs("feedback")
    body = validated(FeedbackRequest, raw, llms=list(service.router.llms), limits=service.limits)
    user, llm = body.the_user, body.the_llm
    authorize(request, "user", user, body.user_field)
    if service.policy != "error":  # an unknown user is added with its feedback
        service.check_new_user(user, body.user_field)
    event = make_event(
        "feedback", user_id=user, query=body.query, llm=llm, outcome=body.outcome, unknown_user=service.policy
    )
    result = await service.learn(event, fn, user, body.query, llm, body.outcome, user_field=body.user_field)
    out: dict[str, Any] = {"status": "ok", "user_id": user, "llm": llm}
    if isinstance(result, dict):
        out["result"] = result
    return out


@router.post("/v1/users", response_model=AddUserResponse, response_model_exclude_unset=True)
async def add_user(request: Request, service: ServiceDep):
    raw = await read_json(request, service.limits)
    fn = service.needs("add_user")
    body = validated(AddUserRequest, raw, limits=service.limits)
    authorize(request, "user", body.the_user, body.user_field)
    service.check_new_user(body.the_user, body.user_field)
    try:
        event = make_event("add_user", user_id=body.the_user, interactions=body.interactions)
        result = await service.learn(event, fn, body.the_user, body.interactions, user_field=body.user_field)
    except APIError as err:
        if err.status == 404:  # a user the router cannot place is a bad value here
            err.status = 422
        raise
    out: dict[str, Any] = {"status": "ok", "user_id": body.the_user, "interactions": len(body.interactions)}
    if isinstance(result, dict):
        out["result"] = result
    return out


@router.get("/v1/users/{user_id}")
async def user_info(user_id: str, request: Request, service: ServiceDep):
    authorize(request, "user", user_id)  # what was learned of a user: its keys, or admin
    return service.user_info(user_id)
