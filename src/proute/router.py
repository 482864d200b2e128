"""The exported router: a directory that routes queries without the training data.

Layout of an exported router directory::

    router.json            format version, model hyperparameters, id maps (users, LLMs,
                           tasks), LLM table, encoder spec, versions, resolved config,
                           integrity (sha256 of the two files below and of the id lists)
    weights.safetensors    the model's weights
    context.safetensors    the cached per-layer states of the user, task and LLM nodes
                           (what a new query node receives messages from), the task
                           classifier that infers a request's task when it gives none
                           (proute.task_inference) and the task centroids of older routers

Nothing is unpickled: weights are safetensors, metadata JSON (torch before 2.6 can run
code from a crafted ``torch.load`` file). Routing a query never touches the training
graph: its representation is computed from the cached context states (val/test query nodes
are receivers only in the training graph, so this is exactly what evaluation computed; the
reference code rebuilt the graph per query: docs/DESIGN.md §4, flaw 4).

Integrity (format 3): ``router.json`` field ``integrity`` holds the sha256 of each tensor
file and of each field that decides what a route means (``llms``, ``users``, ``tasks``,
``model``, ``query_dim`` and the encoder's identity). :meth:`PersonalizedRouter.load` checks
them and refuses an edited or damaged router (:class:`RouterFormatError` naming the file or
field): reordering ``llms`` would otherwise route to the wrong names. Formats 1 and 2 have no
hashes; they load unverified with a :class:`RouterIntegrityWarning`.

Threads: one router may serve many threads. Its lazy state (the text encoder) is created
once under a lock; the encoder loads its transformers model once, under the process-wide
:data:`~proute.data.text_encoders.MODEL_LOAD_LOCK`, which :meth:`PersonalizedRouter.load`
also holds while it builds the GNN (transformers' ``from_pretrained`` patches torch's module
creation for the whole process while it runs, so a load beside a router being built would
leave modules on the meta device).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from proute.data.text_encoders import MODEL_LOAD_LOCK

FORMAT_VERSION = 3
# Format 1 (proute before the conv registry): model hyperparameters were flat arguments and
# the GNN's weights were named ``encoder.*``; it is read by translating both.
# Format 2: format 3 without the ``integrity`` field; read unverified, with a warning.
READABLE_FORMATS = (1, 2, 3)

#: Fields of router.json whose sha256 is recorded (they decide what a route means).
HASHED_FIELDS = ("llms", "users", "tasks", "model", "query_dim", "encoder", "task_inference")
# Encoder settings that change how, not what, it computes: free to edit.
_ENCODER_RUNTIME_KEYS = frozenset({"device", "batch_size", "show_progress"})
_REBUILD = (
    "Rebuild the router: export it again from its training run (retrain, or "
    "PersonalizedRouter.from_training(...).save(dir)). If the edit was deliberate, load it "
    "with PersonalizedRouter.load(dir, verify=False) and save it again to record new hashes."
)

# Held while a router builds torch modules; the same process-wide lock under which every
# TextEncoder loads its model: transformers' from_pretrained patches torch's module init
# process-wide (init_empty_weights: new parameters on the meta device) while it runs.
_MODEL_INIT_LOCK = MODEL_LOAD_LOCK


def _upgrade_v1(hparams: dict, weights: dict) -> tuple[dict, dict]:
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


FILES = ("router.json", "weights.safetensors", "context.safetensors")


class RouterFormatError(ValueError):
    """An exported router directory is missing a file or holds something unexpected."""


class RouterIntegrityWarning(UserWarning):
    """A router was loaded without checking its hashes (an older format, or verify=False)."""


def _json_id(u):
    return u.item() if isinstance(u, np.generic) else u


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def field_digest(name: str, value: Any) -> str:
    """sha256 of a router.json field's canonical JSON (the encoder without its run-time
    settings: device, batch size and progress bar may be edited)."""
    if name == "encoder" and isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in _ENCODER_RUNTIME_KEYS}
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return _sha256(blob.encode("utf-8"))


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


def _check_integrity(path: Path, meta: dict, blobs: dict[str, bytes]) -> None:
    """Raise :class:`RouterFormatError` unless every recorded sha256 matches."""
    meta_file = path / "router.json"
    integrity = meta.get("integrity")
    files = integrity.get("files") if isinstance(integrity, dict) else None
    fields = integrity.get("fields") if isinstance(integrity, dict) else None
    complete = (
        isinstance(files, dict)
        and isinstance(fields, dict)
        and all(isinstance(files.get(n), str) for n in FILES[1:])
        and all(isinstance(fields.get(f), str) for f in HASHED_FIELDS)
    )
    if not complete:
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


def _query_error(query: Any) -> ValueError | None:
    """What is wrong with a query text (training rejects empty ones too), or None."""
    if not isinstance(query, str):
        return ValueError(f"field 'query' must be a string, got {query!r}")
    if not query.strip():
        return ValueError(f"field 'query' is empty; expected non-empty text (got {query!r})")
    return None


class PersonalizedRouter:
    """Routes (user, query) to the LLM the user would want.

    >>> router = PersonalizedRouter.load("outputs/train/runs/<time>/router")  # doctest: +SKIP
    >>> router.route_single({"query": "What is 2 + 2?", "user_id": 3})        # doctest: +SKIP
    {'model_name': 'gemma-2-9b-it', 'scores': {...}, 'user_id': 3, 'task': 'gsm8k'}
    """

    def __init__(
        self,
        model,
        context,
        meta: dict,
        task_centroids: torch.Tensor,
        encoder=None,
        device: str | torch.device = "cpu",
        task_classifier=None,
    ):
        from proute.models.model import ContextCache

        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.context: ContextCache = context.to(self.device)
        self.meta = meta
        self.llms: list[str] = list(meta["llms"])
        self.tasks: list[str] = list(meta["tasks"])
        self.users: list = list(meta["users"])
        self._user_index = {str(u): i for i, u in enumerate(self.users)}
        self._task_index = {t: i for i, t in enumerate(self.tasks)}
        self.task_centroids = task_centroids.to(self.device)
        self.task_classifier = None if task_classifier is None else task_classifier.to(self.device)
        # how a query without a task is scored (proute.task_inference): chosen at export
        self.task_mode: str = meta.get("task_inference", {}).get("mode", "hard")
        self._encoder = encoder
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ building
    @classmethod
    def from_training(cls, model, rg, prepared, cfg, environment: dict) -> "PersonalizedRouter":
        """Freeze a trained model and its graph context into a router."""
        from omegaconf import OmegaConf

        model.eval()
        with torch.no_grad():
            context = model.context_cache(rg.graph)
        table = prepared.table
        train_q = table.loc[table["split"] == "train"].drop_duplicates("query_id")
        emb = prepared.query_embedding_dict()
        dim = prepared.query_emb.shape[1]
        centroids = np.zeros((len(rg.tasks), dim), dtype=np.float32)
        for i, task in enumerate(rg.tasks):
            ids = train_q.loc[train_q["task"] == task, "query_id"]
            if len(ids):
                c = np.mean([emb[q] for q in ids], axis=0)
                centroids[i] = c / max(np.linalg.norm(c), 1e-12)
        classifier, task_info = cls._fit_task_classifier(table, emb, list(rg.tasks))
        encoder_cfg = OmegaConf.to_container(cfg.text_encoder, resolve=True)
        encoder_cfg = {k: v for k, v in encoder_cfg.items() if k not in ("cache_dir",)}
        llm_table = prepared.data.llms.reindex(rg.llms)
        meta = {
            "format_version": FORMAT_VERSION,
            "model": dict(model.hparams),
            "users": [_json_id(u) for u in rg.users],
            "llms": list(rg.llms),
            "tasks": list(rg.tasks),
            "llm_table": json.loads(llm_table.reset_index().to_json(orient="records")),
            "encoder": encoder_cfg,
            "query_dim": int(dim),
            "dataset": prepared.data.name,
            "environment": environment,
            "config": OmegaConf.to_container(cfg, resolve=True),
            "task_inference": {"method": "softmax_regression", "mode": "hard", **task_info},
        }
        return cls(
            model, context, meta, torch.from_numpy(centroids), device="cpu", task_classifier=classifier
        )

    @staticmethod
    def _fit_task_classifier(table, emb: dict, tasks: list[str]):
        """The task classifier of the training queries, its L2 chosen on the val queries."""
        from proute.task_inference import TaskClassifier

        index = {t: i for i, t in enumerate(tasks)}
        parts = {}
        for split in ("train", "val"):
            q = table.loc[table["split"] == split].drop_duplicates("query_id")
            q = q[q["task"].astype(str).isin(index)]
            x = np.stack([emb[i] for i in q["query_id"]]) if len(q) else None
            parts[split] = (x, [index[str(t)] for t in q["task"]])
        return TaskClassifier.fit(*parts["train"], len(tasks), *parts["val"])

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the router directory atomically: a failed save leaves an existing one.

        Writes the current format with its ``integrity`` hashes; the directory and files get
        the permissions the process umask allows (not a temporary directory's 0700).
        """
        from safetensors.torch import save

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        ctx = {k: v.detach().cpu().contiguous() for k, v in self.context.state_tensors().items()}
        ctx["task_centroids"] = self.task_centroids.detach().cpu().contiguous()
        if self.task_classifier is not None:
            ctx.update({k: v.detach().cpu() for k, v in self.task_classifier.tensors().items()})
        blobs = {"weights.safetensors": save(weights), "context.safetensors": save(ctx)}
        # Hash what a reader will parse: the metadata after its JSON round trip.
        meta = json.loads(json.dumps(self.meta, default=str))
        meta.pop("integrity", None)
        meta["format_version"] = FORMAT_VERSION
        meta["integrity"] = {
            "algorithm": "sha256",
            "files": {name: _sha256(data) for name, data in blobs.items()},
            "fields": {name: field_digest(name, meta.get(name)) for name in HASHED_FIELDS},
        }
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

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        encoder=None,
        device: str | torch.device = "cpu",
        verify: bool = True,
    ) -> "PersonalizedRouter":
        """Load a router directory; needs nothing else (not the data, not the configs).

        ``encoder`` (optional) replaces the text encoder named in ``router.json``; it must
        produce embeddings of the same size. The sha256 hashes in ``router.json`` are checked
        (a mismatch raises :class:`RouterFormatError`); ``verify=False`` loads a deliberately
        edited router anyway, with a :class:`RouterIntegrityWarning`.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load

        from proute.models import build_model
        from proute.models.model import ContextCache

        path = Path(path)
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
        if version < 3:
            warnings.warn(
                f"{path / 'router.json'}: a format-{version} router has no integrity hashes; it "
                "is loaded unverified (edits to its files or id lists go unnoticed). Save it "
                "again to add them: PersonalizedRouter.load(dir).save(dir).",
                RouterIntegrityWarning,
                stacklevel=2,
            )
        elif verify:
            _check_integrity(path, meta, blobs)
        else:
            warnings.warn(
                f"{path}: loaded with verify=False; its integrity hashes are not verified.",
                RouterIntegrityWarning,
                stacklevel=2,
            )
        meta = {k: v for k, v in meta.items() if k != "integrity"}
        tensors = {}
        for name in FILES[1:]:
            try:
                tensors[name] = load(blobs.pop(name))
            except (SafetensorError, ValueError) as exc:
                raise RouterFormatError(f"{path / name}: not a readable safetensors file ({exc})") from exc
        hparams, weights = meta["model"], tensors["weights.safetensors"]
        if version == 1:
            hparams, weights = _upgrade_v1(hparams, weights)
            meta = {**meta, "model": hparams, "format_version": FORMAT_VERSION}
        try:
            with _MODEL_INIT_LOCK:  # not while another thread's encoder patches torch
                model = build_model(**hparams)
                model.load_state_dict(weights, strict=True)
        except (TypeError, RuntimeError, ValueError) as exc:
            raise RouterFormatError(
                f"{path / 'weights.safetensors'}: does not match the model described in "
                f"router.json field 'model' ({exc})"
            ) from exc
        ctx = dict(tensors["context.safetensors"])
        if "task_centroids" not in ctx:
            raise RouterFormatError(f"{path / 'context.safetensors'}: missing 'task_centroids'")
        centroids = ctx.pop("task_centroids")
        from proute.task_inference import TaskClassifier

        classifier = TaskClassifier.from_tensors(ctx)  # routers exported before it: None
        return cls(model, ContextCache.from_tensors(ctx), meta, centroids, encoder, device, classifier)

    # ------------------------------------------------------------------ routing
    @property
    def encoder(self):
        """The text encoder, created on first use (once, also when threads race to it)."""
        encoder = self._encoder
        if encoder is None:
            with self._lock:
                if self._encoder is None:
                    from proute.data.text_encoders import TextEncoder

                    spec = {k: v for k, v in self.meta["encoder"].items() if not k.startswith("_")}
                    spec.update(cache_dir=None, show_progress=False)
                    self._encoder = TextEncoder(**spec)
                encoder = self._encoder
        return encoder

    def encode(self, queries: Sequence[str]) -> np.ndarray:
        """Embeddings of ``queries`` with the router's encoder; safe from many threads.

        The first encode loads the model (once, under
        :data:`~proute.data.text_encoders.MODEL_LOAD_LOCK`); encodes run concurrently.
        """
        return self.encoder.encode(list(queries))

    def user_index(self, user_id) -> int:
        try:
            return self._user_index[str(user_id)]
        except KeyError:
            raise KeyError(self._unknown_user(user_id)) from None

    def _unknown_user(self, user_id) -> str:
        return (
            f"unknown user_id {user_id!r}: this router knows {len(self.users)} users "
            f"({self.users[:10]}{' ...' if len(self.users) > 10 else ''})"
        )

    def request_error(self, request: Any) -> KeyError | ValueError | None:
        """What is wrong with one request (not raised), or None when the router can route it.

        A ``ValueError`` for a malformed request (not a dict, a missing field, a query that
        is not a non-empty string), a ``KeyError`` for a user or task this router does not
        know. Its message names the field; callers add where the request came from.
        """
        if not isinstance(request, dict):
            return ValueError(f"expected a dict with 'query' and 'user_id'; got {request!r}")
        for key in ("query", "user_id"):
            if key not in request:
                return ValueError(f"missing field {key!r}; expected a dict with 'query' and 'user_id'")
        return _query_error(request["query"]) or self._ids_error(request["user_id"], request.get("task"))

    def _ids_error(self, user_id: Any, task: Any) -> KeyError | None:
        if user_id is None or str(user_id) not in self._user_index:
            return KeyError(self._unknown_user(user_id))
        if task is not None and (not isinstance(task, str) or task not in self._task_index):
            return KeyError(f"unknown task {task!r}; known tasks: {self.tasks}")
        return None

    def task_proba(self, query_emb: torch.Tensor) -> torch.Tensor:
        """``[n, num_tasks]`` task probabilities of query embeddings: the task classifier
        (:mod:`proute.task_inference`), or, for routers exported before it, one-hot at the
        nearest training-task centroid (cosine)."""
        if self.task_classifier is not None:
            return self.task_classifier.proba(query_emb)
        q = torch.nn.functional.normalize(query_emb, dim=1)
        nearest = (q @ self.task_centroids.T).argmax(dim=1)
        return torch.nn.functional.one_hot(nearest, len(self.tasks)).float()

    def infer_tasks(self, query_emb: torch.Tensor) -> torch.Tensor:
        """The most probable task of each query embedding."""
        return self.task_proba(query_emb).argmax(dim=1)

    @torch.no_grad()
    def score(
        self,
        queries: Sequence[str] | None,
        user_ids: Sequence,
        tasks: Sequence[str | None] | None = None,
        query_emb: np.ndarray | torch.Tensor | None = None,
        task_mode: str | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """Logits ``[n, num_llms]`` (columns :attr:`llms`) and the task used per query.

        Give the texts (encoded with the router's encoder) or ``query_emb``. A task that is
        ``None`` (or ``tasks=None``) is inferred (:meth:`task_proba`): ``task_mode="hard"``
        scores the query under its most probable task, ``"soft"`` averages its scores under
        every task weighted by the task's probability (the reported task is then the most
        probable one); default :attr:`task_mode`, chosen on validation at export.
        Every input is checked before anything is encoded; an error names its index
        (``request i: ...``).
        """
        if query_emb is None and queries is None:
            raise ValueError("give the query texts or their embeddings")
        n = len(queries) if query_emb is None else len(query_emb)
        if len(user_ids) != n or (tasks is not None and len(tasks) != n):
            raise ValueError(
                f"{n} queries, {len(user_ids)} user ids and "
                f"{'no' if tasks is None else len(tasks)} tasks: give one of each per query"
            )
        tasks = [None] * n if tasks is None else list(tasks)
        for i in range(n):
            error = self._ids_error(user_ids[i], tasks[i])
            if query_emb is None:
                error = _query_error(queries[i]) or error
            if error is not None:
                raise type(error)(f"request {i}: {error.args[0]}")
        if query_emb is None:
            query_emb = self.encode(queries)
        q = torch.as_tensor(np.asarray(query_emb, dtype=np.float32), device=self.device)
        if q.ndim != 2 or q.shape[1] != self.meta["query_dim"]:
            raise ValueError(
                f"query embeddings have shape {tuple(q.shape)}; expected [n, {self.meta['query_dim']}]"
            )
        mode = self.task_mode if task_mode is None else task_mode
        if mode not in ("hard", "soft"):
            raise ValueError(f"task_mode={mode!r}; expected 'hard' or 'soft'")
        user_idx = torch.tensor([self._user_index[str(u)] for u in user_ids], device=self.device)
        proba = self.task_proba(q)
        task_idx = proba.argmax(dim=1)
        given = torch.tensor([t is not None for t in tasks], dtype=torch.bool, device=self.device)
        for i, t in enumerate(tasks):
            if t is not None:
                task_idx[i] = self._task_index[t]
        # The model ignores user/task indices when its graph has no such nodes.
        logits = self.model.score_new(self.context, q, user_idx, task_idx)
        if mode == "soft" and not bool(given.all()) and len(self.tasks) > 1:
            free = (~given).nonzero().squeeze(1)
            mixed = torch.zeros_like(logits[free])
            for k in range(len(self.tasks)):
                task_k = torch.full_like(free, k)
                mixed += proba[free, k : k + 1] * self.model.score_new(
                    self.context, q[free], user_idx[free], task_k
                )
            logits[free] = mixed
        return logits.float().cpu().numpy(), [self.tasks[i] for i in task_idx.tolist()]

    def route_batch(self, requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Route ``[{"query": str, "user_id": id, "task": optional}, ...]``.

        A bad request raises before anything is routed: ``ValueError`` (malformed) or
        ``KeyError`` (unknown user or task), its message starting ``request <index>: ``.
        """
        for i, r in enumerate(requests):
            error = self.request_error(r)
            if error is not None:
                raise type(error)(f"request {i}: {error.args[0]}")
        scores, tasks = self.score(
            [r["query"] for r in requests],
            [r["user_id"] for r in requests],
            [r.get("task") for r in requests],
        )
        out = []
        for r, s, t in zip(requests, scores, tasks, strict=True):
            out.append(
                {
                    "model_name": self.llms[int(s.argmax())],
                    "scores": dict(zip(self.llms, map(float, s), strict=True)),
                    "user_id": r["user_id"],
                    "task": t,
                }
            )
        return out

    def route_single(self, request: dict[str, Any]) -> dict[str, Any]:
        """Route one ``{"query": str, "user_id": id[, "task": str]}``."""
        return self.route_batch([request])[0]
