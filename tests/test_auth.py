"""API keys for ``proute serve --api-keys FILE`` (proute.serving.auth, proute keys ...): the
keys file (hashes only, mode 0600, appended to, a bad one named with its field), the key
matrix (401 without a valid key, 403 for what a key may not do, on every path including
/health, /docs and /openapi.json), constant-time comparison, the per-key rate limit (429 with
retry-after) and the refusal to serve on a non-loopback host without keys.

Every server listens on 127.0.0.1 (tests/serving_fixtures.py's ``ServerThread``); the router
is one tiny trained router per module.
"""

import contextlib
import io
import os
import stat
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx  # noqa: E402
import yaml  # noqa: E402

from proute.cli import main  # noqa: E402
from proute.serving import auth  # noqa: E402
from proute.serving.app import create_app, serve  # noqa: E402
from serving_fixtures import ServerThread, train_tiny_router  # noqa: E402


def create_key(path, *args) -> str:
    """``proute keys create ... --keys path``; the key it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["keys", "create", *args, "--keys", str(path)]) == 0
    return out.getvalue().strip()


def key_id(path, key) -> str:
    (found,) = [k.id for k in auth.read_keys_file(path)[0] if k.hash == auth.key_hash(key)]
    return found


def bearer(key):
    return {"authorization": f"Bearer {key}"}


def assert_error(resp, status, type_, contains=""):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == type_, err
    assert contains in err["message"], err
    return err


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory, cache_dir):
    return train_tiny_router(tmp_path_factory, cache_dir)


@pytest.fixture(scope="module")
def router(router_dir):
    from proute.router import PersonalizedRouter

    r = PersonalizedRouter.load(router_dir)
    assert callable(getattr(r, "feedback", None)) and callable(getattr(r, "add_user", None))
    return r


@pytest.fixture(scope="module")
def keys(tmp_path_factory, router):
    """A keys file: admin, unbound app, app bound to the first user, a revoked key, a
    rate-limited key (5/s, burst 3)."""
    path = tmp_path_factory.mktemp("keys") / "keys.yaml"
    me, other = router.users[0], router.users[1]
    k = {
        "admin": create_key(path, "--role", "admin", "--name", "ops"),
        "app": create_key(path, "--role", "app"),
        "bound": create_key(path, "--role", "app", "--users", str(me), "newcomer"),
        "revoked": create_key(path, "--role", "admin"),
        "slow": create_key(path, "--role", "app", "--rate", "5/s", "--burst", "3"),
    }
    assert main(["keys", "revoke", key_id(path, k["revoked"]), "--keys", str(path)]) == 0
    return {"path": path, "me": me, "other": other, **k}


@pytest.fixture(scope="module")
def server(router, keys):
    app = create_app(router, None, warmup=False, api_keys=keys["path"], key_rate="none")
    with ServerThread(app) as s:
        s.ring = app.state.api_keys
        yield s


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def route(user, query="Solve 12 * (3 + 4)"):
    return {"query": query, "user": user}


def feedback(router, user):
    return {"user": user, "query": "What is 2 + 2?", "llm": router.llms[0], "outcome": 1.0}


def add_user(router, user):
    interactions = [{"query": "What is 2 + 2?", "llm": router.llms[0], "performance": 1.0, "cost": 0.001}]
    return {"user": user, "interactions": interactions}


# ---------------------------------------------------------------------------- the keys file
def test_the_keys_file_stores_hashes_only_with_mode_0600_and_keeps_every_key(tmp_path, capsys):
    path = tmp_path / "keys.yaml"
    first = create_key(path, "--role", "admin")
    second = create_key(path, "--role", "app", "--users", "3", "alice")
    assert first.startswith("pk-") and len(first) >= 40 and first != second
    text = path.read_text()
    assert first not in text and second not in text
    assert first[3:20] not in text and second[3:20] not in text  # not even a large part of it
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    records = auth.read_keys_file(path)[0]
    assert [r.role for r in records] == ["admin", "app"]
    assert records[1].users == [3, "alice"]
    capsys.readouterr()
    assert main(["keys", "list", "--keys", str(path)]) == 0
    listed = capsys.readouterr().out
    assert records[0].id in listed and records[1].id in listed
    assert first not in listed and second not in listed and "sha256" not in listed


def test_a_failed_write_keeps_the_keys_file(tmp_path, monkeypatch):
    path = tmp_path / "keys.yaml"
    create_key(path, "--role", "admin")
    before = path.read_bytes()

    def broken(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(auth.os, "replace", broken)
    with pytest.raises(SystemExit, match="No space left"):
        create_key(path, "--role", "app")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


@pytest.mark.parametrize(
    "doc, field",
    [
        ({"keys": [{"id": "a", "hash": "sha256:" + "0" * 64, "role": "boss"}]}, "keys[0].role"),
        ({"keys": [{"id": "a", "hash": "pk-plaintext", "role": "app"}]}, "keys[0].hash"),
        (
            {"keys": [{"id": "a", "hash": "sha256:" + "0" * 64, "role": "app", "users": [[1]]}]},
            "keys[0].users[0]",
        ),
        (
            {"keys": [{"id": "a", "hash": "sha256:" + "0" * 64, "role": "app", "rate": "fast"}]},
            "keys[0].rate",
        ),
        ({"keys": [{"hash": "sha256:" + "0" * 64, "role": "app"}]}, "keys[0].id"),
        ({"keys": [{"id": "a", "hash": "sha256:" + "0" * 64, "role": "app", "secret": 1}]}, "keys[0].secret"),
        ({"keys": {"id": "a"}}, "keys: expected a list"),
        ("keys: [unclosed", "not valid YAML"),
    ],
)
def test_a_bad_keys_file_is_an_error_naming_the_file_and_the_field(tmp_path, router, doc, field):
    path = tmp_path / "keys.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    with pytest.raises(
        SystemExit, match=r"keys file .*keys\.yaml: .*" + field.replace("[", r"\[").replace("]", r"\]")
    ):
        main(["keys", "list", "--keys", str(path)])
    with pytest.raises(auth.KeysFileError, match=str(path)):
        create_app(router, None, warmup=False, api_keys=path)
    before = path.read_text()
    with pytest.raises(SystemExit):
        main(["keys", "create", "--role", "admin", "--keys", str(path)])
    assert path.read_text() == before  # a bad file is never overwritten


# ---------------------------------------------------------------------------- who may do what
@pytest.mark.parametrize(
    "path", ["/v1/route", "/health", "/v1/models", "/docs", "/redoc", "/openapi.json", "/nope"]
)
def test_every_path_needs_a_key(client, path):
    resp = client.post(path, json=route(0)) if path == "/v1/route" else client.get(path)
    err = assert_error(resp, 401, "authentication_error", "missing API key")
    assert err["code"] == "invalid_api_key"
    assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header, message",
    [
        ("Bearer pk-not-a-key", "invalid API key"),
        ("Basic dXNlcjpwYXNz", "malformed"),
        ("Bearer", "malformed"),
        ("Bearer two words", "malformed"),
        ("pk-no-scheme", "malformed"),
    ],
)
def test_a_wrong_or_malformed_key_is_401(client, keys, header, message):
    resp = client.post("/v1/route", json=route(keys["me"]), headers={"authorization": header})
    assert_error(resp, 401, "authentication_error", message)


def test_a_revoked_key_is_401(client, keys):
    assert_error(
        client.get("/health", headers=bearer(keys["revoked"])), 401, "authentication_error", "revoked"
    )
    # a key that is not the first in the file is found too (no early exit hides it)
    assert client.get("/health", headers=bearer(keys["bound"])).status_code == 200


def test_a_key_revoked_while_serving_is_refused(client, server, tmp_path):
    path = server.ring.path
    key = create_key(path, "--role", "admin")
    server.ring.RELOAD_EVERY_S = 0.0
    assert client.get("/v1/models", headers=bearer(key)).status_code == 200
    assert main(["keys", "revoke", key_id(path, key), "--keys", str(path)]) == 0
    assert_error(client.get("/v1/models", headers=bearer(key)), 401, "authentication_error", "revoked")


def test_an_unbound_app_key_routes_for_anyone_but_updates_no_user(client, keys, router):
    h = bearer(keys["app"])
    assert client.post("/v1/route", json=route(keys["other"]), headers=h).status_code == 200
    assert client.get("/health", headers=h).status_code == 200
    err = assert_error(
        client.post("/v1/feedback", json=feedback(router, keys["other"]), headers=h), 403, "permission_error"
    )
    assert "bound to no users" in err["message"] and err["param"] == "user"
    assert_error(
        client.post("/v1/users", json=add_user(router, "stranger"), headers=h), 403, "permission_error"
    )
    assert "stranger" not in map(str, router.users)


def test_a_bound_app_key_acts_for_its_users_only(client, keys, router):
    h, me, other = bearer(keys["bound"]), keys["me"], keys["other"]
    assert client.post("/v1/route", json=route(me), headers=h).status_code == 200
    assert client.post("/v1/feedback", json=feedback(router, me), headers=h).status_code == 200
    assert (
        client.post("/v1/feedback", json=feedback(router, str(me)), headers=h).status_code == 200
    )  # "3" is 3
    assert client.post("/v1/users", json=add_user(router, "newcomer"), headers=h).status_code == 200
    err = assert_error(
        client.post("/v1/feedback", json=feedback(router, other), headers=h), 403, "permission_error"
    )
    assert err["param"] == "user" and "bound to other users" in err["message"]
    assert_error(
        client.post("/v1/users", json=add_user(router, "intruder"), headers=h), 403, "permission_error"
    )
    assert_error(client.post("/v1/route", json=route(other), headers=h), 403, "permission_error")
    chat = {"model": "proute", "user": other, "messages": [{"role": "user", "content": "hi"}]}
    assert_error(client.post("/v1/chat/completions", json=chat, headers=h), 403, "permission_error")
    batch = client.post("/v1/route", json={"requests": [route(me), route(other)]}, headers=h)
    assert batch.status_code == 200, batch.text
    ok, refused = batch.json()["results"]
    assert "model_name" in ok and refused["status"] == 403 and refused["error"]["param"] == "requests[1].user"


def test_an_admin_key_may_do_anything(client, keys, router):
    h = bearer(keys["admin"])
    assert client.post("/v1/route", json=route(keys["other"]), headers=h).status_code == 200
    assert client.post("/v1/feedback", json=feedback(router, keys["other"]), headers=h).status_code == 200
    assert client.post("/v1/users", json=add_user(router, "admins-user"), headers=h).status_code == 200
    assert "proute" in client.get("/openapi.json", headers=h).json()["info"]["title"]
    assert client.get("/docs", headers=h).status_code == 200
    assert client.get("/health", headers=h).json()["status"] == "ok"


def test_the_openai_client_sends_its_api_key(server, keys):
    openai = pytest.importorskip("openai")
    ok = openai.OpenAI(api_key=keys["app"], base_url=server.url + "/v1", max_retries=0)
    assert [m.id for m in ok.models.list()] == ["proute"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="pk-wrong", base_url=server.url + "/v1", max_retries=0).models.list()


def test_keys_are_compared_in_constant_time(keys, monkeypatch):
    ring = auth.KeyRing(keys["path"])
    calls = []

    def counting(a, b):
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for key in (keys["admin"], "pk-unknown"):  # the first key of the file, and no key
        calls.clear()
        if key == "pk-unknown":
            with pytest.raises(auth.APIError):
                ring.authenticate(f"Bearer {key}")
        else:
            assert ring.authenticate(f"Bearer {key}").role == "admin"
        assert len(calls) == len(ring.keys)  # every key's hash, also after a match
        assert all(b == auth.key_hash(key) for _, b in calls)  # hashes, never the key


# ---------------------------------------------------------------------------- rate limit
def test_the_rate_limit_is_429_after_the_burst_and_recovers(client, keys):
    h = bearer(keys["slow"])  # 5/s, burst 3
    codes = [client.get("/v1/models", headers=h).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    resp = client.get("/v1/models", headers=h)
    err = assert_error(resp, 429, "rate_limit_error", "5/s, burst 3")
    assert err["code"] == "rate_limit_exceeded"
    assert resp.headers["retry-after"] == "1"
    assert resp.headers["x-ratelimit-limit"] == "5/s, burst 3"
    assert client.get("/v1/models", headers=bearer(keys["app"])).status_code == 200  # another key: its own
    time.sleep(0.45)  # two tokens back
    assert client.get("/v1/models", headers=h).status_code == 200


def test_the_server_default_rate_applies_to_keys_without_their_own(tmp_path, keys):
    ring = auth.KeyRing(keys["path"], rate="2/min")
    admin = ring.authenticate(f"Bearer {keys['admin']}")
    assert ring.limit(admin) == (pytest.approx(2 / 60), 1)
    ring.throttle(admin)
    with pytest.raises(auth.RateLimited) as exc:
        ring.throttle(admin)
    assert exc.value.status == 429 and int(exc.value.headers["retry-after"]) == 30
    slow = ring.authenticate(f"Bearer {keys['slow']}")
    assert ring.limit(slow) == (5.0, 3)  # its own limit wins
    assert auth.KeyRing(keys["path"]).limit(admin) == (20.0, 40)  # the default: 20/s, burst 40
    assert auth.KeyRing(keys["path"], rate="none").limit(admin) is None
    own_rate = auth.APIKey("x", auth.key_hash("pk-x"), "app", rate="10/s")
    assert auth.KeyRing(keys["path"], rate="1/s", burst=7).limit(own_rate) == (10.0, 20)  # 2 s of its rate


def test_a_keys_file_broken_while_serving_keeps_the_keys_read_before(tmp_path, caplog):
    path = tmp_path / "keys.yaml"
    key = create_key(path, "--role", "admin")
    ring = auth.KeyRing(path)
    ring.RELOAD_EVERY_S = 0.0
    path.write_text("keys: [unclosed")
    assert ring.authenticate(f"Bearer {key}").role == "admin"
    assert "keys.yaml: not valid YAML" in caplog.text and "keeping the keys read before" in caplog.text


# ---------------------------------------------------------------------------- exposure
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_keys(host):
    assert auth.is_loopback(host)
    auth.check_exposure(host, None, False)


def test_a_non_loopback_host_without_keys_refuses_to_start(router_dir, keys, monkeypatch):
    import uvicorn

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, **kw: started.append((app, host)))
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        with pytest.raises(ValueError, match=f"refusing to serve on '{host}' without API keys"):
            serve(router_dir, host=host)
    with pytest.raises(SystemExit, match="--insecure"):
        main(["serve", str(router_dir), "--host", "0.0.0.0"])
    assert started == []
    serve(router_dir, host="0.0.0.0", insecure=True)
    assert main(["serve", str(router_dir), "--host", "0.0.0.0", "--api-keys", str(keys["path"])]) == 0
    assert [h for _, h in started] == ["0.0.0.0", "0.0.0.0"]
    assert started[0][0].state.api_keys is None and started[1][0].state.api_keys is not None
