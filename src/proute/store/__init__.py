"""The state store: what a served router learns after export (users added, feedback, LLMs
added) survives restarts and crashes.

The server records each adaptation request as an :class:`Event` (:meth:`StateStore.append`,
durable before the request is acknowledged), then applies it; at start it loads the
exported router, the latest snapshot and replays the events after it
(:func:`restore`). :mod:`.base` is the interface, :mod:`.sqlite` the SQLite backend,
:mod:`.urls` the ``--state`` URLs and the default file, :mod:`.replay` snapshots and
replay, :mod:`.tools` ``proute state export|import|compact``.
"""

from proute.store.base import EVENT_KINDS, Event, StateStore, StoreError, make_event, router_id
from proute.store.replay import Restored, apply, restore, router_from_snapshot, snapshot_blob
from proute.store.sqlite import SQLiteStore
from proute.store.urls import MEMORY_URL, default_state_path, default_state_url, open_store

__all__ = [
    "EVENT_KINDS",
    "MEMORY_URL",
    "Event",
    "Restored",
    "SQLiteStore",
    "StateStore",
    "StoreError",
    "apply",
    "default_state_path",
    "default_state_url",
    "make_event",
    "open_store",
    "restore",
    "router_from_snapshot",
    "router_id",
    "snapshot_blob",
]
