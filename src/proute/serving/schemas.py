"""The request and response bodies of ``proute serve`` (pydantic v2).

Every request is validated here, once, before it reaches the router's thread: the user id
by :func:`proute.serving.user_ids.json_user_id` (so ``3.0`` is user 3 and ``[1]``, ``true``
or ``""`` are refused naming the field), texts, flags and outcomes by their types. A failed
check is a pydantic ``ValidationError`` that :func:`proute.serving.errors.validation_error`
answers OpenAI-style. What needs the router's state (is the user known, the task, the
LLM) is checked where that state lives: the LLM of feedback through the validation context
``{"llms": [...]}``, users and tasks by ``router.request_error`` on the router's thread.

A client may name the user ``user`` (OpenAI's field) or ``user_id`` (the router's), and the
LLM of feedback ``llm`` or ``model``; errors name the field the client used.

>>> RouteRequest.model_validate({"query": "hi", "user": 3.0}).router_request()
{'query': 'hi', 'user_id': 3}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from proute.data.ids import UserIdError
from proute.serving.errors import invalid
from proute.serving.limits import Limits
from proute.serving.upstreams import message_text
from proute.serving.user_ids import json_user_id

DEFAULT_LIMITS = Limits()
CHAT_HINTS = {"model": '; use "proute"', "user": ": the id of the user to route for"}
"""What the message of a missing field of a chat completion adds."""


def limits_of(info: ValidationInfo) -> Limits:
    """The limits in the validation context (``{"limits": Limits}``; default :class:`Limits`)."""
    return (info.context or {}).get("limits") or DEFAULT_LIMITS


def _user_id(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None  # absent: the model says which field is missing
    try:
        user = json_user_id(value, str(info.field_name))
    except UserIdError as exc:
        raise invalid(str(exc)) from None
    limits_of(info).check_user_id(str(user), str(info.field_name))
    return user


def _text(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"field {info.field_name!r} must be non-empty text, got {value!r}")
    return limits_of(info).check_text(value, str(info.field_name))


UserId = Annotated[int | str | None, BeforeValidator(_user_id)]
Text = Annotated[str, BeforeValidator(_text)]


class _WithUser(BaseModel):
    """A request naming its user as ``user`` or ``user_id`` (one of them, not null)."""

    user: UserId = Field(None, description="the user id (OpenAI's field)")
    user_id: UserId = Field(None, description="the user id (the router's name for it)")

    @property
    def user_field(self) -> str:
        """The name the client gave the user id."""
        return "user_id" if "user_id" in self.model_fields_set else "user"

    @property
    def the_user(self) -> int | str:
        value = getattr(self, self.user_field)
        assert value is not None  # _user_given
        return value

    @model_validator(mode="after")
    def _user_given(self):
        if getattr(self, self.user_field) is None:
            raise invalid("missing field 'user' (the user id)", self.user_field, "missing_field", 400)
        return self


class RouteRequest(_WithUser):
    """``POST /v1/route``: one query to route for one user (unknown fields are ignored)."""

    query: Text
    task: StrictStr | None = Field(None, description="the query's task (default: inferred)")
    explore: StrictBool = Field(False, description="draw the LLM from the softmax of the scores")

    def router_request(self) -> dict[str, Any]:
        """The request as ``router.route_batch`` takes it."""
        out: dict[str, Any] = {"query": self.query, "user_id": self.the_user}
        if self.task is not None:
            out["task"] = self.task
        if "explore" in self.model_fields_set:
            out["explore"] = self.explore
        return out


class RouteBatchRequest(BaseModel):
    """``POST /v1/route`` with ``requests``: each item is a :class:`RouteRequest`, checked on
    its own (a bad item gets its own error)."""

    requests: list[Any]

    @field_validator("requests", mode="before")
    @classmethod
    def _sized(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, list) or not value:
            raise invalid("field 'requests' must be a non-empty list of route requests")
        limits_of(info).check_count(len(value), "requests", "max_batch_items")
        return value


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions`` with ``model: "proute"``. OpenAI's other fields are
    accepted and forwarded to the upstream as the client sent them."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description='use "proute"')
    messages: list[Any] = Field(description="the chat; its last user message is routed")
    user: UserId = Field(description="the id of the user to route for")
    stream: StrictBool = False
    task: StrictStr | None = Field(None, description="the query's task (not forwarded)")

    _query: str = PrivateAttr("")

    @field_validator("model", mode="before")
    @classmethod
    def _proute(cls, value: Any) -> Any:
        if value != "proute":
            msg = f"field 'model' is {value!r}; this server answers model \"proute\""
            raise invalid(msg, "model", "model_not_found")
        return value

    @field_validator("messages", mode="before")
    @classmethod
    def _chat(cls, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise invalid("field 'messages' must be a non-empty list of chat messages")
        return value

    @field_validator("stream", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise invalid(f"field 'stream' must be true or false, got {value!r}")
        return value

    @model_validator(mode="after")
    def _routable(self, info: ValidationInfo):
        if self.user is None:
            raise invalid(f"missing field 'user'{CHAT_HINTS['user']}", "user", "missing_field", 400)
        self._query = limits_of(info).check_text(_last_user_text(self.messages), "messages")
        return self

    @property
    def query(self) -> str:
        """The text of the last ``role: user`` message (what is routed)."""
        return self._query


def _last_user_text(messages: list[Any]) -> str:
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") == "user":
            text = message_text(m.get("content"))
            if text is None:
                where = f"messages[{i}].content"
                raise invalid(f"{where} must be a string or a list of text parts", where)
            return text
    raise invalid("field 'messages' has no message with role 'user' to route", "messages")


def _outcome(value: Any, info: ValidationInfo) -> Any:
    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    ok = number(value) or (
        isinstance(value, dict)
        and "performance" in value
        and all(number(v) for v in value.values())
        and set(value) <= {"performance", "cost"}
    )
    if not ok:
        raise invalid(
            f"field 'outcome' must be a reward (number) or {{'performance', 'cost'}}, got {value!r}"
        )
    limits = limits_of(info)
    if isinstance(value, dict):
        for k, v in value.items():
            limits.check_number(v, f"outcome.{k}")
    else:
        limits.check_number(value, "outcome")
    return value


class FeedbackRequest(_WithUser):
    """``POST /v1/feedback``: the outcome of one routed query for one user. Validate it with
    the context ``{"llms": router.llms}``."""

    query: Text
    llm: str | None = Field(None, description="the LLM that answered (or: model)")
    model: str | None = Field(None, description="the LLM that answered (or: llm)")
    outcome: Annotated[int | float | dict[str, int | float], BeforeValidator(_outcome)]

    @property
    def llm_field(self) -> str:
        return "llm" if "llm" in self.model_fields_set else "model"

    @property
    def the_llm(self) -> str:
        return str(getattr(self, self.llm_field))

    @model_validator(mode="after")
    def _known_llm(self, info: ValidationInfo):
        llms = list((info.context or {}).get("llms", ()))
        llm = getattr(self, self.llm_field)
        if llm is None:
            raise invalid(f"missing field {self.llm_field!r}", self.llm_field, "missing_field", 400)
        if llm not in llms:
            raise invalid(
                f"field {self.llm_field!r} is {llm!r}; this router's LLMs are {llms}", self.llm_field
            )
        return self


def _interactions(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise invalid(
            "field 'interactions' must be a list of objects {query, llm, performance[, cost] | reward}"
        )
    limits = limits_of(info)
    limits.check_count(len(value), "interactions", "max_interactions")
    for i, it in enumerate(value):
        limits.check_interaction(it, f"interactions[{i}]")
    return value


class AddUserRequest(_WithUser):
    """``POST /v1/users``: a new user and their first interactions."""

    interactions: Annotated[list[dict[str, Any]], BeforeValidator(_interactions)] = []


# ---------------------------------------------------------------------------- responses
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorBody


class RouteDecision(_Open):
    """One routing decision (the router's fields, e.g. ``greedy_model_name`` when exploring)."""

    model_name: str
    scores: dict[str, float]
    user_id: int | str
    task: str | None
    score: float = Field(description="the chosen LLM's score")
    routed_as: Literal["user", "average"] = Field(
        "user", description="'average': an unknown user routed as the population's average user"
    )


class RouteItemError(ErrorResponse):
    status: int


class RouteResults(BaseModel):
    results: list[RouteDecision | RouteItemError]


class ChatCompletionResponse(_Open):
    """The upstream's chat completion with the decision (and the upstream) as ``proute``."""

    proute: RouteDecision


class FeedbackResponse(BaseModel):
    status: Literal["ok"]
    user_id: int | str
    llm: str
    result: dict[str, Any] | None = None


class AddUserResponse(BaseModel):
    status: Literal["ok"]
    user_id: int | str
    interactions: int
    result: dict[str, Any] | None = None


class BatchingStats(BaseModel):
    max_batch: int
    max_wait_ms: float
    batches: int
    requests: int
    largest_batch: int


class Health(BaseModel):
    status: Literal["ok"]
    uptime_s: float
    llms: list[str]
    users: int
    unknown_user: str
    features: dict[str, bool]
    upstreams: dict[str, dict[str, Any]] | None
    batching: BatchingStats


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    llms: list[str]


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]
