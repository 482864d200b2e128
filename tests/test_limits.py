"""What ``proute serve`` and the router refuse (proute.serving.limits, the router's finite
checks): non-finite or absurd numbers anywhere in a request are a 422 naming the field and
change nothing; every limit is its 413/422 naming it; no accepted request makes a later
request fail (a seeded random sequence of valid and invalid requests); refused oversize
bodies do not grow the server's memory.

Servers run on loopback (tests/serving_fixtures.py's ``ServerThread``) with one tiny trained
router per module; a test that changes a router loads its own copy.
"""

import json
import math
import os
import random

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx  # noqa: E402

from proute.router import adaptation  # noqa: E402
from proute.serving.app import create_app  # noqa: E402
from proute.serving.limits import Limits  # noqa: E402
from proute.serving.stub_upstream import stub_app  # noqa: E402
from proute.serving.upstreams import load_upstreams  # noqa: E402
from serving_fixtures import KEY_ENV, ServerThread, train_tiny_router, write_upstreams  # noqa: E402

SMALL = Limits(
    max_body_bytes=16384,
    max_json_depth=8,
    max_batch_items=4,
    max_query_chars=50,
    max_user_id_chars=16,
    max_interactions=2,
    max_new_users=2,
    max_tokens=64,
)


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory, cache_dir):
    return train_tiny_router(tmp_path_factory, cache_dir)


def fresh(router_dir):
    from proute.router import PersonalizedRouter

    return PersonalizedRouter.load(router_dir)


@pytest.fixture(scope="module")
def router(router_dir):
    return fresh(router_dir)


def serve(router, upstreams=None, **limits):
    """A server for ``router`` under the ``average`` policy (unknown users are routed)."""
    app = create_app(router, upstreams, unknown_user="average", warmup=False, limits=Limits(**limits))
    return ServerThread(app)


@pytest.fixture(scope="module")
def small(router, tmp_path_factory):
    """A server under :data:`SMALL` limits, its LLMs at the stub upstream."""
    with ServerThread(stub_app()) as stub:
        os.environ[KEY_ENV] = "test-key"
        path = write_upstreams(tmp_path_factory.mktemp("up") / "up.yaml", stub.url + "/v1", router.llms)
        limits = {k: getattr(SMALL, k) for k in SMALL.__dataclass_fields__}
        with serve(router, load_upstreams(path, router.llms), **limits) as s:
            with httpx.Client(base_url=s.url, timeout=60) as c:
                yield c


def post(client, path, text: str):
    """POST ``text`` as the body, as written (JSON's NaN and 1e400 included)."""
    return client.post(path, content=text.encode(), headers={"content-type": "application/json"})


def refused(resp, status, param, limit=""):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param, err
    assert limit in err["message"], err
    return err


def routes_ok(client, users):
    for user in users:
        r = client.post("/v1/route", json={"query": "What is 2 + 2?", "user": user})
        assert r.status_code == 200, (user, r.text)
        assert all(math.isfinite(v) for v in r.json()["scores"].values()), r.json()


# ------------------------------------------------------------------ non-finite numbers
@pytest.mark.parametrize(
    "outcome, param",
    [
        ("NaN", "outcome"),
        ("Infinity", "outcome"),
        ("-Infinity", "outcome"),
        ("1e400", "outcome"),
        ("-1e30", "outcome"),
        ('{"performance": NaN}', "outcome.performance"),
        ('{"performance": 1.0, "cost": 1e30}', "outcome.cost"),
    ],
)
def test_non_finite_or_absurd_outcomes_are_422_and_harm_nothing(router_dir, outcome, param):
    """Before: accepted (200), then every route for the user was a 500 and other users'
    feedback a 422 'Invalid learning rate: nan'."""
    router = fresh(router_dir)
    u0, u1, llm = router.users[0], router.users[1], router.llms[0]
    with serve(router) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        ok = c.post("/v1/feedback", json={"user": u0, "query": "hi", "llm": llm, "outcome": 0.7})
        assert ok.status_code == 200, ok.text
        body = (
            f'{{"user": {json.dumps(u0)}, "query": "What is 2 + 2?", "llm": "{llm}", "outcome": {outcome}}}'
        )
        refused(post(c, "/v1/feedback", body), 422, param)
        routes_ok(c, [u0, u1, "never-seen"])
        other = c.post("/v1/feedback", json={"user": u1, "query": "hi", "llm": llm, "outcome": 0.2})
        assert other.status_code == 200, other.text
        new = c.post("/v1/feedback", json={"user": "new-one", "query": "hi", "llm": llm, "outcome": 1})
        assert new.status_code == 200, new.text
        routes_ok(c, [u0, u1, "new-one", "never-seen"])


def test_nan_query_emb_in_a_new_user_is_422(router_dir):
    router = fresh(router_dir)
    dq, llm = router.state.query_dim, router.llms[0]
    emb = ["0.1"] * dq
    emb[3] = "NaN"
    it = f'{{"query_emb": [{", ".join(emb)}], "llm": "{llm}", "reward": 1}}'
    body = f'{{"user": "emb-user", "interactions": [{it}]}}'
    with serve(router) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        refused(post(c, "/v1/users", body), 422, "interactions[0].query_emb[3]")
        big = body.replace("NaN", "1e30")
        refused(post(c, "/v1/users", big), 422, "interactions[0].query_emb[3]", "max_magnitude")
        routes_ok(c, [router.users[0], "emb-user"])
    assert "emb-user" not in router.users


def test_the_router_refuses_non_finite_values_naming_the_field(router_dir):
    """The Python API's own defence (the server's checks aside)."""
    router = fresh(router_dir)
    user, llm, before = router.users[0], router.llms[0], router.state
    for bad in (float("nan"), float("inf"), -1e30, 10**400, "0.5", True):
        with pytest.raises(ValueError, match="field 'outcome'"):
            router.feedback(user, "hi", llm, bad)
    with pytest.raises(ValueError, match="field 'outcome.performance'"):
        router.feedback(user, "hi", llm, {"performance": float("nan")})
    with pytest.raises(ValueError, match="interaction 0: field 'reward'"):
        router.add_user("x", [{"query": "hi", "llm": llm, "reward": float("inf")}])
    emb = [0.0] * router.state.query_dim
    emb[1] = float("nan")
    with pytest.raises(ValueError, match=r"field 'query_emb\[1\]'"):
        router.add_user("y", [{"query_emb": emb, "llm": llm, "reward": 1.0}])
    with pytest.raises(ValueError, match="field 'input_price'"):
        router.add_llm("new-llm", "a model", float("nan"), 1.0)
    with pytest.raises(ValueError, match="field 'output_price'"):
        router.add_llm("new-llm", "a model", 1.0, -2.0)
    assert router.state is before


def test_an_update_with_a_non_finite_state_is_refused(router_dir):
    """adaptation.finite_update: an update whose new tensors are not finite is refused and
    the router keeps its state (whatever made them so)."""
    router = fresh(router_dir)
    before = router.state
    poisoned = adaptation.finite_update(lambda s: s.replace(average=s.average * float("nan")))
    with pytest.raises(ValueError, match="non-finite"):
        router._update(poisoned)
    assert router.state is before
    assert math.isfinite(
        router.route_single({"query": "hi", "user_id": router.users[0]})["scores"][router.llms[0]]
    )


# ------------------------------------------------------------------ each limit
def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


CASES = {
    "batch": ("/v1/route", {"requests": [{"query": "hi", "user": 0}] * 5}, "requests", "max_batch_items"),
    "query": ("/v1/route", {"query": "x" * 51, "user": 0}, "query", "max_query_chars"),
    "user id": ("/v1/route", {"query": "hi", "user": "u" * 17}, "user", "max_user_id_chars"),
    "batch item": (
        "/v1/route",
        {"requests": [{"query": "hi", "user": 0}, {"query": "y" * 60, "user": 0}]},
        None,
        "",
    ),
    "interactions": (
        "/v1/users",
        {"user": "k", "interactions": [{"query": "hi", "llm": "?", "reward": 1}] * 3},
        "interactions",
        "max_interactions",
    ),
    "interaction query": (
        "/v1/users",
        {"user": "k", "interactions": [{"query": "z" * 51, "llm": "?", "reward": 1}]},
        "interactions[0].query",
        "max_query_chars",
    ),
    "depth": (
        "/v1/route",
        {"query": "hi", "user": 0, "x": json.loads(nested(8))},
        "x" + "[0]" * 7,
        "max_json_depth",
    ),
    "n": ("/v1/chat/completions", {"n": 2}, "n", "n = 1"),
    "max_tokens": ("/v1/chat/completions", {"max_tokens": 100000}, "max_tokens", "max_tokens = 64"),
    "tools": ("/v1/chat/completions", {"tools": [{"type": "function"}]}, "tools", "allow_tools"),
    "functions": ("/v1/chat/completions", {"functions": [{"name": "f"}]}, "functions", "allow_tools"),
    "big int": ("/v1/chat/completions", {"seed": 10**30}, "seed", "64 bits"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_limit_is_422_naming_it(small, case):
    path, body, param, limit = CASES[case]
    if path == "/v1/chat/completions":
        body = {"model": "proute", "user": 0, "messages": [{"role": "user", "content": "hi"}], **body}
    r = small.post(path, json=body)
    if case == "batch item":  # the item's own error; the others are routed
        first, second = r.json()["results"]
        assert "model_name" in first and second["status"] == 422
        assert (
            second["error"]["param"] == "requests[1].query"
            and "max_query_chars" in second["error"]["message"]
        )
        return
    refused(r, 422, param, limit)


def test_chat_within_the_limits_is_forwarded(small):
    msgs = [{"role": "user", "content": "hi"}]
    r = small.post(
        "/v1/chat/completions",
        json={"model": "proute", "user": 0, "messages": msgs, "n": 1, "max_tokens": 64},
    )
    assert r.status_code == 200, r.text


def test_non_finite_anywhere_is_422_naming_its_path(small):
    body = (
        '{"model": "proute", "user": 0, "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}'
    )
    refused(post(small, "/v1/chat/completions", body), 422, "temperature", "finite")
    refused(post(small, "/v1/route", '{"query": "hi", "user": 0, "x": {"y": [1, 1e400]}}'), 422, "x.y[1]")


def test_deep_nesting_is_422_not_500(small):
    """JSON nested 5,000 deep was a 500 (RecursionError)."""
    refused(
        post(small, "/v1/route", '{"query": "hi", "user": 0, "x": ' + nested(5000) + "}"),
        422,
        None,
        "max_json_depth",
    )


def test_a_body_over_max_body_bytes_is_413(small):
    big = {"query": "hi", "user": 0, "pad": "p" * 20000}
    refused(small.post("/v1/route", json=big), 413, None, "max_body_bytes = 16384")

    def chunks():  # no Content-Length: the streamed read is capped
        yield b'{"query": "hi", "user": 0, "pad": "'
        for _ in range(40):
            yield b"p" * 1000
        yield b'"}'

    refused(small.post("/v1/route", content=chunks()), 413, None, "max_body_bytes")


def test_max_new_users(router_dir):
    router = fresh(router_dir)
    llm = router.llms[0]
    with serve(router, max_new_users=2) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        for user in ("a", "b"):
            assert c.post("/v1/users", json={"user": user}).status_code == 200
        refused(c.post("/v1/users", json={"user": "c"}), 422, "user", "max_new_users = 2")
        fb = {"user": "d", "query": "hi", "llm": llm, "outcome": 1.0}
        refused(c.post("/v1/feedback", json=fb), 422, "user", "max_new_users")
        fb["user"] = "a"  # a known user's feedback is still taken
        assert c.post("/v1/feedback", json=fb).status_code == 200
    assert len(router.users) == len(fresh(router_dir).users) + 2


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_batch_items"):
        Limits(max_batch_items=0)
    with pytest.raises(ValueError, match="max_user_id_chars"):
        Limits(max_user_id_chars=10_000)


# ------------------------------------------------------------------ no request breaks a later one
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e30", "1e7", '"1"', "true", "null"]
EDGE_NUMBERS = ["1e6", "-1e6", "0", "-0.0", "1e-300"]


def _random_request(rng: random.Random, users: list, llms: list, dq: int) -> tuple[str, str, bool]:
    """``(path, body, well_formed)``: a random request, well formed with moderate values or not."""
    if rng.random() < 0.75:
        user = rng.choice(users + ["new-%d" % rng.randrange(30)])
    else:
        user = rng.choice(["x" * 300, [1], {"a": 1}, "", True, 1.5, None])
    valid_user = isinstance(user, (int, str)) and not isinstance(user, bool) and 0 < len(str(user)) <= 256
    kind = rng.choice(["feedback", "add_user", "route", "batch"])
    draw = rng.random()  # a moderate value, one at the edge of what is accepted, or a bad one
    good = draw < 0.4
    pool = EDGE_NUMBERS if draw < 0.7 else BAD_NUMBERS
    number = f"{rng.uniform(-1, 1):.3f}" if good else rng.choice(pool)
    u, llm = json.dumps(user), rng.choice(llms)
    if kind == "feedback":
        outcome = number if rng.random() < 0.5 else f'{{"performance": {number}, "cost": 0.01}}'
        body = f'{{"user": {u}, "query": "q{rng.randrange(5)}", "llm": "{llm}", "outcome": {outcome}}}'
    elif kind == "add_user":
        emb = ", ".join(number if j == 0 else "0.05" for j in range(dq))
        it = f'{{"query_emb": [{emb}], "llm": "{llm}", "reward": 0.5}}'
        body = f'{{"user": {u}, "interactions": [{it}]}}'
    elif kind == "route":
        chars = rng.choice([3, 3, 40000])  # 40000: over max_query_chars
        good = chars < 40000  # the number is not used
        body = json.dumps({"query": "q" * chars, "user": user})
    else:
        n = rng.choice([1, 3, 300])  # 300: over max_batch_items
        good = n < 300
        body = json.dumps({"requests": [{"query": "hi", "user": user}] * n})
    path = {"add_user": "/v1/users", "feedback": "/v1/feedback"}.get(kind, "/v1/route")
    return path, body, good and valid_user


def test_no_accepted_request_makes_a_later_one_fail(router_dir):
    """200 seeded random requests (feedback, new users, routes, batches; a quarter with a
    bad user id; numbers moderate, at the edge of what is accepted: +-1e6, -0.0, 1e-300, or
    bad: NaN, +-Infinity, 1e400, -1e30, 1e7, a text, a bool, null); none is a 500, every
    well-formed one with moderate values is a 200 (a new user added twice aside), and
    afterwards every user (trained, added, unknown) routes with finite scores."""
    router = fresh(router_dir)
    rng = random.Random(17)
    users, llms, dq = list(router.users), list(router.llms), router.state.query_dim
    statuses = []
    with serve(router) as s, httpx.Client(base_url=s.url, timeout=120) as c:
        for _ in range(200):
            path, body, good = _random_request(rng, users[:5], llms, dq)
            r = post(c, path, body)
            statuses.append(r.status_code)
            assert r.status_code != 500, (path, body[:200], r.text)
            if good and path != "/v1/users":  # a new user may be added twice: 422
                results = r.json().get("results", [])
                ok = r.status_code == 200 and all(x.get("status", 200) == 200 for x in results)
                assert ok, (path, body[:300], r.text)
        routes_ok(c, list(router.users) + ["never-seen"])
    assert 200 in statuses and 422 in statuses and len(router.users) > len(users)


# ------------------------------------------------------------------ memory
def test_refused_oversize_bodies_do_not_grow_memory(router):
    """500 bodies of 256 KiB over a 64 KiB limit (16 at a time): each a 413, and the
    process's RSS (the server runs in it) grows by less than 50 MiB."""
    from concurrent.futures import ThreadPoolExecutor

    psutil = pytest.importorskip("psutil")
    me = psutil.Process()
    body = b'{"query": "hi", "user": 0, "pad": "' + b"p" * (256 << 10) + b'"}'
    pool = httpx.Limits(max_connections=16)
    with (
        serve(router, max_body_bytes=64 << 10) as s,
        httpx.Client(base_url=s.url, timeout=60, limits=pool) as c,
    ):

        def send(_):
            return c.post("/v1/route", content=body).status_code

        with ThreadPoolExecutor(16) as ex:
            assert set(ex.map(send, range(32))) == {413}  # warm up allocators and connections
            start = me.memory_info().rss
            codes = list(ex.map(send, range(500)))
        grown = (me.memory_info().rss - start) / 2**20
    assert codes == [413] * 500
    assert grown < 50, f"RSS grew by {grown:.1f} MiB"


def test_serve_options_set_the_limits(tmp_path):
    from proute.cli.parser import build_parser
    from proute.cli.services import _limits

    args = build_parser().parse_args(
        ["serve", str(tmp_path), "--max-body-bytes", "2048", "--max-batch-items", "8"]
    )
    assert _limits(args) == Limits(max_body_bytes=2048, max_batch_items=8)
    assert _limits(build_parser().parse_args(["serve", str(tmp_path)])) == Limits()


def test_added_users_do_not_fragment_the_heap(router_dir):
    """800 users added over HTTP: the context tensors each update frees are given back
    (limits.trim_heap); RSS grew 14 MiB here, 153 MiB without the trim."""
    from concurrent.futures import ThreadPoolExecutor

    psutil = pytest.importorskip("psutil")
    me = psutil.Process()
    router = fresh(router_dir)
    with (
        serve(router) as s,
        httpx.Client(base_url=s.url, timeout=60, limits=httpx.Limits(max_connections=16)) as c,
    ):

        def add(i):
            return c.post("/v1/users", json={"user": f"heap-{i}"}).status_code

        with ThreadPoolExecutor(16) as ex:
            assert set(ex.map(add, range(-32, 0))) == {200}
            start = me.memory_info().rss
            codes = list(ex.map(add, range(800)))
        grown = (me.memory_info().rss - start) / 2**20
    assert codes == [200] * 800
    assert grown < 40, f"RSS grew by {grown:.1f} MiB"
