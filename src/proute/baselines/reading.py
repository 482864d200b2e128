"""Reading a baseline router directory (:mod:`proute.baselines.export`): its layout, checks
and the :class:`~proute.router.RouterFormatError` naming the file and field at fault."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from proute.baselines.state import exportable

KIND_PREFIX = "baseline/"
FORMAT_VERSION = 1
FILES = ("router.json", "state.safetensors")
HASHED_FIELDS = ("kind", "baseline", "llms", "users", "tasks", "query_dim", "encoder")


def _format_error(message: str):
    from proute.router.artifact import RouterFormatError

    return RouterFormatError(message)


def _read(path: Path, verify: bool) -> tuple[dict, bytes]:
    """``(router.json, state.safetensors bytes)``, checked (see :meth:`ExportedBaseline.load`)."""
    from proute.baselines import BASELINES
    from proute.router.artifact import _sha256, field_digest

    for name in FILES:
        if not (path / name).is_file():
            raise _format_error(f"{path}: missing {name}; a baseline router has {list(FILES)}")
    meta_file = path / "router.json"
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _format_error(f"{meta_file}: not valid JSON ({exc})") from None
    kind = meta.get("kind") if isinstance(meta, dict) else None
    names = [KIND_PREFIX + n for n in exportable()]
    if kind not in names:
        raise _format_error(
            f"{meta_file}: field 'kind' is {kind!r}; a baseline router's kind is one of {names}"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise _format_error(
            f"{meta_file}: field 'format_version' is {meta.get('format_version')!r}; "
            f"expected {FORMAT_VERSION}"
        )
    for key in (*HASHED_FIELDS, "integrity"):
        if key not in meta:
            raise _format_error(f"{meta_file}: missing field {key!r}")
    if not isinstance(meta["baseline"], dict) or meta["baseline"].get("name") not in BASELINES:
        raise _format_error(f"{meta_file}: field 'baseline' does not name a baseline ({meta['baseline']!r})")
    if KIND_PREFIX + meta["baseline"]["name"] != kind:
        raise _format_error(
            f"{meta_file}: field 'kind' is {kind!r} but field 'baseline' names {meta['baseline']['name']!r}"
        )
    blob = (path / "state.safetensors").read_bytes()
    if verify:
        recorded = meta["integrity"] if isinstance(meta["integrity"], dict) else {}
        for f in HASHED_FIELDS:
            if field_digest(f, meta[f]) != recorded.get("fields", {}).get(f):
                raise _format_error(
                    f"{meta_file}: field {f!r} does not match its sha256 in field 'integrity'"
                )
        if _sha256(blob) != recorded.get("files", {}).get("state.safetensors"):
            raise _format_error(
                f"{path / 'state.safetensors'}: its sha256 is not the one recorded in {meta_file}"
            )
    return meta, blob


def _arrays(path: Path, blob: bytes) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load as load_arrays

    try:
        return dict(load_arrays(blob))
    except (SafetensorError, ValueError) as exc:
        raise _format_error(
            f"{path / 'state.safetensors'}: not a readable safetensors file ({exc})"
        ) from None


def _centroids(path: Path, arrays: dict, meta: dict) -> np.ndarray:
    c = arrays.get("task_centroids")
    if c is None or c.shape != (len(meta["tasks"]), meta["query_dim"]):
        raise _format_error(
            f"{path / 'state.safetensors'}: 'task_centroids' is missing or not "
            f"[{len(meta['tasks'])} tasks, {meta['query_dim']}]"
        )
    return c
