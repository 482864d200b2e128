"""The router on disk: save, load, integrity and the upgrade of older formats.

Layout of an exported router directory::

    router.json            format version, model hyperparameters, id maps (users, LLMs,
                           tasks), LLM table, encoder spec, what adaptation needs from
                           training (listwise_temperature, edge_feature, adapt), versions,
                           resolved training config (for the record: load never reads it),
                           integrity (sha256 of the two files below and of the id lists)
    weights.safetensors    the model's weights
    context.safetensors    the cached per-layer states of the user, task and LLM nodes
                           (what a new query node receives messages from), the task
                           classifiers (proute.router.task_inference), the task centroids of
                           older routers, the adaptation context (``adapt.*``) and each
                           adapted user's evidence (``evidence.*``)

Nothing is unpickled: weights are safetensors, metadata JSON (torch before 2.6 can run
code from a crafted ``torch.load`` file).

Integrity (format 3): ``router.json`` field ``integrity`` holds the sha256 of each tensor
file and of each field that decides what a route means (:data:`HASHED_FIELDS`). :func:`load`
checks them and refuses an edited or damaged router (:class:`RouterFormatError` naming the
file or field): reordering ``llms`` would otherwise route to the wrong names. Formats 1 and
2 have no hashes; they load unverified with a :class:`RouterIntegrityWarning`. Routers saved
before ``listwise_temperature`` and ``edge_feature`` were fields of their own load them from
the training config they recorded (``config.trainer``, ``config.graph``); :func:`save`
writes the fields.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from proute.data.text_encoders import MODEL_LOAD_LOCK
from proute.models import build_model
from proute.models.model import ContextCache
from proute.router.evidence import Evidence
from proute.router.state import UNKNOWN_USER_ERROR, RouterState, check_policy, new_state
from proute.router.task_inference import TaskClassifier, TextTaskClassifier

FORMAT_VERSION = 3
# Format 1 (proute before the conv registry): model hyperparameters were flat arguments and
# the GNN's weights were named ``encoder.*``; it is read by translating both.
# Format 2: format 3 without the ``integrity`` field; read unverified, with a warning.
READABLE_FORMATS = (1, 2, 3)

#: Fields of router.json whose sha256 is recorded (they decide what a route means).
HASHED_FIELDS = ("llms", "users", "tasks", "model", "query_dim", "encoder", "task_inference")
FILES = ("router.json", "weights.safetensors", "context.safetensors")
# Encoder settings that change how, not what, it computes: free to edit.
_ENCODER_RUNTIME_KEYS = frozenset({"device", "batch_size", "show_progress"})
_REBUILD = (
    "Rebuild the router: export it again from its training run (retrain, or "
    "proute.training.export.export_router(...).save(dir)). If the edit was deliberate, load it "
    "with PersonalizedRouter.load(dir, verify=False) and save it again to record new hashes."
)

# Held while a router builds torch modules; the same process-wide lock under which every
# TextEncoder loads its model: transformers' from_pretrained patches torch's module init
# process-wide (init_empty_weights: new parameters on the meta device) while it runs.
MODEL_INIT_LOCK = MODEL_LOAD_LOCK


class RouterFormatError(ValueError):
    """An exported router directory is missing a file or holds something unexpected."""


class RouterIntegrityWarning(UserWarning):
    """A router was loaded without checking its hashes (an older format, or verify=False)."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def field_digest(name: str, value: Any) -> str:
    """sha256 of a router.json field's canonical JSON (the encoder without its run-time
    settings: device, batch size and progress bar may be edited)."""
    if name == "encoder" and isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in _ENCODER_RUNTIME_KEYS}
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return _sha256(blob.encode("utf-8"))


# ---------------------------------------------------------------------- save
def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def _context_tensors(state: RouterState) -> dict[str, torch.Tensor]:
    """Everything of ``state`` that goes into context.safetensors."""
    ctx = _cpu(state.context.state_tensors())
    ctx["task_centroids"] = state.task_centroids.detach().cpu().contiguous()
    for clf in (state.task_classifier, state.text_task_classifier):
        if clf is not None:
            ctx.update(_cpu(clf.tensors()))
    ctx.update(_cpu(dict(state.adapt)))
    for i, (uid, ev) in enumerate(sorted(state.evidence.items())):
        ctx.update(_cpu(ev.tensors(f"evidence.{i}")))
        if uid in state.embedding:
            ctx[f"evidence.{i}.embedding"] = state.embedding[uid].detach().cpu().contiguous()
    return ctx


def _meta_to_save(state: RouterState, blobs: dict[str, bytes]) -> dict:
    """router.json of ``state``: what load needs as fields of their own, and the hashes of
    what a reader will parse (the metadata after its JSON round trip; the id lists include
    the users and LLMs added since training: their hashes are new)."""
    meta_now = dict(state.meta)
    if state.evidence:
        meta_now["adapt"] = {**meta_now.get("adapt", {}), "evidence_users": sorted(state.evidence)}
    meta_now["task_inference"] = {**meta_now.get("task_inference", {}), "mode": state.task_mode}
    meta_now["listwise_temperature"] = state.listwise_temperature
    meta_now["edge_feature"] = state.edge_feature
    meta = json.loads(json.dumps(meta_now, default=str))
    meta.pop("integrity", None)
    meta["format_version"] = FORMAT_VERSION
    meta["integrity"] = {
        "algorithm": "sha256",
        "files": {name: _sha256(data) for name, data in blobs.items()},
        "fields": {name: field_digest(name, meta.get(name)) for name in HASHED_FIELDS},
    }
    return meta


def _umask() -> int:
    """The process umask, read without changing it where the platform allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere the umask can only be read by setting it
    os.umask(mask)
    return mask


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def save(state: RouterState, path: str | os.PathLike) -> Path:
    """Write ``state`` as a router directory atomically: a failed save leaves an existing one.

    Writes the current format with its ``integrity`` hashes; the directory and files get
    the permissions the process umask allows (not a temporary directory's 0700).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = _cpu(state.model.state_dict())
    blobs = {
        "weights.safetensors": save_tensors(weights),
        "context.safetensors": save_tensors(_context_tensors(state)),
    }
    meta = _meta_to_save(state, blobs)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for name, data in blobs.items():
            _write_durably(tmp / name, data)
        _write_durably(tmp / "router.json", json.dumps(meta, indent=2).encode("utf-8"))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp made it 0700
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# ---------------------------------------------------------------------- load
def _read(path: Path) -> tuple[dict, dict[str, bytes]]:
    """``(router.json, {file: bytes})`` of a router directory; RouterFormatError naming what is wrong."""
    if not path.exists():
        raise RouterFormatError(f"{path}: no such router directory (expected {list(FILES)} in it)")
    if not path.is_dir():
        raise RouterFormatError(f"{path}: not a router directory (expected {list(FILES)})")
    for name in FILES:
        if not (path / name).is_file():
            raise RouterFormatError(f"{path}: missing {name}; expected {list(FILES)}")
    blobs = {}
    for name in FILES:
        try:
            blobs[name] = (path / name).read_bytes()
        except OSError as exc:
            raise RouterFormatError(f"{path / name}: cannot be read ({exc.strerror})") from exc
    try:
        meta = json.loads(blobs["router.json"].decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RouterFormatError(f"{path / 'router.json'}: not valid JSON ({exc})") from exc
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if isinstance(version, bool) or version not in READABLE_FORMATS:
        raise RouterFormatError(
            f"{path / 'router.json'}: field 'format_version' is {version!r}; this proute "
            f"reads formats {list(READABLE_FORMATS)}"
        )
    for key in ("model", "users", "llms", "tasks", "encoder", "query_dim"):
        if key not in meta:
            raise RouterFormatError(f"{path / 'router.json'}: missing field {key!r}")
    return meta, blobs


def _check_integrity(path: Path, meta: dict, blobs: dict[str, bytes]) -> None:
    """Raise :class:`RouterFormatError` unless every recorded sha256 matches."""
    meta_file = path / "router.json"
    integrity = meta.get("integrity")
    files = integrity.get("files") if isinstance(integrity, dict) else None
    fields = integrity.get("fields") if isinstance(integrity, dict) else None
    if not (
        isinstance(files, dict)
        and isinstance(fields, dict)
        and all(isinstance(files.get(n), str) for n in FILES[1:])
        and all(isinstance(fields.get(f), str) for f in HASHED_FIELDS)
    ):
        raise RouterFormatError(
            f"{meta_file}: field 'integrity' is missing or incomplete; a format-"
            f"{meta['format_version']} router records the sha256 of {list(FILES[1:])} and of the "
            f"fields {list(HASHED_FIELDS)}. {_REBUILD}"
        )
    for name in HASHED_FIELDS:
        if field_digest(name, meta.get(name)) != fields[name]:
            raise RouterFormatError(
                f"{meta_file}: field {name!r} does not match its sha256 in field 'integrity': "
                f"it was edited after export, and the router would route with values it was not "
                f"trained with. {_REBUILD}"
            )
    for name in FILES[1:]:
        digest = _sha256(blobs[name])
        if digest != files[name]:
            raise RouterFormatError(
                f"{path / name}: its sha256 {digest[:16]}... is not the {files[name][:16]}... "
                f"recorded in {meta_file} field 'integrity': the file changed after export. "
                f"{_REBUILD}"
            )


def _verify(path: Path, meta: dict, blobs: dict[str, bytes], verify: bool) -> None:
    version = meta["format_version"]
    if version < 3:
        warnings.warn(
            f"{path / 'router.json'}: a format-{version} router has no integrity hashes; it "
            "is loaded unverified (edits to its files or id lists go unnoticed). Save it "
            "again to add them: PersonalizedRouter.load(dir).save(dir).",
            RouterIntegrityWarning,
            stacklevel=4,
        )
    elif verify:
        _check_integrity(path, meta, blobs)
    else:
        warnings.warn(
            f"{path}: loaded with verify=False; its integrity hashes are not verified.",
            RouterIntegrityWarning,
            stacklevel=4,
        )


def upgrade_v1(hparams: dict, weights: dict) -> tuple[dict, dict]:
    """Format-1 model hyperparameters and weights in format-2 form."""
    hp = dict(hparams)
    num_heads, aggregator = hp.pop("num_heads", 2), hp.pop("sage_aggregator", "mean")
    conv = hp.get("conv", "graphconv")
    hp["conv_kwargs"] = {
        "gat": {"num_heads": num_heads},
        "gatv2": {"num_heads": num_heads},
        "sage": {"aggregator": aggregator},
    }.get(conv, {})
    hidden, dropout = hp.pop("decoder_hidden", None), hp.pop("decoder_dropout", None)
    dec = {}
    if hp.get("decoder", "mlp") == "mlp":
        dec = {k: v for k, v in (("hidden", hidden), ("dropout", dropout)) if v is not None}
    hp["decoder_kwargs"] = dec
    renamed = {
        ("gnn." + k[len("encoder.") :] if k.startswith("encoder.") else k): v for k, v in weights.items()
    }
    return hp, renamed


def _model_of(path: Path, meta: dict, weights: dict):
    """``(model, meta)``: the model router.json describes with its weights (format 1 upgraded)."""
    hparams = meta["model"]
    if meta["format_version"] == 1:
        hparams, weights = upgrade_v1(hparams, weights)
        meta = {**meta, "model": hparams, "format_version": FORMAT_VERSION}
    try:
        with MODEL_INIT_LOCK:  # not while another thread's encoder patches torch
            model = build_model(**hparams)
            model.load_state_dict(weights, strict=True)
    except (TypeError, RuntimeError, ValueError) as exc:
        raise RouterFormatError(
            f"{path / 'weights.safetensors'}: does not match the model described in "
            f"router.json field 'model' ({exc})"
        ) from exc
    return model, meta


def _classifiers(path: Path, meta: dict, ctx: dict):
    """The task classifiers popped from ``ctx`` (None for routers exported before them)."""
    classifier = TaskClassifier.from_tensors(ctx)
    text_spec = (meta.get("task_inference") or {}).get("text", {}).get("features")
    try:
        text_classifier = TextTaskClassifier.from_tensors(ctx, text_spec)
    except (KeyError, ValueError) as exc:
        raise RouterFormatError(
            f"{path}: the text task classifier in context.safetensors and router.json field "
            f"'task_inference' do not agree ({exc})"
        ) from None
    return classifier, text_classifier


def _evidence(path: Path, meta: dict, ctx: dict):
    """``(evidence, embedding)`` of the adapted users, by user key."""
    evidence, embedding = {}, {}
    for i, uid in enumerate(meta.get("adapt", {}).get("evidence_users", [])):
        try:
            evidence[uid] = Evidence.from_tensors(ctx, f"evidence.{i}")
        except KeyError as exc:
            raise RouterFormatError(f"{path / 'context.safetensors'}: missing {exc.args[0]}") from None
        if f"evidence.{i}.embedding" in ctx:
            embedding[uid] = ctx[f"evidence.{i}.embedding"]
    return evidence, embedding


def load(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    verify: bool = True,
    unknown_user: str = UNKNOWN_USER_ERROR,
) -> RouterState:
    """The state of a router directory (without its average user); needs nothing else (not
    the data, not the configs). The sha256 hashes in ``router.json`` are checked (a mismatch
    raises :class:`RouterFormatError`); ``verify=False`` loads a deliberately edited router
    anyway, with a :class:`RouterIntegrityWarning`."""
    path = Path(path)
    check_policy(unknown_user)
    meta, blobs = _read(path)
    _verify(path, meta, blobs, verify)
    meta = {k: v for k, v in meta.items() if k != "integrity"}
    tensors = {}
    for name in FILES[1:]:
        try:
            tensors[name] = load_tensors(blobs.pop(name))
        except (SafetensorError, ValueError) as exc:
            raise RouterFormatError(f"{path / name}: not a readable safetensors file ({exc})") from exc
    model, meta = _model_of(path, meta, tensors["weights.safetensors"])
    ctx = dict(tensors["context.safetensors"])
    if "task_centroids" not in ctx:
        raise RouterFormatError(f"{path / 'context.safetensors'}: missing 'task_centroids'")
    centroids = ctx.pop("task_centroids")
    classifier, text_classifier = _classifiers(path, meta, ctx)
    adapt = {k: ctx.pop(k) for k in list(ctx) if k.startswith("adapt.")}
    evidence, embedding = _evidence(path, meta, ctx)
    context = ContextCache.from_tensors({k: v for k, v in ctx.items() if not k.startswith("evidence.")})
    try:
        return new_state(
            model,
            context,
            meta,
            centroids,
            device,
            classifier,
            text_classifier,
            unknown_user,
            adapt,
            evidence,
            embedding,
        )
    except ValueError as exc:
        raise RouterFormatError(f"{path / 'router.json'}: {exc}") from None
