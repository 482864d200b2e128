"""Fault matrix of the exported router (proute.router): concurrent first use and bad requests.

One tiny router is trained per module (``debug=default`` on the fixtures, real MiniLM);
cases that edit it work on a copy.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from proute.router import PersonalizedRouter

FIXTURES = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir) -> Path:
    """The router directory of one tiny training run (read-only: copy it to edit it)."""
    from proute.config import compose
    from proute.train import run

    run_dir = tmp_path_factory.mktemp("run")
    overrides = [
        "debug=default",
        f"paths.data_dir={FIXTURES}",
        f"paths.cache_dir={cache_dir}",
        f"hydra.run.dir={run_dir}",
        "train_epoch=1",
    ]
    run(compose("train", overrides), run_dir)
    return run_dir / "router"


def requests_for(router: PersonalizedRouter, n: int = 16) -> list[dict]:
    topics = ["algebra", "a python function", "the capital of France", "chemistry"]
    return [
        {"query": f"Question {i} about {topics[i % 4]}?", "user_id": router.users[i % len(router.users)]}
        for i in range(n)
    ]


# ---------------------------------------------------------------------- thread safety
def route_from_threads(router: PersonalizedRouter, requests: list[dict], n_threads: int):
    """Route ``requests`` from ``n_threads`` threads released together; (results, errors)."""
    barrier = threading.Barrier(n_threads)
    results: list = [None] * len(requests)
    errors: list[str] = []

    def work(k: int) -> None:
        barrier.wait()
        try:
            for i in range(k, len(requests), n_threads):
                results[i] = router.route_single(requests[i])
        except Exception as exc:  # collected: a thread's exception would be lost
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


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
    "null-user": ({"query": "hi", "user_id": None}, KeyError, "unknown user_id None"),
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
