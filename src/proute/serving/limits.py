"""What ``proute serve`` accepts: the size of a request, of each of its parts, and its numbers.

:class:`Limits` holds every bound (``create_app(limits=...)``; ``proute serve
--max-body-bytes/--max-batch-items``). A body over ``max_body_bytes`` is a 413 and is never
read whole into memory (its ``Content-Length`` is checked first, then the streamed read is
capped); anything else over a limit is a 422. Each error is OpenAI-style
(:mod:`proute.serving.errors`), its message naming the limit and the field (``param``).

:func:`read_json` reads every body: its size, its nesting depth (``max_json_depth``) and
its numbers (a ``NaN``, ``Infinity`` or ``1e400`` anywhere, or an integer beyond 64 bits, is a
422 naming its path). The request models (:mod:`proute.serving.schemas`) check the rest
with the limits in their validation context (``{"limits": Limits}``): user ids, query
lengths, batch and interaction counts, outcomes and embeddings (finite, ``|x| <=
max_magnitude``), and :meth:`Limits.check_chat` what a chat completion would forward to an
upstream under the operator's key.

>>> Limits().max_body_bytes, Limits(max_batch_items=8).max_batch_items
(1048576, 8)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from typing import Any

from proute.data.ids import MAX_USER_ID_LENGTH
from proute.router.interactions import MAX_MAGNITUDE
from proute.serving.errors import APIError, invalid

_INT64 = 2**63
#: Router updates between two :func:`trim_heap` calls of the server.
TRIM_EVERY = 16
#: The chat fields that make an upstream call tools (refused unless ``allow_tools``).
TOOL_FIELDS = ("tools", "functions", "tool_choice", "function_call")


@dataclass(frozen=True)
class Limits:
    """The bounds of one server (see the module docstring); each must be positive."""

    max_body_bytes: int = 1 << 20
    max_json_depth: int = 32
    max_batch_items: int = 256
    max_query_chars: int = 32 * 1024
    max_user_id_chars: int = MAX_USER_ID_LENGTH
    max_interactions: int = 200
    max_new_users: int = 10_000
    max_tokens: int = 4096
    allow_tools: bool = False
    max_magnitude: float = MAX_MAGNITUDE

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "allow_tools" and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"Limits.{f.name} must be a positive number, got {value!r}")
        if self.max_user_id_chars > MAX_USER_ID_LENGTH:
            raise ValueError(
                f"Limits.max_user_id_chars={self.max_user_id_chars}: a user id has at most "
                f"{MAX_USER_ID_LENGTH} characters (proute.data.ids)"
            )
        if self.max_magnitude > MAX_MAGNITUDE:
            raise ValueError(f"Limits.max_magnitude={self.max_magnitude:g}: at most {MAX_MAGNITUDE:g}")

    # ------------------------------------------------------------ field checks (pydantic)
    def check_text(self, text: str, field: str) -> str:
        if len(text) > self.max_query_chars:
            most = self.max_query_chars
            msg = f"field {field!r} has {len(text)} characters; at most max_query_chars = {most}"
            raise invalid(msg, field, "too_long")
        return text

    def check_user_id(self, key: str, field: str) -> None:
        if len(key) > self.max_user_id_chars:
            most = self.max_user_id_chars
            msg = f"field {field!r} has {len(key)} characters; at most max_user_id_chars = {most}"
            raise invalid(msg, field, "too_long")

    def check_count(self, n: int, field: str, limit: str) -> None:
        """``n`` items in ``field``, at most the limit named ``limit``."""
        most = getattr(self, limit)
        if n > most:
            raise invalid(f"field {field!r} has {n} items; at most {limit} = {most}", field, "too_many")

    def check_number(self, value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise invalid(f"field {field!r} must be a number, got {value!r}", field)
        x = float(value) if abs(value) < _INT64 else math.inf
        if not (math.isfinite(x) and abs(x) <= self.max_magnitude):
            bound = f"|x| <= max_magnitude = {self.max_magnitude:g}"
            msg = f"field {field!r} must be a finite number with {bound}, got {value!r}"
            raise invalid(msg, field, "out_of_range")
        return x

    def check_interaction(self, it: dict, where: str) -> None:
        """The numbers, embedding and query text of one interaction at ``where``."""
        for name in ("reward", "performance", "cost"):
            if it.get(name) is not None:
                self.check_number(it[name], f"{where}.{name}")
        emb = it.get("query_emb")
        if emb is not None:
            if not isinstance(emb, list):
                raise invalid(f"field '{where}.query_emb' must be a list of numbers", f"{where}.query_emb")
            for j, x in enumerate(emb):
                self.check_number(x, f"{where}.query_emb[{j}]")
        if isinstance(it.get("query"), str):
            self.check_text(it["query"], f"{where}.query")

    # ------------------------------------------------------------ chat (APIError)
    def check_chat(self, body: dict[str, Any]) -> None:
        """What a chat completion forwards under the operator's key: one choice (``n``),
        at most ``max_tokens`` tokens, no tools unless ``allow_tools``."""
        n = body.get("n")
        if n is not None and (isinstance(n, bool) or n != 1):
            msg = f"field 'n' is {n!r}; this server answers one choice (n = 1)"
            raise APIError(422, msg, "n", "invalid_value")
        for field in ("max_tokens", "max_completion_tokens"):
            v = body.get(field)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= self.max_tokens:
                most = self.max_tokens
                msg = f"field {field!r} is {v!r}; expected an integer from 1 to max_tokens = {most}"
                raise APIError(422, msg, field, "out_of_range")
        if not self.allow_tools:
            for field in TOOL_FIELDS:
                if body.get(field) is not None:
                    msg = f"field {field!r}: tool calls are not allowed on this server (allow_tools = false)"
                    raise APIError(422, msg, field, "tools_not_allowed")


# ---------------------------------------------------------------------------- the body
async def read_body(request, limits: Limits) -> bytes:
    """The request's body, at most ``max_body_bytes`` of it read (413 beyond)."""
    most = limits.max_body_bytes
    too_large = APIError(
        413, f"the request body is larger than max_body_bytes = {most} bytes", None, "body_too_large"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > most:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > most:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _where(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the body"


def check_json(value: Any, limits: Limits) -> None:
    """422 naming the first container nested deeper than ``max_json_depth``, or the first
    non-finite number or integer beyond 64 bits, anywhere in ``value``."""
    stack: list[tuple[Any, tuple]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, x in items:
            if isinstance(x, (dict, list)):
                if len(path) + 1 >= limits.max_json_depth:
                    where = _where((*path, key))
                    msg = f"{where!r} is nested deeper than max_json_depth = {limits.max_json_depth}"
                    raise APIError(422, msg, where, "too_deep")
                stack.append((x, (*path, key)))
            elif (isinstance(x, float) and not math.isfinite(x)) or (
                isinstance(x, int) and not isinstance(x, bool) and abs(x) >= _INT64
            ):
                where = _where((*path, key))
                msg = f"field {where!r} must be a finite number (an integer within 64 bits), got {x!r}"
                raise APIError(422, msg, where, "out_of_range")


async def read_json(request, limits: Limits) -> dict[str, Any]:
    """The request body as a JSON object within ``limits`` (400 when it is not one)."""
    raw = await read_body(request, limits)
    try:
        body = json.loads(raw)
    except RecursionError:
        msg = f"the request body is nested deeper than max_json_depth = {limits.max_json_depth}"
        raise APIError(422, msg, None, "too_deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON ({exc})", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(
            400, f"the request body must be a JSON object, got {type(body).__name__}", None, "invalid_json"
        )
    check_json(body, limits)
    return body


# ---------------------------------------------------------------------------- memory
@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). Each router update frees its old context tensors, a little smaller than the
    new ones, so glibc's heap grows with the square of the users added (200 MiB for 1,000
    new users of the tests' tiny router, 16 MiB when trimmed every 50 updates); the server
    trims every :data:`TRIM_EVERY` updates."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
