"""Putting a router back as it was: its latest snapshot, then the events after it, through
the router's own methods (``add_user``, ``feedback``, ``add_llm``), in ``seq`` order.

A snapshot is the router itself after the events up to its ``seq``: the directory
:meth:`proute.router.PersonalizedRouter.save` writes (weights, context with every adapted
user's evidence and embedding, router.json with its integrity hashes), packed as an
uncompressed tar in one blob. Loading it gives the state the events made, tensor for
tensor, so a compacted store routes exactly as replaying its events did; it is checked on
load as any router directory is.
"""

from __future__ import annotations

import io
import logging
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proute.router import PersonalizedRouter, RouterFormatError
from proute.store.base import Event, StateStore, StoreError

log = logging.getLogger(__name__)
SNAPSHOT_FILES = ("router.json", "weights.safetensors", "context.safetensors")


@dataclass
class Restored:
    """What :func:`restore` did: the router, the snapshot's ``seq`` (0: none), the events
    replayed, those the router refused (as it did when they arrived), the last ``seq``."""

    router: Any
    snapshot_seq: int = 0
    replayed: int = 0
    refused: int = 0
    last_seq: int = 0


def apply(router, event: Event) -> None:
    """Apply one event with the router method that made it."""
    a = event.args
    if event.kind == "add_user":
        router.add_user(a["user_id"], a["interactions"])
    elif event.kind == "feedback":
        policy = getattr(router, "unknown_user", None)
        if a.get("unknown_user") is not None and policy is not None and policy != a["unknown_user"]:
            router.unknown_user = a["unknown_user"]  # as the server that took it
            try:
                router.feedback(a["user_id"], a["query"], a["llm"], a["outcome"])
            finally:
                router.unknown_user = policy
        else:
            router.feedback(a["user_id"], a["query"], a["llm"], a["outcome"])
    elif event.kind == "add_llm":
        router.add_llm(
            a["name"], a["description"], a["input_price"], a["output_price"], a["family"], a["outcomes"]
        )
    else:
        raise StoreError(f"event {event.seq}: unknown kind {event.kind!r}")


def snapshot_blob(router) -> bytes:
    """The router saved as a directory, packed into one blob."""
    with tempfile.TemporaryDirectory(prefix="proute-snapshot-") as tmp:
        path = router.save(Path(tmp) / "router")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name in SNAPSHOT_FILES:
                tar.add(path / name, arcname=name)
        return buf.getvalue()


def router_from_snapshot(blob: bytes, where: str, encoder=None) -> PersonalizedRouter:
    """The router a :func:`snapshot_blob` holds (only its three files are read)."""
    with tempfile.TemporaryDirectory(prefix="proute-snapshot-") as tmp:
        out = Path(tmp) / "router"
        out.mkdir()
        try:
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
                for name in SNAPSHOT_FILES:
                    member = tar.extractfile(name)
                    if member is None:
                        raise KeyError(name)
                    (out / name).write_bytes(member.read())
            return PersonalizedRouter.load(out, encoder=encoder)
        except (tarfile.TarError, KeyError, RouterFormatError) as exc:
            raise StoreError(f"{where}: its snapshot cannot be read ({exc}); nothing was written") from None


def restore(router, store: StateStore) -> Restored:
    """``router`` (loaded from its export) as the store left it: the latest snapshot, then
    every event after it. An event the router refuses (``KeyError``/``ValueError``) was
    refused when it arrived too (it is kept only when the server stopped between recording
    and refusing it) and is skipped; anything else stops with a :class:`StoreError`."""
    snap = store.latest_snapshot()
    out = Restored(router)
    if snap is not None:
        out.snapshot_seq = out.last_seq = snap[0]
        out.router = router_from_snapshot(
            snap[1], f"{store.url} (snapshot {snap[0]})", getattr(router, "_encoder", None)
        )
    for event in store.events_after(out.snapshot_seq):
        try:
            apply(out.router, event)
            out.replayed += 1
        except (KeyError, ValueError) as exc:
            out.refused += 1
            log.warning(
                "%s: event %d (%s) refused on replay, as when it arrived: %s",
                store.url,
                event.seq,
                event.kind,
                exc,
            )
        except Exception as exc:
            raise StoreError(
                f"{store.url}: event {event.seq} ({event.kind}) cannot be replayed: {exc}"
            ) from exc
        out.last_seq = event.seq
    return out
