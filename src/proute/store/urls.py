"""Where the state lives: ``--state`` URLs and the default file.

- ``sqlite:///PATH``: the SQLite file PATH (as SQLAlchemy reads it: ``sqlite:///state.sqlite``
  is relative to the working directory, ``sqlite:////var/lib/proute/state.sqlite`` absolute);
- ``memory``: nothing survives the process (only when asked for);
- no ``--state``: :func:`default_state_path`, ``<router dir>.state.sqlite`` beside the router
  directory, never inside it (an exported router stays read-only, its hashes untouched).

The store is bound to its router (:func:`proute.store.base.router_id`) on creation and
refuses any other.
"""

from __future__ import annotations

import os
from pathlib import Path

from proute.store.base import StateStore, StoreError, router_id
from proute.store.sqlite import MEMORY, SQLiteStore

MEMORY_URL = "memory"
SQLITE_PREFIX = "sqlite:///"


def default_state_path(router_path: str | os.PathLike) -> Path:
    """``<router dir>.state.sqlite``: beside the router directory, not in it."""
    path = Path(router_path).resolve()
    return path.with_name(path.name + ".state.sqlite")


def default_state_url(router_path: str | os.PathLike) -> str:
    return SQLITE_PREFIX + str(default_state_path(router_path))


def _store_of(url: str, create: bool, exclusive: bool) -> StateStore:
    if url == MEMORY_URL:
        return SQLiteStore(MEMORY)
    if url.startswith(SQLITE_PREFIX) and len(url) > len(SQLITE_PREFIX):
        return SQLiteStore(Path(url[len(SQLITE_PREFIX) :]), create=create, exclusive=exclusive)
    scheme = url.split("://", 1)[0] if "://" in url else url
    raise StoreError(
        f"--state {url!r}: unsupported state URL (scheme {scheme!r}); expected sqlite:///PATH or "
        f"{MEMORY_URL!r}"
    )


def open_store(
    url: str, router_path: str | os.PathLike | None = None, create: bool = True, exclusive: bool = False
) -> StateStore:
    """The store at ``url``, bound to the router at ``router_path`` (recorded on first use;
    a store of another router is refused, naming both). ``router_path=None``: whichever
    router the store records (``proute state export``). ``exclusive``: hold the store's
    lock until closed (the server, the store's one writer)."""
    store = _store_of(url, create, exclusive)
    if router_path is None:
        return store
    try:
        bind(store, router_path)
    except BaseException:
        store.close()
        raise
    return store


def bind(store: StateStore, router_path: str | os.PathLike) -> None:
    """Record ``router_path`` as the store's router, or check that it is the one recorded."""
    want = router_id(router_path)
    have = store.get_meta("router_id")
    if have is None:
        store.set_meta({"schema": "1", "router_id": want, "router_path": str(Path(router_path).resolve())})
    elif have != want:
        recorded = store.get_meta("router_path")
        raise StoreError(
            f"{store.url}: this state belongs to another router (router.json sha256 {have[:16]}..., "
            f"recorded from {recorded}), not to {Path(router_path) / 'router.json'} "
            f"({want[:16]}...); replaying it there would apply one router's users and feedback "
            "to another. Give that router, or another --state"
        )
