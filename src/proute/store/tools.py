"""``proute state export|import|compact``: the events as JSONL, appended from JSONL, and
compaction (a snapshot of the router after every event, and the events dropped).

Run ``import`` and ``compact`` with the server stopped: the server is the store's one
writer, and applies only the events it recorded itself (a restart replays the rest).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from proute.store.base import Event, StateStore, StoreError
from proute.store.replay import Restored, restore, snapshot_blob
from proute.store.urls import bind, open_store


def recorded_router(store: StateStore, router_path: str | os.PathLike | None) -> Path:
    """The router to replay onto: ``router_path``, else the one the store records."""
    if router_path is not None:
        return Path(router_path)
    recorded = store.get_meta("router_path")
    if recorded is None:
        raise StoreError(f"{store.url}: records no router yet; give it with --router ROUTER")
    return Path(recorded)


def export_events(url: str, out: IO[str]) -> tuple[int, int]:
    """Write the store's events, one JSON object a line; ``(events, snapshot seq)``: the
    events up to a snapshot's ``seq`` were compacted into it and are not written."""
    with open_store(url, create=False) as store:
        snap = store.latest_snapshot()
        after = snap[0] if snap else 0
        n = 0
        for event in store.events_after(after):
            out.write(json.dumps(event.to_json(), sort_keys=True) + "\n")
            n += 1
    return n, after


def read_events(path: Path) -> list[Event]:
    """The events of a JSONL file (as :func:`export_events` writes), all checked first."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: cannot be read ({exc})") from None
    events = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise StoreError(f"{path}:{i}: not JSON ({exc})") from None
        events.append(Event.from_json(obj, f"{path}:{i}"))
    return events


def import_events(url: str, path: Path, router_path: str | os.PathLike | None) -> int:
    """Append the events of ``path`` (new seqs, in the file's order); how many. The store
    gets created for ``router_path`` when it does not exist."""
    events = read_events(path)
    try:
        store = open_store(url, create=router_path is not None)
    except StoreError as exc:
        raise StoreError(f"{exc}; to create a new store, give its router with --router ROUTER") from None
    with store:
        if router_path is None and store.get_meta("router_id") is None:
            raise StoreError(f"{store.url}: a new state store; give its router with --router ROUTER")
        if router_path is not None:
            bind(store, router_path)
        for event in events:
            store.append(Event(event.kind, event.args))
    return len(events)


def compact(url: str, router_path: str | os.PathLike | None = None) -> Restored:
    """Replay the store onto its router, write the result as a snapshot and drop the
    events it holds (one transaction: a failure leaves the store as it was)."""
    from proute.router import load_router

    with open_store(url, create=False) as store:
        path = recorded_router(store, router_path)

        bind(store, path)
        restored = restore(load_router(path), store)
        if restored.last_seq > restored.snapshot_seq:
            store.write_snapshot(restored.last_seq, snapshot_blob(restored.router), drop_events=True)
    return restored
