"""The server's errors: OpenAI-style ``{"error": {"message", "type", "param", "code"}}``.

:class:`APIError` is an error answered as such. Validation errors of the request models
(:mod:`proute.serving.schemas`) become one with :func:`validation_error`: 400 for a body
that is not a JSON object or lacks a required field, 422 for a field with a bad value, both
naming the field in ``param``. The models' own checks raise :func:`invalid` (a pydantic
error that carries its status, code, message and field). Errors of the router become one
with :func:`router_error`: 404 for an unknown user, 422 for a bad value.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

TYPES = {
    400: "invalid_request_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    501: "not_implemented_error",
    502: "upstream_error",
    503: "service_unavailable_error",
}


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
        self.type = type_ or TYPES.get(status, "server_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def within(self, where: str) -> APIError:
        """This error of the part ``where`` of a request (``requests[3]``)."""
        param = f"{where}.{self.param}" if self.param else where
        return APIError(self.status, f"{where}: {self.message}", param, self.code, self.type)


def invalid(message: str, param: str | None = None, code: str = "invalid_value", status: int = 422):
    """The error a request model's check raises: answered as ``status`` with ``message``,
    naming ``param`` (default: where pydantic found it)."""
    ctx = {"message": message, "param": param, "code": code, "status": status}
    return PydanticCustomError("proute", "{message}", ctx)


def _param(loc: tuple) -> str | None:
    """``("messages", 0, "content")`` -> ``"messages[0].content"``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def validation_error(exc: ValidationError, hints: dict[str, str] | None = None) -> APIError:
    """The error answered for the first problem pydantic found in a request; ``hints``:
    what to add to the message of a missing field."""
    first = exc.errors(include_url=False)[0]
    ctx, loc = first.get("ctx") or {}, tuple(first["loc"])
    if first["type"] == "proute":
        return APIError(ctx["status"], ctx["message"], ctx["param"] or _param(loc), ctx["code"])
    param = _param(loc)
    if first["type"] == "missing":
        hint = (hints or {}).get(str(loc[-1]), "")
        return APIError(400, f"missing field {param!r}{hint}", param, "missing_field")
    if param is None:  # the whole body (or batch item) is not an object
        got = type(first["input"]).__name__
        return APIError(400, f"expected a JSON object, got {got}: {first['input']!r}", None, "invalid_value")
    return APIError(422, f"field {param!r}: {first['msg']}, got {first['input']!r}", param, "invalid_value")


_FIELD = re.compile(r"field '([A-Za-z_][A-Za-z0-9_.\[\]]*)'")


def router_error(exc: BaseException, user_field: str = "user") -> APIError:
    """The error answered for an exception the router raised or ``request_error`` returned:
    ``user_field`` is the name the client gave the user id."""
    if isinstance(exc, APIError):
        return exc
    message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    if isinstance(exc, KeyError):
        if "unknown user" in message:
            hint = " (proute serve --unknown-user average routes unknown users as the average user)"
            return APIError(404, message + hint, user_field, "user_not_found")
        return APIError(422, message, "task" if "unknown task" in message else None, "invalid_value")
    if isinstance(exc, ValueError):
        m = _FIELD.search(message)
        param = m.group(1) if m else None
        if param == "user_id":
            param = user_field
        return APIError(422, message, param, "invalid_value")
    return APIError(500, f"internal error: {type(exc).__name__}: {message}", None, "internal_error")
