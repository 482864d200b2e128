"""Fault matrix of the exported router (proute.router): concurrent first use, edited or
damaged router directories, older formats, file permissions and bad requests.

One tiny router is trained per module (fixture ``trained`` of tests/faults/conftest.py,
real MiniLM); cases that edit it work on a copy.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from proute.router import FORMAT_VERSION, PersonalizedRouter, RouterFormatError, RouterIntegrityWarning

REBUILD = "export it again from its training run"


@pytest.fixture
def router_dir(trained, tmp_path) -> Path:
    """A private copy of the trained router directory."""
    return Path(shutil.copytree(trained, tmp_path / "router"))


def requests_for(router: PersonalizedRouter, n: int = 16) -> list[dict]:
    topics = ["algebra", "a python function", "the capital of France", "chemistry"]
    return [
        {"query": f"Question {i} about {topics[i % 4]}?", "user_id": router.users[i % len(router.users)]}
        for i in range(n)
    ]


# ---------------------------------------------------------------------- thread safety
def from_threads(n_threads: int, work) -> tuple[list, list[str]]:
    """``work(k)`` for each k < ``n_threads``, from threads released together by a barrier;
    (results by k, errors)."""
    barrier = threading.Barrier(n_threads)
    results: list = [None] * n_threads
    errors: list[str] = []

    def run(k: int) -> None:
        barrier.wait()
        try:
            results[k] = work(k)
        except Exception as exc:  # collected: a thread's exception would be lost
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def route_from_threads(router: PersonalizedRouter, requests: list[dict], n_threads: int):
    """Route ``requests`` from ``n_threads`` threads released together; (results, errors)."""
    results: list = [None] * len(requests)

    def work(k: int) -> None:
        for i in range(k, len(requests), n_threads):
            results[i] = router.route_single(requests[i])

    return results, from_threads(n_threads, work)[1]


def test_concurrent_first_use_routes_as_sequential(trained):
    """Eight threads route on a freshly loaded router at once (its text encoder is not
    loaded yet): every result equals the sequential one, ten fresh routers in a row, and
    torch still builds ordinary (non-meta) modules afterwards."""
    reference = PersonalizedRouter.load(trained)
    requests = requests_for(reference)
    expected = [reference.route_single(r) for r in requests]
    for round_ in range(10):
        results, errors = route_from_threads(PersonalizedRouter.load(trained), requests, 8)
        assert not errors, f"round {round_}: {errors[:3]}"
        assert results == expected, f"round {round_}"
    assert torch.nn.Linear(2, 2).weight.device.type == "cpu"


def test_concurrent_first_encode_of_one_text_encoder():
    """Eight threads call encode at once on one fresh TextEncoder (model not loaded yet):
    each gets the sequential result, the model loads once, and torch still builds ordinary
    (non-meta) modules afterwards; five rounds, a fresh encoder each."""
    from proute.data.text_encoders import TextEncoder

    texts = [f"Question {i} about {t}?" for i, t in enumerate(["algebra", "chemistry", "Paris"] * 3)]
    expected = TextEncoder(show_progress=False, batch_size=4).encode(texts)
    for round_ in range(5):
        encoder = TextEncoder(show_progress=False, batch_size=4)
        results, errors = from_threads(8, lambda _k, enc=encoder: enc.encode(texts))
        assert not errors, f"round {round_}: {errors[:3]}"
        for out in results:
            np.testing.assert_allclose(out, expected, atol=1e-5, err_msg=f"round {round_}")
        assert encoder.n_model_loads == 1, f"round {round_}"
        assert torch.nn.Linear(2, 2).weight.device.type == "cpu", f"round {round_}"


def test_router_and_encoders_share_one_reentrant_model_lock():
    from proute import router as router_module
    from proute.data.text_encoders import MODEL_LOAD_LOCK, TextEncoder

    assert router_module._MODEL_INIT_LOCK is MODEL_LOAD_LOCK
    with MODEL_LOAD_LOCK, MODEL_LOAD_LOCK:  # re-entrant: a load under the held lock works
        assert TextEncoder(show_progress=False).encode(["held"]).shape == (1, 384)


# ---------------------------------------------------------------------- integrity
def _edit_json(d: Path, edit) -> None:
    meta = json.loads((d / "router.json").read_text())
    edit(meta)
    (d / "router.json").write_text(json.dumps(meta, indent=2))


def _swap_first_two(key):
    def edit(meta):
        meta[key][0], meta[key][1] = meta[key][1], meta[key][0]

    return edit


def _flip_last_byte(name):
    def edit(d: Path):
        data = bytearray((d / name).read_bytes())
        data[-1] ^= 0x01  # a tensor value, same size: still a valid safetensors file
        (d / name).write_bytes(bytes(data))

    return edit


def _json_edit(edit):
    return lambda d: _edit_json(d, edit)


INTEGRITY_FAULTS = {
    "llms-reordered": (_json_edit(_swap_first_two("llms")), "router.json", "'llms'"),
    "users-reordered": (_json_edit(_swap_first_two("users")), "router.json", "'users'"),
    "tasks-reordered": (_json_edit(_swap_first_two("tasks")), "router.json", "'tasks'"),
    "llm-renamed": (
        _json_edit(lambda m: m["llms"].__setitem__(0, "gpt-5")),
        "router.json",
        "'llms'",
    ),
    "encoder-model-changed": (
        _json_edit(lambda m: m["encoder"].__setitem__("pooling", "cls")),
        "router.json",
        "'encoder'",
    ),
    "weights-value-changed": (_flip_last_byte("weights.safetensors"), "weights.safetensors", "sha256"),
    "context-value-changed": (_flip_last_byte("context.safetensors"), "context.safetensors", "sha256"),
    "integrity-block-removed": (
        _json_edit(lambda m: m.pop("integrity")),
        "router.json",
        "'integrity'",
    ),
    "file-hash-removed": (
        _json_edit(lambda m: m["integrity"]["files"].pop("weights.safetensors")),
        "router.json",
        "'integrity'",
    ),
}


@pytest.mark.parametrize("fault", list(INTEGRITY_FAULTS))
def test_edited_router_is_refused(router_dir, unchanged, fault):
    edit, file, field = INTEGRITY_FAULTS[fault]
    edit(router_dir)
    with unchanged(router_dir), pytest.raises(RouterFormatError) as err:
        PersonalizedRouter.load(router_dir)
    message = str(err.value)
    assert str(router_dir / file) in message and field in message, message
    assert REBUILD in message, message


def test_edited_router_loads_unverified_on_request(router_dir, unchanged):
    """A deliberate edit: verify=False loads it (with a warning); saving it again records
    fresh hashes, and the saved router loads verified."""
    _edit_json(router_dir, lambda m: m["llms"].__setitem__(0, "renamed-llm"))
    with unchanged(router_dir), pytest.warns(RouterIntegrityWarning, match="not verified"):
        router = PersonalizedRouter.load(router_dir, verify=False)
    assert router.llms[0] == "renamed-llm"
    router.save(router_dir)
    assert PersonalizedRouter.load(router_dir).llms[0] == "renamed-llm"


def _as_format_2(d: Path) -> None:
    _edit_json(d, lambda m: (m.pop("integrity"), m.__setitem__("format_version", 2)))


def _as_format_1(d: Path) -> None:
    """Rewrite a router in format 1: flat GNN/decoder arguments, weights named encoder.*."""
    from safetensors.torch import load_file, save_file

    weights = load_file(str(d / "weights.safetensors"))
    save_file(
        {("encoder." + k[4:] if k.startswith("gnn.") else k): v for k, v in weights.items()},
        str(d / "weights.safetensors"),
    )

    def edit(meta):
        meta.pop("integrity")
        meta["format_version"] = 1
        model = meta["model"]
        assert model["conv"] == "graphconv" and model["decoder"] == "mlp"
        model.pop("conv_kwargs")
        model.update(model.pop("decoder_kwargs"))

    _edit_json(d, edit)


@pytest.mark.parametrize("make_old", [_as_format_2, _as_format_1], ids=["format-2", "format-1"])
def test_older_formats_load_unverified_with_a_warning(trained, router_dir, unchanged, make_old):
    make_old(router_dir)
    with unchanged(router_dir), pytest.warns(RouterIntegrityWarning, match="router.json.*no integrity"):
        old = PersonalizedRouter.load(router_dir)
    router = PersonalizedRouter.load(trained)
    # The same scores as the current-format router (on given embeddings: no encoder needed).
    emb = torch.randn(4, router.meta["query_dim"], generator=torch.Generator().manual_seed(0))
    users = router.users[:4]
    assert (old.score(None, users, query_emb=emb)[0] == router.score(None, users, query_emb=emb)[0]).all()
    # Saving it again writes the current format, hashes included.
    old.save(router_dir)
    assert json.loads((router_dir / "router.json").read_text())["format_version"] == FORMAT_VERSION
    PersonalizedRouter.load(router_dir)


# ---------------------------------------------------------------------- permissions
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=["umask-022", "umask-077", "umask-002"])
@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
def test_saved_router_has_the_umask_permissions(trained, tmp_path, umask, overwrite):
    router = PersonalizedRouter.load(trained)
    target = tmp_path / "exported"
    if overwrite:
        router.save(target)
    old = os.umask(umask)
    try:
        router.save(target)
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask
    for name in ("router.json", "weights.safetensors", "context.safetensors"):
        assert (target / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no temporary left


# ---------------------------------------------------------------------- bad requests
GOOD = {"query": "What is 2 + 2?", "user_id": 0}
BAD_REQUESTS = {
    "empty-query": ({"query": "", "user_id": 0}, ValueError, "field 'query' is empty"),
    "whitespace-query": ({"query": " \n\t", "user_id": 0}, ValueError, "field 'query' is empty"),
    "null-query": ({"query": None, "user_id": 0}, ValueError, "field 'query' must be a string"),
    "number-query": ({"query": 42, "user_id": 0}, ValueError, "field 'query' must be a string"),
    "missing-query": ({"user_id": 0}, ValueError, "missing field 'query'"),
    "missing-user": ({"query": "hi"}, ValueError, "missing field 'user_id'"),
    "unknown-user": ({"query": "hi", "user_id": "x"}, KeyError, "unknown user_id 'x'"),
    # proute.data.ids.user_key: a value that is not a user id is malformed, not unknown
    "null-user": ({"query": "hi", "user_id": None}, ValueError, "field 'user_id': expected a user id"),
    "bool-user": ({"query": "hi", "user_id": True}, ValueError, "field 'user_id': expected a user id"),
    "list-user": ({"query": "hi", "user_id": [0]}, ValueError, "field 'user_id': expected a user id"),
    "unknown-task": ({"query": "hi", "user_id": 0, "task": "poetry"}, KeyError, "unknown task 'poetry'"),
    "non-string-task": ({"query": "hi", "user_id": 0, "task": 3}, KeyError, "unknown task 3"),
    "not-a-dict": (["hi", 0], ValueError, "expected a dict"),
}


@pytest.mark.parametrize("fault", list(BAD_REQUESTS))
def test_bad_request_names_its_index_and_field(trained, fault):
    bad, error, message = BAD_REQUESTS[fault]
    router = PersonalizedRouter.load(trained)
    with pytest.raises(error) as err:
        router.route_batch([GOOD, GOOD, GOOD, bad, GOOD])
    text = err.value.args[0]
    assert text.startswith("request 3: ") and message in text, text
    assert router._encoder is None  # refused before any text was encoded
    with pytest.raises(error, match="request 0: "):
        router.route_single(bad)
