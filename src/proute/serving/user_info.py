"""``GET /v1/users/{id}``: what the router holds for one user, and what the state store
recorded for it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from proute.data.ids import user_key
from proute.serving.errors import APIError


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def user_info(router, store, user_id: str) -> dict[str, Any]:
    """``{user_id, known, origin: trained|added, queries, interactions, training_interactions,
    method, events, last_update}``; 422 for a value that is no user id, 404 for a user the
    router does not hold."""
    try:
        key = user_key(user_id, "user")
    except ValueError as exc:
        raise APIError(422, str(exc), "user", "invalid_value") from None
    state: Any = getattr(router, "state", None)
    index = getattr(state, "user_index", None)
    if index is None:  # a baseline router: its users, nothing learned
        known = key in {user_key(u) for u in getattr(router, "users", [])}
        row, trained = (0, 1) if known else (None, 0)
    else:
        row, trained = index.get(key), state.num_trained_users
    if row is None:
        raise APIError(
            404, f"unknown user_id {key!r}: the router holds no such user", "user", "user_not_found"
        )
    events, last = store.user_summary(key) if store is not None else (0, None)
    evidence = state.evidence.get(key) if state is not None else None
    deg = state.adapt.get("adapt.user_deg") if state is not None else None
    added = row >= trained
    return {
        "user_id": key,
        "known": True,
        "origin": "added" if added else "trained",
        "training_interactions": None if added or deg is None else int(deg[row]),
        "queries": 0 if evidence is None else evidence.num_queries,
        "interactions": 0 if evidence is None else evidence.num_outcomes,
        "method": getattr(router, "new_user_method", None) if added else None,
        "events": events,
        "last_update": _iso(last),
        "state": None if store is None else store.url,
    }
