"""The exported router: a directory that routes queries without the training data.

Layout of an exported router directory::

    router.json            format version, model hyperparameters, id maps (users, LLMs,
                           tasks), LLM table, encoder spec, versions, resolved config,
                           integrity (sha256 of the two files below and of the id lists)
    weights.safetensors    the model's weights
    context.safetensors    the cached per-layer states of the user, task and LLM nodes
                           (what a new query node receives messages from), the task
                           classifier that infers a request's task when it gives none
                           (proute.router.task_inference) and the task centroids of older routers

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

New users, feedback and new LLMs without retraining (:meth:`PersonalizedRouter.add_user`,
:meth:`~PersonalizedRouter.feedback`, :meth:`~PersonalizedRouter.add_llm`; the method is in
:mod:`proute.router.adapt`, measured by ``scripts/new_users.py``): they append or replace rows of the
cached context, copy-on-write under a lock (routing takes a consistent snapshot), and
:meth:`~PersonalizedRouter.save` persists them with their evidence (``evidence.*`` tensors)
and new integrity hashes (the id lists changed). ``context.safetensors`` also holds what they
need from training (``adapt.*``: each trained user's and LLM's received message and degree,
the population's mean reward per task and LLM; router.json ``adapt`` holds the population
reward definition). An unknown user follows :attr:`~PersonalizedRouter.unknown_user`:
``"error"`` (default) or ``"average"`` (the population's average user).

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
        unknown_user: str = "error",
        text_task_classifier=None,
        adapt: dict | None = None,
        evidence: dict | None = None,
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
        # with the query's text (proute.router.task_inference.TextTaskClassifier); None: embedding only
        self.text_task_classifier = (
            None if text_task_classifier is None else text_task_classifier.to(self.device)
        )
        # how a query without a task is scored (proute.router.task_inference): chosen at export
        self.task_mode: str = meta.get("task_inference", {}).get("mode", "hard")
        self._encoder = encoder
        self._lock = threading.Lock()
        # State that add_user / feedback / add_llm change (copy-on-write: writers build new
        # tensors and dicts, then swap them in under _state_lock; readers take a snapshot
        # under it). _update_lock serialises writers, so two updates of one user never race.
        self._state_lock = threading.RLock()
        self._update_lock = threading.RLock()
        self.unknown_user = unknown_user
        self._adapt: dict[str, torch.Tensor] = {k: v.to(self.device) for k, v in (adapt or {}).items()}
        self._evidence: dict[str, Any] = dict(evidence or {})
        self._embedding: dict[str, torch.Tensor] = {}  # fitted layer-0 states of adapted users
        self._average: torch.Tensor | None = None

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
        classifier, task_info, text_classifier, text_info = cls._fit_task_classifier(
            table, emb, list(rg.tasks)
        )
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
            "task_inference": {
                "method": "softmax_regression",
                "mode": "hard",
                **task_info,
                "text": {"method": "softmax_regression_text_ngrams", **text_info},
            },
        }
        adapt, meta["adapt"] = cls._adaptation_context(model, rg, table)
        return cls(
            model,
            context,
            meta,
            torch.from_numpy(centroids),
            device="cpu",
            task_classifier=classifier,
            adapt=adapt,
            text_task_classifier=text_classifier,
        )

    @staticmethod
    def _adaptation_context(model, rg, table) -> tuple[dict[str, torch.Tensor], dict]:
        """What add_user / feedback / add_llm need from training (proute.router.adapt): each
        trained user's and LLM's per-layer received message and in-degree, the population's
        mean reward per (task, LLM) on the train rows, and the population reward definition
        (a least-squares ``reward ≈ a·performance + b·cost_norm + c`` over the train rows, cost
        min-max normalised per task on them), for interactions that give no reward."""
        from proute.data.outcomes import normalize_cost, reward_column
        from proute.router.adapt import node_messages

        adapt: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for nt in ("user", "llm"):
                if nt not in model.gnn.ntypes:
                    continue
                msgs, deg = node_messages(model, rg.graph, nt)
                adapt[f"adapt.{nt}_msg"] = torch.stack(msgs, 0).cpu()  # [layers, n, d]
                adapt[f"adapt.{nt}_deg"] = deg.cpu()
        train = table.loc[table["split"] == "train"]
        col = reward_column(train)
        pop = np.zeros((len(rg.tasks), len(rg.llms)), dtype=np.float32)
        means = train.groupby(["task", "llm"], observed=True)[col].mean()
        task_i = {t: i for i, t in enumerate(rg.tasks)}
        llm_i = {m: i for i, m in enumerate(rg.llms)}
        filled = np.zeros_like(pop, dtype=bool)
        for (t, m), v in means.items():
            if str(t) in task_i and str(m) in llm_i:
                pop[task_i[str(t)], llm_i[str(m)]] = v
                filled[task_i[str(t)], llm_i[str(m)]] = True
        col_mean = np.where(filled.any(0), pop.sum(0) / np.maximum(filled.sum(0), 1), 0.0)
        pop = np.where(filled, pop, col_mean[None, :]).astype(np.float32)
        adapt["adapt.pop_reward"] = torch.from_numpy(pop)
        if rg.has_users:  # each trained user's own mean reward per (task, LLM); else the population's
            own = np.repeat(pop[None], len(rg.users), 0)
            user_i = {str(u): i for i, u in enumerate(rg.users)}
            for (u, t, m), v in train.groupby(["user_id", "task", "llm"], observed=True)[col].mean().items():
                if str(u) in user_i and str(t) in task_i and str(m) in llm_i:
                    own[user_i[str(u)], task_i[str(t)], llm_i[str(m)]] = v
            adapt["adapt.user_reward"] = torch.from_numpy(own.astype(np.float32))
        cost_norm = normalize_cost(train)
        x = np.stack([train["performance"].to_numpy(float), cost_norm, np.ones(len(train))], 1)
        coef = (
            np.linalg.lstsq(x, train[col].to_numpy(float), rcond=None)[0] if len(train) else [1.0, 0.0, 0.0]
        )
        cost = train.groupby("task", observed=True)["cost"].agg(["min", "max"])
        info = {
            "trained_users": len(rg.users) if rg.has_users else 0,
            "trained_llms": len(rg.llms),
            "prior_strength": DEFAULT_PRIOR_STRENGTH,
            "reward_definition": {
                "kind": "linear",
                "performance": float(coef[0]),
                "cost_norm": float(coef[1]),
                "intercept": float(coef[2]),
                "cost_range": {str(t): [float(r["min"]), float(r["max"])] for t, r in cost.iterrows()},
                "note": "population least squares over the train rows; an interaction with "
                "'reward' uses it as given",
            },
        }
        return adapt, info

    @staticmethod
    def _fit_task_classifier(table, emb: dict, tasks: list[str]):
        """The task classifiers of the training queries, their L2 chosen on the val queries:
        ``(embedding-only classifier, its info, text classifier, its info)``."""
        from proute.router.task_inference import TaskClassifier, TextTaskClassifier

        index = {t: i for i, t in enumerate(tasks)}
        parts, texts = {}, {}
        for split in ("train", "val"):
            q = table.loc[table["split"] == split].drop_duplicates("query_id")
            q = q[q["task"].astype(str).isin(index)]
            x = np.stack([emb[i] for i in q["query_id"]]) if len(q) else None
            parts[split] = (x, [index[str(t)] for t in q["task"]])
            texts[split] = [str(t) for t in q["query"]]
        (xt, yt), (xv, yv) = parts["train"], parts["val"]
        classifier, info = TaskClassifier.fit(xt, yt, len(tasks), xv, yv)
        text_classifier, text_info = TextTaskClassifier.fit(
            xt, texts["train"], yt, len(tasks), xv, texts["val"], yv
        )
        return classifier, info, text_classifier, text_info

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
        with self._state_lock:
            context = self.context
        ctx = {k: v.detach().cpu().contiguous() for k, v in context.state_tensors().items()}
        ctx["task_centroids"] = self.task_centroids.detach().cpu().contiguous()
        for clf in (self.task_classifier, self.text_task_classifier):
            if clf is not None:
                ctx.update({k: v.detach().cpu().contiguous() for k, v in clf.tensors().items()})
        with self._state_lock:  # a consistent snapshot of what add_user / add_llm changed
            ctx.update({k: v.detach().cpu().contiguous() for k, v in self._adapt.items()})
            for i, (uid, ev) in enumerate(sorted(self._evidence.items())):
                ctx.update({k: v.detach().cpu().contiguous() for k, v in ev.tensors(f"evidence.{i}").items()})
                if uid in self._embedding:
                    ctx[f"evidence.{i}.embedding"] = self._embedding[uid].detach().cpu().contiguous()
            meta_now = dict(self.meta)
            if self._evidence:
                meta_now["adapt"] = {**meta_now.get("adapt", {}), "evidence_users": sorted(self._evidence)}
        blobs = {"weights.safetensors": save(weights), "context.safetensors": save(ctx)}
        # Hash what a reader will parse: the metadata after its JSON round trip (the id
        # lists include the users and LLMs added since training: their hashes are new).
        meta = json.loads(json.dumps(meta_now, default=str))
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
        unknown_user: str = "error",
    ) -> "PersonalizedRouter":
        """Load a router directory; needs nothing else (not the data, not the configs).

        ``encoder`` (optional) replaces the text encoder named in ``router.json``; it must
        produce embeddings of the same size. The sha256 hashes in ``router.json`` are checked
        (a mismatch raises :class:`RouterFormatError`); ``verify=False`` loads a deliberately
        edited router anyway, with a :class:`RouterIntegrityWarning`. ``unknown_user``: the
        policy for user ids the router does not know (:attr:`unknown_user`).
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
        from proute.router.task_inference import TaskClassifier, TextTaskClassifier

        classifier = TaskClassifier.from_tensors(ctx)  # routers exported before it: None
        text_spec = (meta.get("task_inference") or {}).get("text", {}).get("features")
        try:  # routers exported before it: None
            text_classifier = TextTaskClassifier.from_tensors(ctx, text_spec)
        except (KeyError, ValueError) as exc:
            raise RouterFormatError(
                f"{path}: the text task classifier in context.safetensors and router.json field "
                f"'task_inference' do not agree ({exc})"
            ) from None
        adapt = {k: ctx.pop(k) for k in list(ctx) if k.startswith("adapt.")}
        from proute.router.adapt import Evidence

        evidence, embedding = {}, {}
        for i, uid in enumerate(meta.get("adapt", {}).get("evidence_users", [])):
            try:
                evidence[uid] = Evidence.from_tensors(ctx, f"evidence.{i}")
            except KeyError as exc:
                raise RouterFormatError(f"{path / 'context.safetensors'}: missing {exc.args[0]}") from None
            if f"evidence.{i}.embedding" in ctx:
                embedding[uid] = ctx[f"evidence.{i}.embedding"]
        ctx = {k: v for k, v in ctx.items() if not k.startswith("evidence.")}
        router = cls(
            model,
            ContextCache.from_tensors(ctx),
            meta,
            centroids,
            encoder,
            device,
            classifier,
            unknown_user=unknown_user,
            adapt=adapt,
            evidence=evidence,
            text_task_classifier=text_classifier,
        )
        router._embedding = {k: v.to(router.device) for k, v in embedding.items()}
        return router

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
        if not isinstance(request.get("explore", False), bool):
            return ValueError(f"field 'explore' must be true or false; got {request['explore']!r}")
        return _query_error(request["query"]) or self._ids_error(request["user_id"], request.get("task"))

    def _ids_error(self, user_id: Any, task: Any) -> KeyError | None:
        if user_id is None or (str(user_id) not in self._user_index and self._unknown_user_policy == "error"):
            return KeyError(self._unknown_user(user_id))
        if task is not None and (not isinstance(task, str) or task not in self._task_index):
            return KeyError(f"unknown task {task!r}; known tasks: {self.tasks}")
        return None

    def task_proba(self, query_emb: torch.Tensor, texts: Sequence[str] | None = None) -> torch.Tensor:
        """``[n, num_tasks]`` task probabilities of query embeddings: with the query texts,
        the text classifier (embedding + hashed n-grams, :mod:`proute.router.task_inference`);
        without them (or for routers exported before it), the embedding-only classifier;
        for routers exported before that, one-hot at the nearest training-task centroid."""
        if texts is not None and self.text_task_classifier is not None:
            return self.text_task_classifier.proba(query_emb, texts)
        if self.task_classifier is not None:
            return self.task_classifier.proba(query_emb)
        q = torch.nn.functional.normalize(query_emb, dim=1)
        nearest = (q @ self.task_centroids.T).argmax(dim=1)
        return torch.nn.functional.one_hot(nearest, len(self.tasks)).float()

    def infer_tasks(self, query_emb: torch.Tensor, texts: Sequence[str] | None = None) -> torch.Tensor:
        """The most probable task of each query (:meth:`task_proba`)."""
        return self.task_proba(query_emb, texts).argmax(dim=1)

    def score(self, *args, **kwargs) -> tuple[np.ndarray, list[str]]:
        """Logits ``[n, num_llms]`` (columns :attr:`llms`) and the task used per query
        (see :meth:`_score` for the arguments)."""
        logits, tasks, _ = self._score(*args, **kwargs)
        return logits, tasks

    @torch.no_grad()
    def _score(
        self,
        queries: Sequence[str] | None,
        user_ids: Sequence,
        tasks: Sequence[str | None] | None = None,
        query_emb: np.ndarray | torch.Tensor | None = None,
        task_mode: str | None = None,
    ) -> tuple[np.ndarray, list[str], list[str]]:
        """Logits ``[n, num_llms]``, the task used per query and the LLM names of the
        columns (one consistent snapshot: an LLM added meanwhile is in both or neither).

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
        context, user_idx, llms = self._snapshot(user_ids)
        proba = self.task_proba(q, queries)  # the texts, when given, sharpen task inference
        task_idx = proba.argmax(dim=1)
        given = torch.tensor([t is not None for t in tasks], dtype=torch.bool, device=self.device)
        for i, t in enumerate(tasks):
            if t is not None:
                task_idx[i] = self._task_index[t]
        # The model ignores user/task indices when its graph has no such nodes.
        logits = self.model.score_new(context, q, user_idx, task_idx)
        if mode == "soft" and not bool(given.all()) and len(self.tasks) > 1:
            free = (~given).nonzero().squeeze(1)
            mixed = torch.zeros_like(logits[free])
            for k in range(len(self.tasks)):
                task_k = torch.full_like(free, k)
                mixed += proba[free, k : k + 1] * self.model.score_new(
                    context, q[free], user_idx[free], task_k
                )
            logits[free] = mixed
        return logits.float().cpu().numpy(), [self.tasks[i] for i in task_idx.tolist()], llms

    def route_batch(self, requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Route ``[{"query": str, "user_id": id, "task": optional, "explore": optional}, ...]``.

        ``"explore": true`` draws the LLM from the softmax of the scores instead of taking
        the best (``greedy_model_name`` is then the best): what lets bandit
        :meth:`feedback` improve a user, who would otherwise only ever report on the LLM
        the router already prefers (experiments/new_users/README.md).

        A bad request raises before anything is routed: ``ValueError`` (malformed) or
        ``KeyError`` (unknown user or task), its message starting ``request <index>: ``.
        """
        for i, r in enumerate(requests):
            error = self.request_error(r)
            if error is not None:
                raise type(error)(f"request {i}: {error.args[0]}")
        scores, tasks, llms = self._score(
            [r["query"] for r in requests],
            [r["user_id"] for r in requests],
            [r.get("task") for r in requests],
        )
        out = []
        rng = np.random.default_rng() if any(r.get("explore") for r in requests) else None
        for r, s, t in zip(requests, scores, tasks, strict=True):
            d = {
                "model_name": llms[int(s.argmax())],
                "scores": dict(zip(llms, map(float, s), strict=True)),
                "user_id": r["user_id"],
                "task": t,
            }
            if r.get("explore"):
                p = np.exp(s - s.max())
                d["greedy_model_name"] = d["model_name"]
                d["model_name"] = llms[int(rng.choice(len(llms), p=p / p.sum()))]
            out.append(d)
        return out

    def route_single(self, request: dict[str, Any]) -> dict[str, Any]:
        """Route one ``{"query": str, "user_id": id[, "task": str]}``."""
        return self.route_batch([request])[0]

    # ------------------------------------------------------------------ adaptation
    # New users, feedback and new LLMs without retraining: the method is in proute.router.adapt.

    @property
    def unknown_user(self) -> str:
        """What routing does with a user id the router does not know: ``"error"`` (the
        library default: ``KeyError`` naming the user) or ``"average"`` (route it as the
        population's average user: the state a new user gets from :meth:`add_user` with no
        interactions; the user is not added)."""
        return self._unknown_user_policy

    @unknown_user.setter
    def unknown_user(self, policy: str) -> None:
        if policy not in UNKNOWN_USER_POLICIES:
            raise ValueError(f"unknown_user={policy!r}; expected one of {list(UNKNOWN_USER_POLICIES)}")
        self._unknown_user_policy = policy

    @property
    def new_user_method(self) -> str:
        """How :meth:`add_user` (and :meth:`feedback` of an added user) places a new user:
        ``"fit"`` (default: the embedding fit and propagation of :mod:`proute.router.adapt`) or
        ``"mixture"`` (the posterior mixture of the trained users' states given the evidence,
        the population's preferences as the prior: faster, safer for users like the trained
        ones, unable to represent users unlike them). Chosen on the held-out users'
        validation pairs of scripts/new_users.py, pooled over seeds 42 and 43."""
        return str(self._adapt_info().get("new_user_method", DEFAULT_NEW_USER_METHOD))

    @new_user_method.setter
    def new_user_method(self, method: str) -> None:
        if method not in NEW_USER_METHODS:
            raise ValueError(f"new_user_method={method!r}; expected one of {list(NEW_USER_METHODS)}")
        self.meta["adapt"] = {**self._adapt_info(), "new_user_method": method}
        self._average = None

    def _snapshot(self, user_ids: Sequence):
        """``(context, user indices, llms)``, consistent with each other; unknown users (under
        the ``average`` policy) index an appended row holding the average user."""
        with self._state_lock:
            context, index, llms = self.context, self._user_index, list(self.llms)
        idx = [index.get(str(u), -1) for u in user_ids]
        if self.model.has_users and min(idx, default=0) < 0:
            avg = self.average_user_states()
            n = context.h["user"].shape[0]
            context = _with_user_rows(context, avg.unsqueeze(0))
            idx = [n if i < 0 else i for i in idx]
        return context, torch.tensor(idx, device=self.device), llms

    def _adapt_info(self) -> dict:
        return self.meta.get("adapt", {})

    def _num_trained_users(self) -> int:
        return int(self._adapt_info().get("trained_users", len(self.meta["users"])))

    @property
    def prior_strength(self) -> float:
        """Weight of the prior on a new user's embedding, in units of evidence queries."""
        return float(self._adapt_info().get("prior_strength", DEFAULT_PRIOR_STRENGTH))

    @prior_strength.setter
    def prior_strength(self, value: float) -> None:
        if not value >= 0:
            raise ValueError(f"prior_strength must be >= 0; got {value}")
        self.meta["adapt"] = {**self._adapt_info(), "prior_strength": float(value)}
        self._average = None

    def _population(self, context) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The prior of a new user under ``new_user_method="fit"``: the trained users' mean
        layer-0 state, its per-dimension variance, and their mean received message per layer
        (None for routers exported before proute.router.adapt). (Fitting the prior centre to the
        population's preferences routed k = 0 users better but left the fit unable to leave
        it on the test's opposite users: scripts/new_users.py.)"""
        n = self._num_trained_users()
        emb = context.states[0]["user"][:n]
        msg = self._adapt.get("adapt.user_msg")
        msg = None if msg is None else msg.mean(1)
        return emb.mean(0), emb.var(0, unbiased=False).clamp_min(1e-6), msg

    def _temperature(self) -> float:
        return float(self.meta.get("config", {}).get("trainer", {}).get("listwise_temperature", 0.1))

    def average_user_states(self) -> torch.Tensor:
        """``[layers + 1, d]`` states of the population's average user: a new user without
        interactions (:meth:`add_user` with none); computed once per state of the router."""
        average = self._average
        if average is None:
            from proute.router.adapt import Evidence

            with self._state_lock:
                context = self.context
            ev = Evidence.empty(int(self.meta["query_dim"]), self.model.gnn.edge_dim)
            average = self._average = self._place_user("", None, ev, context)[0]
        return average

    def _population_evidence(self, num_llms: int):
        """The population's preferences as pseudo-evidence: one query per task at the task's
        centroid, every LLM with the population's mean reward on that task."""
        from proute.router.adapt import Evidence

        pop = self._adapt["adapt.pop_reward"][:, :num_llms].float()
        ntask, nllm = pop.shape
        tasks = torch.arange(ntask).repeat_interleave(nllm)
        llms = torch.arange(nllm).repeat(ntask)
        reward = pop[tasks, llms]
        efeat = reward.unsqueeze(1).repeat(1, self.model.gnn.edge_dim)
        return Evidence(
            self.task_centroids.float().cpu(), torch.arange(ntask), tasks.clone(), llms, efeat, reward
        )

    @torch.no_grad()
    def _known_user_loglik(self, ev, context) -> torch.Tensor:
        """``[U]``: the log-likelihood of evidence ``ev`` under each trained user (its queries
        scored as that user's new queries; the listwise target of each query against the
        log-softmax over the LLMs it covers, unobserved LLMs imputed with the population's
        mean reward: :func:`proute.router.adapt.fit_target`)."""
        from proute.router.adapt import fit_target

        n_users = self._num_trained_users()
        if not ev.num_queries:
            return torch.zeros(n_users)
        num_llms = int(context.h["llm"].shape[0])
        m = ev.num_queries
        users = torch.arange(n_users).repeat_interleave(m)
        logits = self.model.score_new(
            context, ev.query_emb.repeat(n_users, 1), users, ev.task.repeat(n_users)
        ).view(n_users, m, -1)
        own = logits if self._feedback_imputation() == "own" else None
        pop = self._adapt.get("adapt.pop_reward")
        target, mask, _ = fit_target(ev, num_llms, pop, self._temperature(), own)
        logp = torch.log_softmax(logits.masked_fill(~mask, float("-inf")), dim=2)
        # -KL(target || p): the target depends on the user under "own" imputation
        logt = torch.log(target.clamp_min(1e-30))
        return (target * torch.where(mask, logp - logt, torch.zeros_like(logp))).sum((1, 2))

    def _feedback_imputation(self) -> str:
        """How the fit and the mixture fill the LLMs an interaction did not observe
        (:func:`proute.router.adapt.fit_target`): ``"own"`` (default) the user's own predicted
        reward, so bandit feedback moves only the routed LLM; ``"population"`` the
        population's mean reward on the task (dragged users unlike the population toward
        it: scripts/new_users.py)."""
        return str(self._adapt_info().get("feedback_imputation", DEFAULT_FEEDBACK_IMPUTATION))

    def _mixture_states(self, ev, context) -> torch.Tensor:
        """``[layers + 1, d]``: the posterior mixture of the trained users' states
        (``new_user_method="mixture"``; module docstring of proute.router.adapt)."""
        info = self._adapt_info()
        beta = float(info.get("mixture_sharpness", DEFAULT_MIXTURE_SHARPNESS))
        ll = self._known_user_loglik(ev, context)
        if "adapt.pop_reward" in self._adapt and len(self.tasks):
            n_llms = int(info.get("trained_llms", len(self.llms)))
            pop = self._population_evidence(n_llms)
            ll = ll + float(info.get("population_prior", 1.0)) * self._known_user_loglik(pop, context)
        w = torch.softmax(beta * ll, dim=0)
        n_users = w.shape[0]
        stacked = torch.stack(
            [s["user"][:n_users] for s in context.states] + [context.h["user"][:n_users]], 1
        )
        return (w[:, None, None] * stacked).sum(0)

    def _reward_of(self, outcome: dict, task: str) -> tuple[float, float | None, float | None]:
        """``(reward, performance, cost_norm)`` of an outcome: its ``reward`` when given, else
        the population reward definition of the router's training users on ``performance``
        and ``cost`` (router.json ``adapt.reward_definition``; without one, reward =
        performance, as for data without a reward column)."""
        perf = outcome.get("performance")
        cost = outcome.get("cost")
        definition = self._adapt_info().get("reward_definition", {})
        cost_norm = None
        if cost is not None:
            lo, hi = definition.get("cost_range", {}).get(task, [0.0, 0.0])
            cost_norm = float(np.clip((float(cost) - lo) / (hi - lo), 0.0, 1.0)) if hi > lo else 0.0
        if outcome.get("reward") is not None:
            return float(outcome["reward"]), None if perf is None else float(perf), cost_norm
        if perf is None:
            raise ValueError(f"an outcome needs 'reward' or 'performance' (and 'cost'); got {outcome!r}")
        if not definition:
            return float(perf), float(perf), cost_norm
        reward = definition["performance"] * float(perf) + definition["intercept"]
        reward += definition["cost_norm"] * (cost_norm or 0.0)
        return float(reward), float(perf), cost_norm

    def _edge_feature(self, reward: float, perf: float | None, cost_norm: float | None) -> list[float]:
        """The outcome edge feature the router was trained with (graph config)."""
        graph = self.meta.get("config", {}).get("graph", {})
        edge_dim = int(self.model.gnn.edge_dim)
        if edge_dim == 2:
            return [cost_norm or 0.0, reward if perf is None else perf]
        if graph.get("edge_feature", "reward") == "performance" and perf is not None:
            return [perf]
        return [reward]

    def _parse_interactions(self, interactions: Sequence[dict], llm_names: Sequence[str] | None = None):
        """``[(query_emb, task_idx, [llm_idx], [efeat], [reward]), ...]`` per interaction."""
        if isinstance(interactions, dict) or not isinstance(interactions, Sequence):
            raise ValueError(f"interactions must be a list of dicts; got {type(interactions).__name__}")
        llm_index = {m: i for i, m in enumerate(self.llms if llm_names is None else llm_names)}
        texts, embs = [], []
        for i, it in enumerate(interactions):
            if not isinstance(it, dict):
                raise ValueError(f"interaction {i}: expected a dict, got {it!r}")
            if "query_emb" in it and it["query_emb"] is not None:
                embs.append((i, np.asarray(it["query_emb"], dtype=np.float32).reshape(-1)))
            else:
                error = _query_error(it.get("query"))
                if error is not None:
                    raise ValueError(f"interaction {i}: {error.args[0]}")
                texts.append(i)
            if it.get("llm") not in llm_index:
                raise KeyError(
                    f"interaction {i}: unknown llm {it.get('llm')!r}; known LLMs: {list(llm_index)}"
                )
            task = it.get("task")
            if task is not None and task not in self._task_index:
                raise KeyError(f"interaction {i}: unknown task {task!r}; known tasks: {self.tasks}")
        q = np.zeros((len(interactions), int(self.meta["query_dim"])), dtype=np.float32)
        for i, e in embs:
            if e.shape[0] != q.shape[1]:
                raise ValueError(f"interaction {i}: query_emb has {e.shape[0]} values; expected {q.shape[1]}")
            q[i] = e
        if texts:
            q[texts] = self.encode([interactions[i]["query"] for i in texts])
        inferred = self.infer_tasks(torch.as_tensor(q, device=self.device)).tolist() if len(q) else []
        rows = []
        for i, it in enumerate(interactions):
            t = self._task_index[it["task"]] if it.get("task") is not None else int(inferred[i])
            reward, perf, cost_norm = self._reward_of(it, self.tasks[t])
            llm = llm_index[it["llm"]]
            rows.append((q[i], t, [llm], [self._edge_feature(reward, perf, cost_norm)], [reward]))
        return rows

    def _user_base(self, key: str, index: int | None, context):
        """``(e0, base_msg, base_n, prior_strength, scale2)`` of a user: a trained user's own
        embedding and training message (prior strength grows with its training queries); the
        population's for a new one."""
        kappa = self.prior_strength
        if index is not None and index < self._num_trained_users():
            scale2 = context.states[0]["user"][: self._num_trained_users()].var(0, unbiased=False)
            scale2 = scale2.clamp_min(1e-6)
            msg = self._adapt.get("adapt.user_msg")
            deg = self._adapt.get("adapt.user_deg")
            n = float(deg[index]) if deg is not None else 0.0
            base_msg = None if msg is None else msg[:, index]
            return context.states[0]["user"][index], base_msg, n, kappa + n, scale2
        e_pop, scale2, msg_pop = self._population(context)
        return e_pop, msg_pop, 1.0, kappa, scale2

    def _place_user(self, key: str, index: int | None, evidence, context, warm: bool = False):
        """``(states [layers + 1, d], layer-0 embedding or None)`` of a user from its evidence:
        a new user by :attr:`new_user_method`, a trained user by the embedding fit."""
        from proute.router.adapt import user_states

        trained = index is not None and index < self._num_trained_users()
        if not trained and self.new_user_method == "mixture" and "adapt.user_msg" in self._adapt:
            return self._mixture_states(evidence, context), None
        e0, base_msg, base_n, kappa, scale2 = self._user_base(key, index, context)
        temperature = self._temperature()
        start = self._embedding.get(key) if warm else None
        states, e = user_states(
            self.model,
            context,
            evidence,
            e0,
            base_msg,
            base_n,
            kappa,
            scale2,
            self._adapt.get("adapt.pop_reward"),
            temperature,
            start=start,
            imputation=self._feedback_imputation(),
        )
        return states, e

    def add_user(self, user_id, interactions: Sequence[dict] = ()) -> None:
        """Place a new user from k observed interactions, without retraining.

        Each interaction is ``{"query": str (or "query_emb": vector), "llm": name,
        "reward": float}`` or, instead of ``reward``, ``"performance"`` (and ``"cost"``),
        rewarded by the population reward definition of the router's training users
        (router.json ``adapt.reward_definition``: a per-user preference is not known to the
        router, so give ``reward`` when the user's own is known); ``"task"`` is optional
        (inferred when absent). Interactions on one query with several LLMs form one query
        node. The method is :attr:`new_user_method` (:mod:`proute.router.adapt`): by default
        (``"fit"``) the user's embedding is fitted to what it preferred, with a prior at the
        trained users' mean, and its per-layer states computed with the model's own layers
        from its interactions' query nodes and the cached task/LLM states; ``"mixture"``
        places it as the posterior mixture of the trained users given the interactions, the
        population's preferences as the prior. Nothing is retrained; the user's states are
        appended to the cached context (copy-on-write, safe beside routing threads) and saved
        with :meth:`save`. Raises ``ValueError`` for a user the router knows (use
        :meth:`feedback`).
        """
        from proute.router.adapt import Evidence

        if not self.model.has_users:
            raise ValueError("this router has no user nodes (graph=no_users): it routes every user alike")
        key = str(user_id)
        rows = self._parse_interactions(list(interactions))
        with self._update_lock:
            if key in self._user_index:
                raise ValueError(f"user_id {user_id!r} is already known; add interactions with feedback()")
            with self._state_lock:
                context = self.context
            ev = Evidence.empty(int(self.meta["query_dim"]), self.model.gnn.edge_dim)
            for q, t, llms, efeat, reward in rows:
                ev = ev.extend(q, t, llms, efeat, reward)
            states, e = self._place_user(key, None, ev, context)
            self._commit_user(key, user_id, None, states, e, ev)

    def feedback(self, user_id, query, llm: str, outcome) -> None:
        """Add one interaction to a user's state online: ``outcome`` is the reward (float) or
        ``{"performance": ..., "cost": ...}`` (or ``{"reward": ...}``); ``query`` a text or
        an embedding. A new user (under ``unknown_user="average"``, else ``KeyError``) is
        added with it. A user the router was trained with keeps its training evidence: the
        new interaction enters its message with weight ``n / (N + n)`` and its embedding's
        prior grows with its ``N`` training queries, so a known user moves little per
        event; a new user moves as in :meth:`add_user`."""
        if isinstance(outcome, dict):
            it = {"llm": llm, **outcome}
        else:
            it = {"llm": llm, "reward": float(outcome)}
        if isinstance(query, str):
            it["query"] = query
        else:
            it["query_emb"] = query
        key = str(user_id)
        with self._update_lock:
            if key not in self._user_index:
                if self._unknown_user_policy == "error":
                    raise KeyError(self._unknown_user(user_id))
                self.add_user(user_id, [it])
                return
            from proute.router.adapt import Evidence

            ((q, t, llms, efeat, reward),) = self._parse_interactions([it])
            with self._state_lock:
                context = self.context
                index = self._user_index[key]
            ev = self._evidence.get(key) or Evidence.empty(
                int(self.meta["query_dim"]), self.model.gnn.edge_dim
            )
            ev = ev.extend(q, t, llms, efeat, reward)
            states, e = self._place_user(key, index, ev, context, warm=True)
            self._commit_user(key, user_id, index, states, e, ev)

    def _commit_user(self, key, user_id, index, states, e, ev) -> None:
        """Swap in the user's new states (copy-on-write, under the state lock)."""
        with self._state_lock:
            context = self.context
            if index is None:
                self.context = _with_user_rows(context, states.unsqueeze(0))
                self.users = self.users + [_json_id(user_id)]
                self._user_index = {**self._user_index, key: len(self.users) - 1}
                self.meta = {**self.meta, "users": list(self.users)}
            else:
                self.context = _set_user_row(context, index, states)
            self._evidence = {**self._evidence, key: ev}
            if e is not None:
                self._embedding = {**self._embedding, key: e}

    def add_llm(
        self,
        name: str,
        description: str,
        input_price: float,
        output_price: float,
        family: str | None = None,
        outcomes: Sequence[dict] | None = None,
    ) -> None:
        """Add a candidate LLM without retraining; routes can pick it from then on.

        Its layer-0 state is the input projection of its description's embedding (the
        router's text encoder, as the trained LLM nodes), its message the population mean
        LLM message blended with the outcome messages of ``outcomes`` when given: a list of
        ``{"query" | "query_emb", "reward" | "performance"[, "cost"][, "user_id"][, "task"]}``
        (each becomes a query node of its user, or of the average user, with one outcome
        edge to the new LLM). Prices and family are recorded in router.json's LLM table.
        """
        from proute.router.adapt import Evidence, fit_llm_final, llm_states

        if not isinstance(name, str) or not name:
            raise ValueError(f"an LLM name must be a non-empty string; got {name!r}")
        if not isinstance(description, str) or not description.strip():
            raise ValueError(f"field 'description' must be non-empty text; got {description!r}")
        with self._update_lock:
            if name in self.llms:
                raise ValueError(f"LLM {name!r} is already a candidate of this router")
            with self._state_lock:
                context = self.context
            feat = torch.as_tensor(self.encode([description]), device=self.device)[0]
            outcomes = list(outcomes or [])
            ev, user_rows = None, None
            if outcomes:
                rows = self._parse_interactions([{**o, "llm": name} for o in outcomes], llm_names=[name])
                m = len(rows)  # one query node per outcome (two users' outcomes on one text: two nodes)
                ev = Evidence(
                    torch.as_tensor(np.stack([r[0] for r in rows])),
                    torch.tensor([r[1] for r in rows]),
                    torch.arange(m),
                    torch.zeros(m, dtype=torch.int64),
                    torch.tensor([r[3][0] for r in rows], dtype=torch.float32),
                    torch.tensor([r[4][0] for r in rows], dtype=torch.float32),
                )
                users = [o.get("user_id") for o in outcomes]
                user_rows = torch.stack([self._user_states_of(u, context) for u in users])
            msg = self._adapt.get("adapt.llm_msg")
            n = self._adapt_info().get("trained_llms", len(self.llms))
            base = None if msg is None else msg[:, :n].mean(1)
            with torch.no_grad():
                states = llm_states(self.model, context, feat, ev, user_rows, base, 1.0)
            pop = self._adapt.get("adapt.pop_reward")
            if ev is not None:
                imputed = self._reward_table_of(users, ev.task, pop)
                h = fit_llm_final(
                    self.model, context, states[-1], ev, user_rows, imputed, self._temperature()
                )
                states = torch.cat([states[:-1], h.reshape(1, -1)], 0)
            if pop is not None:
                col = pop.mean(1, keepdim=True)
                if ev is not None and ev.num_outcomes:
                    for t in ev.task.unique().tolist():
                        sel = ev.task[ev.qnode] == t
                        col[t, 0] = ev.reward[sel].mean()
            row = {
                "llm": name,
                "description": description,
                "input_price": float(input_price),
                "output_price": float(output_price),
                "family": family or "",
            }
            with self._state_lock:
                self.context = _with_llm_row(self.context, states)
                self.llms = self.llms + [name]
                meta = {**self.meta, "llms": list(self.llms)}
                meta["llm_table"] = list(meta.get("llm_table", [])) + [row]
                self.meta = meta
                if pop is not None:
                    self._adapt = {**self._adapt, "adapt.pop_reward": torch.cat([pop, col], 1)}
                self._average = None  # the average user is scored against the new LLM too

    def _reward_table_of(self, users: list, tasks: torch.Tensor, pop: torch.Tensor | None):
        """``[m, num_tasks, trained LLMs]`` per outcome: its trained user's own mean reward
        per (task, LLM) on the train rows (users weigh cost differently, so the population's
        mean misplaces a new LLM), else the population's; None without either."""
        if pop is None:
            return None
        own = self._adapt.get("adapt.user_reward")
        rows = []
        for u in users:
            i = self._user_index.get(str(u)) if u is not None else None
            use = own is not None and i is not None and i < own.shape[0]
            rows.append(own[i] if use else pop[:, : (own.shape[2] if own is not None else pop.shape[1])])
        n = min(r.shape[1] for r in rows)
        return torch.stack([r[:, :n] for r in rows])

    def _user_states_of(self, user_id, context) -> torch.Tensor:
        """``[layers + 1, d]`` states of a known user, else of the average user."""
        i = self._user_index.get(str(user_id)) if user_id is not None else None
        if i is None:
            return self.average_user_states()
        return torch.stack([s["user"][i] for s in context.states] + [context.h["user"][i]])


UNKNOWN_USER_POLICIES = ("error", "average")
NEW_USER_METHODS = ("fit", "mixture")
# Chosen on the held-out users' validation pairs of scripts/new_users.py, pooled over seeds
# 42 and 43 (experiments/new_users/): the method, the fit's prior strength (in evidence
# queries) and how sharply the mixture's posterior over trained users follows the evidence.
DEFAULT_NEW_USER_METHOD = "fit"
DEFAULT_MIXTURE_SHARPNESS = 3.0
DEFAULT_PRIOR_STRENGTH = 1.0
DEFAULT_FEEDBACK_IMPUTATION = "own"


def _with_user_rows(context, states: torch.Tensor):
    """A new ContextCache with users appended: ``states`` is ``[n, layers + 1, d]``."""
    from proute.models.model import ContextCache

    layers = [
        {**s, "user": torch.cat([s["user"], states[:, i].to(s["user"])], 0)}
        for i, s in enumerate(context.states)
    ]
    h = {**context.h, "user": torch.cat([context.h["user"], states[:, -1].to(context.h["user"])], 0)}
    return ContextCache(states=layers, h=h)


def _set_user_row(context, index: int, states: torch.Tensor):
    from proute.models.model import ContextCache

    def put(t, v):
        t = t.clone()
        t[index] = v
        return t

    layers = [{**s, "user": put(s["user"], states[i])} for i, s in enumerate(context.states)]
    return ContextCache(states=layers, h={**context.h, "user": put(context.h["user"], states[-1])})


def _with_llm_row(context, states: torch.Tensor):
    from proute.models.model import ContextCache

    layers = [{**s, "llm": torch.cat([s["llm"], states[i : i + 1]], 0)} for i, s in enumerate(context.states)]
    return ContextCache(states=layers, h={**context.h, "llm": torch.cat([context.h["llm"], states[-1:]], 0)})
