"""``proute serve`` on loopback: routing, forwarding to a stub upstream (plain and
streaming), the decision in body and headers, OpenAI-style errors (400/422/404/502/501),
failing and stalling upstreams beside healthy requests, micro-batching, the ``openai``
client and the upstreams file (the Gradio chat page: tests/test_chat.py, with these fixtures).

Every server listens on 127.0.0.1 (uvicorn in a thread, tests/serving_fixtures.py's
``ServerThread``; the stub upstream is proute.serving.stub_upstream); the router is one tiny
trained router per module.
"""

import asyncio
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx  # noqa: E402

from conftest import ROOT  # noqa: E402
from proute.serving.app import create_app, unknown_user_policy  # noqa: E402
from proute.serving.loadtest import free_port  # noqa: E402
from proute.serving.stub_upstream import stub_app  # noqa: E402
from proute.serving.upstreams import (  # noqa: E402
    Upstream,
    UpstreamsError,
    UpstreamsWarning,
    load_upstreams,
    request_headers,
)
from serving_fixtures import KEY_ENV, TIMEOUT, ServerThread, train_tiny_router, write_upstreams  # noqa: E402


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory, cache_dir) -> Path:
    return train_tiny_router(tmp_path_factory, cache_dir)


@pytest.fixture(scope="module")
def router(router_dir):
    from proute.router import PersonalizedRouter

    return PersonalizedRouter.load(router_dir)


@pytest.fixture(scope="module")
def stub():
    with ServerThread(stub_app(stall_s=6.0)) as server:
        yield server


@pytest.fixture(scope="module")
def upstreams(stub, router, tmp_path_factory):
    os.environ[KEY_ENV] = "test-key"
    path = write_upstreams(tmp_path_factory.mktemp("up") / "upstreams.yaml", stub.url + "/v1", router.llms)
    return load_upstreams(path, router.llms)


@pytest.fixture(scope="module")
def server(router, upstreams):
    """proute serve under the ``error`` policy: unknown users are 404."""
    app = create_app(router, upstreams, unknown_user="error", max_wait_ms=5.0)
    with ServerThread(app) as s:
        yield s


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def chat(user="0", content="Hello there", **extra):
    return {"model": "proute", "user": user, "messages": [{"role": "user", "content": content}], **extra}


def assert_error(resp, status, param=None, contains=""):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if param is not None:
        assert err["param"] == param, err
    assert contains in err["message"], err
    return err


class Bare:
    """A router as before feedback/add_user/unknown-user policies: routing only."""

    def __init__(self, router):
        self._r = router
        self.llms, self.users, self.tasks = router.llms, router.users, router.tasks

    def encode(self, texts):
        return self._r.encode(texts)

    def request_error(self, request):
        return self._r.request_error(request)

    def route_batch(self, requests):
        return self._r.route_batch(requests)


# ---------------------------------------------------------------------------- routing
def test_health_and_models(client, router):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["llms"] == list(router.llms)
    assert health["unknown_user"] == "error" and set(health["upstreams"]) == set(router.llms)
    assert "key" not in json.dumps(health["upstreams"]).replace("api_key_env", "")
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "proute"
    assert models["data"][0]["llms"] == list(router.llms)


def test_route_single_and_batch(client, router):
    one = client.post("/v1/route", json={"query": "What is 2 + 2?", "user": 0})
    assert one.status_code == 200, one.text
    d = one.json()
    assert d["model_name"] in router.llms and d["score"] == d["scores"][d["model_name"]]
    assert d["model_name"] == max(d["scores"], key=d["scores"].get) and d["user_id"] == 0
    expected = router.route_single({"query": "What is 2 + 2?", "user_id": 0})
    assert d["model_name"] == expected["model_name"] and d["task"] == expected["task"]

    items = [
        {"query": "What is 2 + 2?", "user_id": 0},
        {"query": "  ", "user": 1},
        {"query": "Capital of France?", "user": "no-such-user"},
        5,
        {"query": "Capital of France?", "user": 1, "task": "no-such-task"},
        {"query": "Capital of France?", "user": "1"},
    ]
    results = client.post("/v1/route", json={"requests": items}).json()["results"]
    assert len(results) == len(items)
    assert results[0]["model_name"] == d["model_name"]
    assert results[1]["status"] == 422 and results[1]["error"]["param"] == "requests[1].query"
    assert results[2]["status"] == 404 and results[2]["error"]["code"] == "user_not_found"
    assert results[3]["status"] == 400 and results[3]["error"]["param"] == "requests[3]"
    assert results[4]["status"] == 422 and results[4]["error"]["param"] == "requests[4].task"
    assert results[5]["model_name"] in router.llms  # "1" and 1 are one user


def test_explore_draws_from_the_scores(client, router):
    """``explore: true`` samples the LLM from the softmax of the scores (what bandit feedback
    needs) and names the greedy choice; without it routing stays the argmax."""
    body = {"query": "What is 2 + 2?", "user": 0}
    greedy = client.post("/v1/route", json=body).json()
    picks = [client.post("/v1/route", json={**body, "explore": True}).json() for _ in range(60)]
    assert all(p["greedy_model_name"] == greedy["model_name"] for p in picks)
    assert all(p["scores"] == greedy["scores"] for p in picks)
    s = np.array(list(greedy["scores"].values()))
    prob = dict(zip(greedy["scores"], np.exp(s - s.max()) / np.exp(s - s.max()).sum(), strict=True))
    counts = {m: sum(p["model_name"] == m for p in picks) for m in prob}
    # every pick has real probability, and the spread follows the softmax
    assert all(prob[p["model_name"]] > 1e-4 for p in picks)
    if prob[greedy["model_name"]] < 0.9:
        assert len({p["model_name"] for p in picks}) > 1, (prob, counts)
    top = greedy["model_name"]
    assert abs(counts[top] / 60 - prob[top]) < 4 * np.sqrt(prob[top] * (1 - prob[top]) / 60) + 0.02
    assert all(client.post("/v1/route", json=body).json()["model_name"] == top for _ in range(5))


@pytest.mark.parametrize(
    "body, status, param",
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (json.dumps({"user": 0}).encode(), 400, "query"),
        (json.dumps({"query": "hi"}).encode(), 400, "user"),
        (json.dumps({"query": "", "user": 0}).encode(), 422, "query"),
        (json.dumps({"query": 7, "user": 0}).encode(), 422, "query"),
        (json.dumps({"query": "hi", "user": 0, "task": "nope"}).encode(), 422, "task"),
        (json.dumps({"query": "hi", "user": 12345}).encode(), 404, "user"),
        (json.dumps({"query": "hi", "user_id": 12345}).encode(), 404, "user_id"),
        (json.dumps({"requests": []}).encode(), 422, "requests"),
        (json.dumps({"query": "hi", "user": 0, "explore": "yes"}).encode(), 422, "explore"),
    ],
    ids=[
        "not-json",
        "not-object",
        "no-query",
        "no-user",
        "empty-query",
        "number-query",
        "unknown-task",
        "unknown-user",
        "unknown-user_id",
        "empty-batch",
        "explore-not-bool",
    ],
)
def test_route_errors(client, body, status, param):
    assert_error(client.post("/v1/route", content=body), status, param)


def test_user_ids_follow_the_one_rule(client):
    """proute.data.ids.user_key over HTTP: 3, "3" and 3.0 are one user (the number answered
    back as the int 3); " 3 " is "3"."""
    alone = client.post("/v1/route", json={"query": "What is 2 + 2?", "user": 3}).json()
    for user in (3.0, "3", " 3 "):
        resp = client.post("/v1/route", json={"query": "What is 2 + 2?", "user": user})
        assert resp.status_code == 200, resp.text
        d = resp.json()
        assert d["scores"] == alone["scores"] and d["model_name"] == alone["model_name"]
        assert d["user_id"] == (3 if user == 3.0 else "3")
    resp = client.post("/v1/chat/completions", json=chat(3.0, "What is 2 + 2?"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["proute"]["model_name"] == alone["model_name"]
    assert resp.headers["x-proute-user"] == "3"


@pytest.mark.parametrize("user", [[1], True, "", "  ", {"id": 1}, 2.5], ids=repr)
@pytest.mark.parametrize("field", ["user", "user_id"])
def test_bad_user_ids_are_422_naming_the_field(client, router, user, field):
    err = assert_error(client.post("/v1/route", json={"query": "hi", field: user}), 422, field, "user id")
    assert err["code"] == "invalid_value"
    items = [{"query": "hi", field: user}, {"query": "hi", "user": 0}]
    batch = client.post("/v1/route", json={"requests": items})
    results = batch.json()["results"]
    assert results[0]["status"] == 422 and results[0]["error"]["param"] == f"requests[0].{field}"
    assert results[1]["model_name"] in router.llms
    if field == "user":
        assert_error(client.post("/v1/chat/completions", json=chat(user)), 422, "user", "user id")
    fb = {field: user, "query": "hi", "llm": router.llms[0], "outcome": 1.0}
    assert_error(client.post("/v1/feedback", json=fb), 422, field, "user id")
    assert_error(client.post("/v1/users", json={field: user}), 422, field, "user id")


def test_chat_forwards_unknown_fields_as_sent(client, stub):
    """OpenAI's other fields (and any unknown one) reach the upstream unchanged; only
    ``model`` (the upstream's name) and proute's ``task`` differ."""
    body = chat(" 0 ", "Hi", temperature=0.25, max_tokens=7, x_vendor={"a": [1, 2]}, task=None)
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    sent = stub.server.config.app.state.calls[-1]["body"]
    expected = {k: v for k, v in body.items() if k != "task"}
    assert sent == {**expected, "model": sent["model"]} and sent["user"] == " 0 "


def test_unknown_route_is_openai_style(client):
    assert_error(client.get("/v1/nothing"), 404)


# ---------------------------------------------------------------------------- forwarding
def test_chat_completion_forwards_and_reports(client, stub, router):
    before = len(stub.server.config.app.state.calls)
    resp = client.post("/v1/chat/completions", json=chat("0", "What is the capital of France?", task=None))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    llm = body["proute"]["model_name"]
    assert llm in router.llms
    assert body["choices"][0]["message"]["content"] == f"stub stub-{llm}: What is the capital of France?"
    assert body["model"] == f"stub-{llm}" and body["proute"]["upstream"]["model"] == f"stub-{llm}"
    assert resp.headers["x-proute-model"] == llm and resp.headers["x-proute-user"] == "0"
    assert float(resp.headers["x-proute-score"]) == pytest.approx(body["proute"]["score"], rel=1e-5)
    assert resp.headers["x-proute-task"] == body["proute"]["task"]
    call = stub.server.config.app.state.calls[before]
    assert call["model"] == f"stub-{llm}" and call["auth"] == "Bearer test-key"
    assert "task" not in call["body"] and call["body"]["user"] == "0"


def test_chat_routes_the_last_user_message(client):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": [{"type": "text", "text": "Write a function that reverses a string"}]},
    ]
    body = {"model": "proute", "user": "1", "messages": messages}
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    direct = client.post("/v1/route", json={"query": "Write a function that reverses a string", "user": "1"})
    assert resp.json()["proute"]["model_name"] == direct.json()["model_name"]


def test_chat_streaming_passes_events_through(client):
    with client.stream(
        "POST", "/v1/chat/completions", json=chat("2", "tell me a story", stream=True)
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        llm = resp.headers["x-proute-model"]
        lines = [x for x in resp.iter_lines() if x.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    text = "".join(json.loads(x[6:])["choices"][0]["delta"]["content"] for x in lines[:-1])
    assert text == f"stub stub-{llm}: tell me a story"


@pytest.mark.parametrize(
    "body, status, param, contains",
    [
        ({"user": "0", "messages": [{"role": "user", "content": "hi"}]}, 400, "model", "model"),
        (chat(model="gpt-4o"), 422, "model", "proute"),
        ({"model": "proute", "user": "0"}, 400, "messages", "messages"),
        ({"model": "proute", "messages": [{"role": "user", "content": "hi"}]}, 400, "user", "user"),
        (chat(user="no-such-user"), 404, "user", "unknown user"),
        ({"model": "proute", "user": "0", "messages": []}, 422, "messages", "non-empty"),
        (
            {"model": "proute", "user": "0", "messages": [{"role": "system", "content": "x"}]},
            422,
            "messages",
            "role 'user'",
        ),
        (
            {"model": "proute", "user": "0", "messages": [{"role": "user", "content": 3}]},
            422,
            "messages[0].content",
            "",
        ),
        (chat(stream="yes"), 422, "stream", "stream"),
        (chat(content=" "), 422, "query", "empty"),
    ],
    ids=[
        "no-model",
        "other-model",
        "no-messages",
        "no-user",
        "unknown-user",
        "empty-messages",
        "no-user-message",
        "bad-content",
        "bad-stream",
        "blank-message",
    ],
)
def test_chat_request_errors(client, body, status, param, contains):
    assert_error(client.post("/v1/chat/completions", json=body), status, param, contains)


@pytest.mark.parametrize(
    "content, code, contains",
    [
        ("please STUB_FAIL now", "upstream_error", "HTTP 500: the stub was told to fail"),
        ("please STUB_BADJSON now", "upstream_error", "not a JSON object"),
        ("please STUB_STALL now", "upstream_timeout", f"timeout of {TIMEOUT:g} s"),
    ],
    ids=["fails", "bad-json", "stalls"],
)
def test_upstream_failures_are_502_naming_it(client, content, code, contains):
    resp = client.post("/v1/chat/completions", json=chat("0", content))
    err = assert_error(resp, 502, None, contains)
    assert err["code"] == code and err["type"] == "upstream_error"
    assert "upstream '" in err["message"] and "127.0.0.1" in err["message"]


def test_unreachable_upstream_is_502(router, tmp_path):
    dead = write_upstreams(tmp_path / "u.yaml", f"http://127.0.0.1:{free_port()}/v1", router.llms)
    app = create_app(router, load_upstreams(dead, router.llms), unknown_user="error", warmup=False)
    with ServerThread(app) as s:
        resp = httpx.post(s.url + "/v1/chat/completions", json=chat(), timeout=30)
    assert_error(resp, 502, None, "request failed (ConnectError")


def test_stream_broken_midway_ends_with_an_error_event(client):
    with client.stream("POST", "/v1/chat/completions", json=chat("0", "go STUB_BREAK", stream=True)) as resp:
        assert resp.status_code == 200
        lines = [x for x in resp.iter_lines() if x.startswith("data: ")]
    assert "choices" in json.loads(lines[0][6:])
    err = json.loads(lines[-1][6:])["error"]
    assert err["type"] == "upstream_error" and "stream broken" in err["message"]


def test_no_upstreams_is_503_and_route_still_works(router):
    app = create_app(router, None, unknown_user="error", warmup=False)
    with ServerThread(app) as s:
        assert_error(
            httpx.post(s.url + "/v1/chat/completions", json=chat(), timeout=30), 503, None, "--upstreams"
        )
        assert httpx.post(s.url + "/v1/route", json={"query": "hi", "user": 0}, timeout=30).status_code == 200


def test_failing_requests_never_lose_others_in_flight(server):
    """40 requests at once: healthy ones, upstream failures, stalls, bad requests."""
    kinds = ["ok", "STUB_FAIL", "ok", "STUB_STALL", "ok", "bad", "ok", "unknown"] * 5

    async def one(i, kind, http):
        if kind == "bad":
            return kind, await http.post("/v1/chat/completions", json=chat(str(i % 3), ""))
        if kind == "unknown":
            return kind, await http.post("/v1/chat/completions", json=chat("nobody", f"question {i}"))
        text = f"question {i}" + ("" if kind == "ok" else f" {kind}")
        return kind, await http.post("/v1/chat/completions", json=chat(str(i % 3), text))

    async def main():
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            return await asyncio.gather(*(one(i, k, http) for i, k in enumerate(kinds)))

    expected = {"ok": 200, "STUB_FAIL": 502, "STUB_STALL": 502, "bad": 422, "unknown": 404}
    for i, (kind, resp) in enumerate(asyncio.run(main())):
        assert resp.status_code == expected[kind], (kind, resp.text)
        if kind == "ok":
            llm = resp.json()["proute"]["model_name"]
            assert resp.json()["choices"][0]["message"]["content"] == f"stub stub-{llm}: question {i}"


# ---------------------------------------------------------------------------- batching
def test_concurrent_requests_share_route_batch_calls(router_dir):
    """64 concurrent /v1/route requests (8 of them bad) are routed in far fewer
    route_batch calls, and every good one gets the answer it gets alone."""
    from proute.router import PersonalizedRouter

    router = PersonalizedRouter.load(router_dir)
    calls = []
    route_batch = router.route_batch

    def counting(requests, **kwargs):  # errors="return": what the batcher passes
        calls.append(len(requests))
        return route_batch(requests, **kwargs)

    router.route_batch = counting
    app = create_app(router, None, unknown_user="error", max_batch=32, max_wait_ms=20.0)
    bodies = [
        {"query": f"What is {i} times {i + 3}?", "user": i % 3} if i % 8 else {"query": "", "user": 0}
        for i in range(64)
    ]

    async def main(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            return await asyncio.gather(*(http.post("/v1/route", json=b) for b in bodies))

    with ServerThread(app) as s:
        calls.clear()  # the warm-up encodes without routing
        responses = asyncio.run(main(s.url))
        stats = httpx.get(s.url + "/health").json()["batching"]
    for b, r in zip(bodies, responses, strict=True):
        if b["query"]:
            assert r.status_code == 200, r.text
            alone = route_batch([{"query": b["query"], "user_id": b["user"]}])[0]
            assert r.json()["model_name"] == alone["model_name"]
        else:
            assert_error(r, 422, "query")
    assert sum(calls) == 56 and len(calls) <= 8, calls
    assert max(calls) <= 32 and stats["batches"] == len(calls) and stats["requests"] == 56


def test_router_calls_run_on_one_thread(router_dir):
    """Routing, feedback and new users share one thread: never two router calls at once."""
    from proute.router import PersonalizedRouter

    router = PersonalizedRouter.load(router_dir)
    active, overlaps, lock = [0], [], threading.Lock()
    route_batch = router.route_batch

    def guarded(requests, errors="raise"):
        with lock:
            active[0] += 1
            overlaps.append(active[0])
        try:
            return route_batch(requests, errors)
        finally:
            with lock:
                active[0] -= 1

    router.route_batch = guarded
    app = create_app(router, None, unknown_user="error", max_batch=4, max_wait_ms=0.0, warmup=False)

    async def main(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            return await asyncio.gather(
                *(http.post("/v1/route", json={"query": f"q {i}", "user": 0}) for i in range(24))
            )

    with ServerThread(app) as s:
        assert all(r.status_code == 200 for r in asyncio.run(main(s.url)))
    assert max(overlaps) == 1 and len(overlaps) >= 6


# ---------------------------------------------------------------------------- feedback, users
def test_feedback_and_new_users_without_support_are_501(router):
    app = create_app(Bare(router), None, warmup=False)
    assert app.state.policy == "error"  # no policy in the router: the old behaviour
    with ServerThread(app) as s:
        fb = {"user": 0, "query": "hi", "llm": router.llms[0], "outcome": 1.0}
        assert_error(
            httpx.post(s.url + "/v1/feedback", json=fb), 501, None, "not available in this router version"
        )
        assert_error(httpx.post(s.url + "/v1/users", json={"user": "new"}), 501, None, "router.add_user")
    with pytest.raises(ValueError, match="no unknown-user policy"):
        unknown_user_policy(Bare(router), "average")


def test_feedback_validation(client, router):
    if not callable(getattr(router, "feedback", None)):
        pytest.skip("this router version has no feedback")
    base = {"user": 0, "query": "What is 2 + 2?", "llm": router.llms[0]}
    assert_error(client.post("/v1/feedback", json={**base, "outcome": "good"}), 422, "outcome")
    assert_error(client.post("/v1/feedback", json={**base, "llm": "gpt-9", "outcome": 1.0}), 422, "llm")
    assert_error(
        client.post("/v1/feedback", json={k: v for k, v in base.items() if k != "query"}), 400, "query"
    )


def test_feedback_and_add_user(router_dir):
    from proute.router import PersonalizedRouter

    router = PersonalizedRouter.load(router_dir)
    if not (callable(getattr(router, "feedback", None)) and callable(getattr(router, "add_user", None))):
        pytest.skip("this router version has no feedback/add_user")
    app = create_app(router, None, unknown_user="error", warmup=False)
    llm = router.llms[0]
    with ServerThread(app) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        assert_error(c.post("/v1/route", json={"query": "hi", "user": "newcomer"}), 404, "user")
        interactions = [{"query": "What is 2 + 2?", "llm": llm, "performance": 1.0, "cost": 0.001}]
        added = c.post("/v1/users", json={"user": "newcomer", "interactions": interactions})
        assert added.status_code == 200, added.text
        assert c.post("/v1/route", json={"query": "hi", "user": "newcomer"}).status_code == 200
        fb = c.post("/v1/feedback", json={"user": "newcomer", "query": "hi", "llm": llm, "outcome": 0.5})
        assert fb.status_code == 200, fb.text
        fb = c.post(
            "/v1/feedback",
            json={
                "user": "newcomer",
                "query": "hi",
                "llm": llm,
                "outcome": {"performance": 1.0, "cost": 0.1},
            },
        )
        assert fb.status_code == 200, fb.text


def test_unknown_users_are_404_by_default_and_average_says_so(router_dir):
    """The server's default is the library's: an unknown user is a 404 naming it; under
    ``average`` it is routed as the average user, and body and headers say so."""
    from proute.router import PersonalizedRouter

    router = PersonalizedRouter.load(router_dir)
    app = create_app(router, None, warmup=False)
    assert app.state.policy == "error" and router.unknown_user == "error"
    with ServerThread(app) as s:
        resp = httpx.post(s.url + "/v1/route", json={"query": "hi", "user": "stranger"}, timeout=60)
    err = assert_error(resp, 404, "user", "unknown user_id 'stranger'")
    assert err["code"] == "user_not_found" and "--unknown-user average" in err["message"]

    app = create_app(router, None, unknown_user="average", warmup=False)
    with ServerThread(app) as s:
        strange = httpx.post(s.url + "/v1/route", json={"query": "hi", "user": "stranger"}, timeout=60)
        known = httpx.post(s.url + "/v1/route", json={"query": "hi", "user": 0}, timeout=60)
        both = {"requests": [{"query": "hi", "user": "stranger"}, {"query": "hi", "user": 0}]}
        batch = httpx.post(s.url + "/v1/route", json=both, timeout=60).json()["results"]
    assert strange.status_code == 200, strange.text
    assert strange.json()["routed_as"] == strange.headers["x-proute-routed-as"] == "average"
    assert strange.json()["model_name"] in router.llms
    assert known.json()["routed_as"] == known.headers["x-proute-routed-as"] == "user"
    assert [r["routed_as"] for r in batch] == ["average", "user"]


def test_chat_completion_says_when_the_average_user_answered(router, upstreams):
    app = create_app(router, upstreams, unknown_user="average", warmup=False)
    try:
        with ServerThread(app) as s:
            resp = httpx.post(s.url + "/v1/chat/completions", json=chat("stranger", "hi"), timeout=60)
            own = httpx.post(s.url + "/v1/chat/completions", json=chat("0", "hi"), timeout=60)
    finally:
        router.unknown_user = "error"  # the module's router, shared with the other tests
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-proute-routed-as"] == resp.json()["proute"]["routed_as"] == "average"
    assert resp.headers["x-proute-user"] == "stranger"
    assert own.headers["x-proute-routed-as"] == own.json()["proute"]["routed_as"] == "user"


def test_route_batch_returns_per_item_errors(router):
    """``errors="return"``: one bad request does not fail the batch; ``"raise"`` (default)
    still raises for the first, naming its index."""
    good = {"query": "What is 2 + 2?", "user_id": 0}
    batch = [good, {"query": "hi", "user_id": "nobody"}, {"query": "", "user_id": 1}]
    batch += [{"query": "hi", "user_id": 2, "task": "no-such-task"}, {"query": "hi", "user_id": [1]}]
    with pytest.raises(KeyError, match="request 1: unknown user_id 'nobody'"):
        router.route_batch(batch)
    out = router.route_batch(batch, errors="return")
    assert out[0] == {**router.route_single(good), "routed_as": "user"}
    assert [(r.get("index"), r.get("code")) for r in out[1:]] == [
        (1, "unknown_user"),
        (2, "invalid_request"),
        (3, "unknown_task"),
        (4, "invalid_request"),
    ]
    assert "unknown user_id 'nobody'" in out[1]["error"] and "'query'" in out[2]["error"]
    assert router.route_batch(batch[1:2], errors="return")[0]["code"] == "unknown_user"
    with pytest.raises(ValueError, match="errors='ignore'"):
        router.route_batch(batch, errors="ignore")


# ---------------------------------------------------------------------------- clients
def test_openai_client_gets_a_completion(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    completion = client.chat.completions.create(
        model="proute", user="0", messages=[{"role": "user", "content": "Say hello"}]
    )
    assert completion.choices[0].message.content.startswith("stub stub-")
    assert completion.choices[0].message.content.endswith(": Say hello")
    stream = client.chat.completions.create(
        model="proute", user="1", messages=[{"role": "user", "content": "Stream hello"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.startswith("stub stub-") and text.endswith(": Stream hello")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="proute", user="nobody", messages=[{"role": "user", "content": "x"}]
        )


# ---------------------------------------------------------------------------- upstreams file
@pytest.mark.parametrize(
    "text, contains",
    [
        ("llms: [a, b]", "field 'llms'"),
        ("defaults: {base_url: 'http://x/v1'}\nllms: {nope: {}}", "field llms.'nope' is not an LLM"),
        ("llms: {}", "has no upstream for"),
        ("defaults: {base_url: 'ftp://x'}\nllms: {}", "base_url must be an http(s) URL"),
        ("defaults: {base_url: 'http://x/v1', timeout: -1}\nllms: {}", "timeout must be a positive"),
        ("defaults: {base_url: 'http://x/v1', api_key_env: PROUTE_UNSET_VAR_X}\nllms: {}", "not set"),
        ("defaults: {base_url: 'http://x/v1', model: m}\nllms: {}", "defaults.'model' is not allowed"),
        ("defaults: {base_url: 'http://x/v1', colour: red}\nllms: {}", "defaults.'colour'"),
        ("llms: {", "not valid YAML"),
        ("other: 1\nllms: {}", "unknown top-level field 'other'"),
    ],
    ids=[
        "list",
        "stranger",
        "missing",
        "scheme",
        "timeout",
        "unset-key",
        "default-model",
        "unknown-key",
        "yaml",
        "top",
    ],
)
def test_upstreams_file_errors(tmp_path, router, text, contains):
    path = tmp_path / "u.yaml"
    path.write_text(text)
    with pytest.raises(UpstreamsError, match="u.yaml") as info:
        load_upstreams(path, router.llms)
    assert contains in str(info.value)


def test_upstreams_file_defaults_and_example(router, tmp_path, monkeypatch):
    path = tmp_path / "u.yaml"
    first = router.llms[0]
    path.write_text(
        f"defaults: {{base_url: 'http://h:1/v1'}}\nllms: {{{first}: {{model: m1, timeout: 3}}}}\n"
    )
    ups = load_upstreams(path, router.llms)
    assert set(ups) == set(router.llms)
    assert ups[first] == Upstream(first, "http://h:1/v1", "m1", None, 3.0)
    assert ups[router.llms[1]].model == router.llms[1] and ups[router.llms[1]].timeout == 60.0
    example = ROOT / "conf" / "upstreams.example.yaml"
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    loaded = load_upstreams(example)
    assert len(loaded) == 9 and all(u.base_url.startswith("http://127.0.0.1") for u in loaded.values())
    assert loaded["gemma-2-9b-it"].model == "google/gemma-2-9b-it"
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.warns(UpstreamsWarning, match="'OPENAI_API_KEY'.*without a key") as caught:
        keyless = load_upstreams(example)  # its base_url is this machine's: no key is fine
    assert len(caught) == 1 and keyless == loaded  # one warning per variable and endpoint
    remote = tmp_path / "remote.yaml"
    remote.write_text(example.read_text().replace("http://127.0.0.1:8001/v1", "https://llm.example.com/v1"))
    with pytest.raises(UpstreamsError, match="remote.yaml: field defaults.api_key_env .*'OPENAI_API_KEY'"):
        load_upstreams(remote)


def test_upstreams_file_with_only_defaults_serves_every_llm(router, tmp_path):
    """conf/upstreams.local.yaml (the README's quick start): no `llms`, no key."""
    local = load_upstreams(ROOT / "conf" / "upstreams.local.yaml", router.llms)
    assert local == {m: Upstream(m, "http://127.0.0.1:8001/v1", m, None, 60.0) for m in router.llms}
    path = tmp_path / "u.yaml"
    path.write_text("defaults: {base_url: 'http://h:1/v1', timeout: 5}\n")
    assert {u.base_url for u in load_upstreams(path, router.llms).values()} == {"http://h:1/v1"}
    assert load_upstreams(path) == {}  # without the router's LLMs: only those listed


@pytest.mark.parametrize(
    "url, local",
    [
        ("http://127.0.0.1:8001/v1", True),
        ("http://localhost/v1", True),
        ("http://[::1]:8/v1", True),
        ("http://127.1.2.3/v1", True),
        ("https://api.example.com/v1", False),
        ("http://10.0.0.5:8000/v1", False),
        ("http://localhost.example.com/v1", False),
    ],
)
def test_an_unset_key_is_an_error_only_beyond_this_machine(tmp_path, router, monkeypatch, url, local):
    monkeypatch.delenv("PROUTE_UNSET_VAR_Y", raising=False)
    path = tmp_path / "u.yaml"
    own = f"{router.llms[0]}: {{api_key_env: PROUTE_UNSET_VAR_Y}}"
    path.write_text(f"defaults: {{base_url: '{url}'}}\nllms: {{{own}}}\n")
    if local:
        with pytest.warns(UpstreamsWarning, match="PROUTE_UNSET_VAR_Y"):
            ups = load_upstreams(path, router.llms)
        assert "authorization" not in request_headers(ups[router.llms[0]])
    else:
        with pytest.raises(UpstreamsError, match=f"field llms.{router.llms[0]}.api_key_env"):
            load_upstreams(path, router.llms)
