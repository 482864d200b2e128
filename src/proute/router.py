"""The exported router: a directory that routes queries without the training data.

Layout of an exported router directory::

    router.json            format version, model hyperparameters, id maps (users, LLMs,
                           tasks), LLM table, encoder spec, versions, resolved config
    weights.safetensors    the model's weights
    context.safetensors    the cached per-layer states of the user, task and LLM nodes
                           (what a new query node receives messages from) and the task
                           centroids used to infer a query's task

Nothing is unpickled: weights are safetensors, metadata JSON (torch before 2.6 can run
code from a crafted ``torch.load`` file). Routing a query never touches the training
graph: its representation is computed from the cached context states (val/test query nodes
are receivers only in the training graph, so this is exactly what evaluation computed; the
reference code rebuilt the graph per query: docs/DESIGN.md §4, flaw 4).

Threads: one router may serve many threads. Its lazy state (the text encoder) is created
once under a lock, and the first encode, which loads the transformers model, runs under a
process-wide lock (transformers' ``from_pretrained`` patches torch's module creation for the
whole process while it runs, so two concurrent loads, or a load beside a router being built,
leave modules on the meta device).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

FORMAT_VERSION = 2
# Format 1 (proute before the conv registry): model hyperparameters were flat arguments and
# the GNN's weights were named ``encoder.*``; it is read by translating both.
READABLE_FORMATS = (1, 2)

# Held while a router builds torch modules or loads its text encoder's model: transformers'
# from_pretrained patches torch's module init process-wide (init_empty_weights: new
# parameters on the meta device) for as long as it runs, so nothing else may build modules
# meanwhile, and two loads at once can leave the patch in place for good.
_MODEL_INIT_LOCK = threading.RLock()


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


def _json_id(u):
    return u.item() if isinstance(u, np.generic) else u


def _query_error(query: Any) -> ValueError | None:
    """What is wrong with a query text (training rejects empty ones too), or None."""
    if not isinstance(query, str):
        return ValueError(f"field 'query' must be a string, got {type(query).__name__} {query!r}")
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
        self._encoder = encoder
        self._lock = threading.Lock()
        self._encoder_warm = False  # True once an encode has run (and loaded the model)

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
        }
        return cls(model, context, meta, torch.from_numpy(centroids), device="cpu")

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the router directory atomically: a failed save leaves an existing one."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            weights = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
            save_file(weights, str(tmp / "weights.safetensors"))
            ctx = {k: v.detach().cpu().contiguous() for k, v in self.context.state_tensors().items()}
            ctx["task_centroids"] = self.task_centroids.detach().cpu().contiguous()
            save_file(ctx, str(tmp / "context.safetensors"))
            (tmp / "router.json").write_text(json.dumps(self.meta, indent=2, default=str))
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
        cls, path: str | os.PathLike, encoder=None, device: str | torch.device = "cpu"
    ) -> "PersonalizedRouter":
        """Load a router directory; needs nothing else (not the data, not the configs).

        ``encoder`` (optional) replaces the text encoder named in ``router.json``; it must
        produce embeddings of the same size.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from proute.models import build_model
        from proute.models.model import ContextCache

        path = Path(path)
        if not path.is_dir():
            raise RouterFormatError(f"{path}: not a router directory (expected {list(FILES)})")
        for name in FILES:
            if not (path / name).is_file():
                raise RouterFormatError(f"{path}: missing {name}; expected {list(FILES)}")
        try:
            meta = json.loads((path / "router.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RouterFormatError(f"{path / 'router.json'}: not valid JSON ({exc})") from exc
        version = meta.get("format_version") if isinstance(meta, dict) else None
        if version not in READABLE_FORMATS:
            raise RouterFormatError(
                f"{path / 'router.json'}: field 'format_version' is {version!r}; this proute "
                f"reads formats {list(READABLE_FORMATS)}"
            )
        for key in ("model", "users", "llms", "tasks", "encoder", "query_dim"):
            if key not in meta:
                raise RouterFormatError(f"{path / 'router.json'}: missing field {key!r}")
        tensors = {}
        for name in FILES[1:]:
            try:
                tensors[name] = load_file(str(path / name))
            except (SafetensorError, OSError, ValueError) as exc:
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
        return cls(model, ContextCache.from_tensors(ctx), meta, centroids, encoder, device)

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

        The first encode loads the model; it runs alone, under a process-wide lock
        (:class:`~proute.data.text_encoders.TextEncoder` loads lazily and without a lock,
        and transformers' loading is not thread-safe). Later encodes run concurrently.
        """
        encoder = self.encoder
        if not self._encoder_warm:
            with _MODEL_INIT_LOCK:
                if not self._encoder_warm:
                    out = encoder.encode(list(queries))
                    self._encoder_warm = True
                    return out
        return encoder.encode(list(queries))

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

    def infer_tasks(self, query_emb: torch.Tensor) -> torch.Tensor:
        """Nearest task centroid (cosine) of each query embedding."""
        q = torch.nn.functional.normalize(query_emb, dim=1)
        return (q @ self.task_centroids.T).argmax(dim=1)

    @torch.no_grad()
    def score(
        self,
        queries: Sequence[str] | None,
        user_ids: Sequence,
        tasks: Sequence[str | None] | None = None,
        query_emb: np.ndarray | torch.Tensor | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """Logits ``[n, num_llms]`` (columns :attr:`llms`) and the task used per query.

        Give the texts (encoded with the router's encoder) or ``query_emb``. A task that is
        ``None`` (or ``tasks=None``) is inferred from the nearest training-task centroid.
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
        user_idx = torch.tensor([self._user_index[str(u)] for u in user_ids], device=self.device)
        task_idx = self.infer_tasks(q)
        for i, t in enumerate(tasks):
            if t is not None:
                task_idx[i] = self._task_index[t]
        # The model ignores user/task indices when its graph has no such nodes.
        logits = self.model.score_new(self.context, q, user_idx, task_idx)
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
