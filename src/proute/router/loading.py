"""One loader for every exported router: ``router.json`` field ``kind`` says which.

``kind`` absent or ``"gnn"``: a :class:`~proute.router.PersonalizedRouter` (the GNN);
``"baseline/<name>"``: a fitted baseline (:class:`proute.baselines.export.ExportedBaseline`),
with the same routing interface (``score``, ``route_batch``, ``route_single``,
``request_error``, ``llms``, ``users``) but no adaptation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from proute.router.artifact import RouterFormatError
from proute.schema import UNKNOWN_USER_ERROR

GNN_KIND = "gnn"
BASELINE_PREFIX = "baseline/"


def router_kind(path: str | os.PathLike) -> str:
    """The ``kind`` of the router directory ``path`` (``"gnn"`` when router.json has none);
    :class:`RouterFormatError` naming the file for a missing or unreadable router.json."""
    meta_file = Path(path) / "router.json"
    if not Path(path).exists():
        raise RouterFormatError(f"{path}: no such router directory (a run's router/ or baselines/<name>/)")
    if not Path(path).is_dir():
        raise RouterFormatError(f"{path}: not a router directory (a run's router/ or baselines/<name>/)")
    if not meta_file.is_file():
        raise RouterFormatError(f"{path}: missing router.json; expected an exported router directory")
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RouterFormatError(f"{meta_file}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise RouterFormatError(f"{meta_file}: expected a JSON object, got {type(meta).__name__}")
    kind = meta.get("kind", GNN_KIND)
    if not isinstance(kind, str) or not (kind == GNN_KIND or kind.startswith(BASELINE_PREFIX)):
        raise RouterFormatError(
            f"{meta_file}: field 'kind' is {kind!r}; expected {GNN_KIND!r} or {BASELINE_PREFIX}<name>"
        )
    return kind


def load_router(
    path: str | os.PathLike,
    encoder=None,
    device: Any = "cpu",
    verify: bool = True,
    unknown_user: str = UNKNOWN_USER_ERROR,
):
    """The router of directory ``path``, whatever its kind (see the module docstring)."""
    if router_kind(path) == GNN_KIND:
        from proute.router import PersonalizedRouter

        return PersonalizedRouter.load(path, encoder, device, verify, unknown_user)
    from proute.baselines.export import ExportedBaseline

    return ExportedBaseline.load(path, encoder=encoder, verify=verify, unknown_user=unknown_user)
