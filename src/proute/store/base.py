"""The state store's interface: an append-only log of what a router learned after export,
and snapshots of the router it made.

An :class:`Event` is one adaptation call as the router received it, already validated:
``kind`` is ``add_user`` (``user_id``, ``interactions``), ``feedback`` (``user_id``,
``query``, ``llm``, ``outcome``, ``unknown_user``: the policy it was applied under) or
``add_llm`` (``name``, ``description``, ``input_price``, ``output_price``, ``family``,
``outcomes``); ``args`` is that call's arguments as JSON. ``seq`` grows with every
append and is never reused (also after :meth:`StateStore.discard` or compaction); ``ts``
is the append's time (Unix seconds).

A :class:`StateStore` belongs to one exported router (:func:`router_id`: the sha256 of
its ``router.json``) and refuses another. :mod:`proute.store.sqlite` implements it;
another backend (PostgreSQL through SQLAlchemy or psycopg) implements the same methods.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

#: The adaptation calls a store records, and the arguments each carries.
EVENT_KINDS: dict[str, tuple[str, ...]] = {
    "add_user": ("user_id", "interactions"),
    "feedback": ("user_id", "query", "llm", "outcome", "unknown_user"),
    "add_llm": ("name", "description", "input_price", "output_price", "family", "outcomes"),
}


class StoreError(RuntimeError):
    """The state store cannot be opened, read or written; the message names it."""


@dataclass(frozen=True)
class Event:
    """One recorded adaptation call (see the module docstring)."""

    kind: str
    args: dict[str, Any]
    seq: int = 0
    ts: float = 0.0
    user: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "kind": self.kind, "args": self.args}

    @classmethod
    def from_json(cls, obj: Any, where: str = "event") -> "Event":
        """An event from its JSON object; :class:`StoreError` naming ``where`` otherwise."""
        if (
            not isinstance(obj, dict)
            or obj.get("kind") not in EVENT_KINDS
            or not isinstance(obj.get("args"), dict)
        ):
            raise StoreError(
                f"{where}: expected an object {{'kind': one of {list(EVENT_KINDS)}, 'args': {{...}}}}, "
                f"got {str(obj)[:200]}"
            )
        missing = [a for a in EVENT_KINDS[obj["kind"]] if a not in obj["args"]]
        if missing:
            raise StoreError(f"{where}: a {obj['kind']!r} event lacks the arguments {missing}")
        return cls(obj["kind"], obj["args"], int(obj.get("seq") or 0), float(obj.get("ts") or 0.0))


def event_body(event: Event) -> str:
    """The event's arguments as canonical JSON text (what a store writes)."""
    try:
        return json.dumps(event.args, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"a {event.kind!r} event is not JSON ({exc})") from None


def router_id(router_path: str | os.PathLike) -> str:
    """The identity of an exported router: the sha256 of its ``router.json`` (which holds
    the hashes of its weights and context)."""
    path = Path(router_path) / "router.json"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise StoreError(f"{path}: cannot be read to identify the router ({exc.strerror})") from None


class StateStore(ABC):
    """What the server learns after export, durably (see the module docstring)."""

    #: Where the store is (a URL), for messages.
    url: str = ""

    @abstractmethod
    def append(self, event: Event) -> int:
        """Record ``event`` durably (on disk before it returns); its new ``seq``."""

    @abstractmethod
    def discard(self, seq: int) -> None:
        """Forget the event ``seq``: the router refused it, so it was never applied."""

    @abstractmethod
    def events_after(self, seq: int = 0) -> Iterator[Event]:
        """The events with a larger ``seq``, in order."""

    @abstractmethod
    def write_snapshot(self, seq: int, blob: bytes, drop_events: bool = False) -> None:
        """Record ``blob``, the router after the events up to ``seq``; ``drop_events``:
        delete those events in the same transaction (compaction)."""

    @abstractmethod
    def latest_snapshot(self) -> tuple[int, bytes] | None:
        """``(seq, blob)`` of the newest snapshot, or None."""

    @abstractmethod
    def user_summary(self, user: str) -> tuple[int, float | None]:
        """``(events, last event's ts)`` of the user key ``user``: every event recorded for
        it (those compacted into a snapshot too)."""

    @abstractmethod
    def get_meta(self, key: str) -> str | None:
        """A recorded setting (``router_id``, ``router_path``), or None."""

    @abstractmethod
    def set_meta(self, values: dict[str, str]) -> None:
        """Record settings (one transaction)."""

    @abstractmethod
    def last_seq(self) -> int:
        """The largest ``seq`` ever given (0 for none)."""

    @abstractmethod
    def close(self) -> None:
        """Release the store (an acknowledged append is already durable)."""

    def __enter__(self) -> "StateStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_event(kind: str, **args: Any) -> Event:
    """An event of ``kind`` with exactly the arguments :data:`EVENT_KINDS` names."""
    if kind not in EVENT_KINDS or set(args) != set(EVENT_KINDS[kind]):
        raise TypeError(f"a {kind!r} event takes {EVENT_KINDS.get(kind)}; got {sorted(args)}")
    return Event(kind, args)
