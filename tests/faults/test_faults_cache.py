"""Fault matrix of the on-disk embedding cache (proute.data.embedding_cache): data files
changed in place, hashes missing or wrong, older and newer formats.

No model is needed: the cache is filled with random vectors under the key of the default
MiniLM encoder, so a fully cached TextEncoder.encode reads it without loading weights.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from proute.data.embedding_cache import EmbeddingCache, EmbeddingCacheError, EmbeddingCacheWarning
from proute.data.text_encoders import TextEncoder

TEXTS = [f"cached text number {i}" for i in range(6)]
REBUILD = "Delete the folder"


@pytest.fixture
def cache_root(tmp_path) -> Path:
    """A cache root holding one committed folder (the MiniLM key) with the six TEXTS."""
    root = tmp_path / "embeddings"
    cache = EmbeddingCache(root, TextEncoder(cache_dir=root).key)
    rng = np.random.default_rng(0)
    cache.add(TEXTS, rng.standard_normal((len(TEXTS), 8)).astype(np.float32))
    return root


def folder_of(root: Path) -> Path:
    (folder,) = [p for p in root.iterdir() if p.is_dir()]
    return folder


def meta_of(root: Path) -> dict:
    return json.loads((folder_of(root) / "meta.json").read_text())


def data_file(root: Path, kind: str) -> Path:
    return folder_of(root) / meta_of(root)[f"{kind}_file"]


def fresh(root: Path) -> EmbeddingCache:
    return EmbeddingCache(root, TextEncoder(cache_dir=root).key)


def _edit_npy(kind: str, edit):
    def fault(root: Path) -> Path:
        path = data_file(root, kind)
        array = np.load(path)
        edit(array)
        np.save(path, array)  # same name, same shape and dtype: only the values differ
        return path

    return fault


def _swap_rows(a):
    a[[0, 1]] = a[[1, 0]]


def _flip_last_byte(kind: str):
    def fault(root: Path) -> Path:
        path = data_file(root, kind)
        data = bytearray(path.read_bytes())
        data[-1] ^= 0x01
        path.write_bytes(bytes(data))
        return path

    return fault


def _edit_meta(edit):
    def fault(root: Path) -> Path:
        path = folder_of(root) / "meta.json"
        meta = json.loads(path.read_text())
        edit(meta)
        path.write_text(json.dumps(meta))
        return path

    return fault


def _wrong_hash(meta):
    name = meta["embeddings_file"]
    meta["sha256"][name] = "0" * 64


FAULTS = {
    "embedding-value-changed": (_edit_npy("embeddings", lambda a: a.__setitem__((2, 3), 0.5)), None),
    "embedding-rows-swapped": (_edit_npy("embeddings", _swap_rows), None),
    "embedding-byte-flipped": (_flip_last_byte("embeddings"), None),
    "keys-rows-swapped": (_edit_npy("keys", _swap_rows), None),
    "keys-byte-flipped": (_flip_last_byte("keys"), None),
    "sha256-field-removed": (_edit_meta(lambda m: m.pop("sha256")), "'sha256'"),
    "sha256-entry-removed": (_edit_meta(lambda m: m["sha256"].pop(m["keys_file"])), "'sha256'"),
    "sha256-wrong": (_edit_meta(_wrong_hash), "sha256"),
    "newer-format": (_edit_meta(lambda m: m.__setitem__("format", 99)), "format 99"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_edited_cache_is_refused(cache_root, unchanged, fault):
    make_fault, field = FAULTS[fault]
    bad_file = make_fault(cache_root)
    with unchanged(cache_root), pytest.raises(EmbeddingCacheError) as err:
        fresh(cache_root).get(TEXTS)
    message = str(err.value)
    assert str(bad_file) in message and REBUILD in message and str(folder_of(cache_root)) in message
    if field is not None:
        assert field in message, message


def test_edited_cache_is_refused_by_the_text_encoder(cache_root, unchanged):
    """The path a training run takes: a fully cached encode reads the edited file."""
    bad_file = _edit_npy("embeddings", lambda a: a.__setitem__((0, 0), 9.0))(cache_root)
    encoder = TextEncoder(cache_dir=cache_root)
    with unchanged(cache_root), pytest.raises(EmbeddingCacheError, match="sha256") as err:
        encoder.encode(TEXTS[:2])
    assert str(bad_file) in str(err.value)
    assert not encoder.is_loaded  # refused before any model work


def test_intact_cache_reads_back_without_warnings(cache_root):
    expected = fresh(cache_root).get(TEXTS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(fresh(cache_root).get(TEXTS), expected)


def test_format_1_cache_is_read_unverified_then_gains_hashes(cache_root, unchanged):
    """A cache written before the hashes: read with one warning per folder, and the next
    write records the hashes (so in-place edits are caught from then on)."""

    def as_format_1(meta):
        meta.pop("sha256")
        meta["format"] = 1

    _edit_meta(as_format_1)(cache_root)
    expected = np.load(data_file(cache_root, "embeddings"))
    with unchanged(cache_root):
        with pytest.warns(EmbeddingCacheWarning, match="no sha256"):
            np.testing.assert_array_equal(fresh(cache_root).get(TEXTS), expected)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per folder, not per read
            np.testing.assert_array_equal(fresh(cache_root).get(TEXTS), expected)
    cache = fresh(cache_root)
    cache.add(["one more text"], np.ones((1, 8), dtype=np.float32))
    assert meta_of(cache_root)["format"] == 2 and len(meta_of(cache_root)["sha256"]) == 2
    bad_file = _edit_npy("embeddings", lambda a: a.__setitem__((1, 1), 7.0))(cache_root)
    with pytest.raises(EmbeddingCacheError, match="sha256") as err:
        fresh(cache_root).get(TEXTS)
    assert str(bad_file) in str(err.value)
