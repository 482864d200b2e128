"""The state store (proute.store): what a served router learns (new users, feedback) survives
a restart and SIGKILL, replays to the same scores, compacts, exports and imports, and a
corrupt, truncated or foreign state file is refused without being written to."""

import json
import os
import random
import signal
import sqlite3
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402

from conftest import ROOT  # noqa: E402
from proute.cli import main  # noqa: E402
from proute.router import load_router  # noqa: E402
from proute.serving import loadtest  # noqa: E402
from proute.serving.app import create_app  # noqa: E402
from proute.store import (  # noqa: E402
    StoreError,
    apply,
    default_state_path,
    make_event,
    open_store,
    restore,
)
from serving_fixtures import ServerThread, train_tiny_router  # noqa: E402

PROBE = "What is 12 * 7?"


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory, cache_dir):
    return train_tiny_router(tmp_path_factory, cache_dir)


@pytest.fixture(scope="module")
def llms(router_dir):
    return json.loads((router_dir / "router.json").read_text())["llms"]


@pytest.fixture
def one_thread():
    """Torch on one thread here, as the served router (``--threads 1``): equal scores are
    compared bit for bit."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def url_of(path) -> str:
    return f"sqlite:///{path}"


def scores(router, user) -> dict:
    return router.route_single({"query": PROBE, "user_id": user})["scores"]


def http_scores(client, user) -> dict:
    resp = client.post("/v1/route", json={"query": PROBE, "user": user})
    assert resp.status_code == 200, resp.text
    return resp.json()["scores"]


def served(router_dir, store):
    """The app of the router restored from ``store``, as ``proute serve`` starts it."""
    restored = restore(load_router(router_dir), store)
    return create_app(restored.router, None, warmup=False, threads=1, store=store), restored


def learn(client, llms, n_feedback: int = 3) -> None:
    interactions = [{"query": "Write a haiku", "llm": llms[1], "reward": 0.9}]
    resp = client.post("/v1/users", json={"user": "newbie", "interactions": interactions})
    assert resp.status_code == 200, resp.text
    for i in range(n_feedback):
        fb = {"user": 3, "query": f"Compute {i} + {i}", "llm": llms[i % len(llms)], "outcome": 0.2 * i}
        resp = client.post("/v1/feedback", json=fb)
        assert resp.status_code == 200, resp.text


# ---------------------------------------------------------------------------- restart
def test_restart_keeps_an_added_user_and_feedback(router_dir, llms, tmp_path, one_thread):
    url = url_of(tmp_path / "state.sqlite")
    exported = {p.name: p.read_bytes() for p in router_dir.iterdir()}
    before = scores(load_router(router_dir), 3)
    with open_store(url, router_dir) as store:
        app, _ = served(router_dir, store)
        with ServerThread(app) as s, httpx.Client(base_url=s.url, timeout=60) as c:
            learn(c, llms)
            live3, live_new = http_scores(c, 3), http_scores(c, "newbie")
    assert live3 != before  # the feedback moved user 3
    with open_store(url, router_dir) as store:  # the restart
        app, restored = served(router_dir, store)
        assert (restored.replayed, restored.refused) == (4, 0)
        with ServerThread(app) as s, httpx.Client(base_url=s.url, timeout=60) as c:
            assert http_scores(c, 3) == live3
            assert http_scores(c, "newbie") == live_new
            info = c.get("/v1/users/newbie").json()
            assert info["origin"] == "added" and info["events"] == 1 and info["interactions"] == 1
            assert info["method"] == restored.router.new_user_method and info["last_update"]
            info3 = c.get("/v1/users/3").json()
            assert info3["origin"] == "trained" and info3["events"] == 3 and info3["interactions"] == 3
            assert c.get("/v1/users/nobody").status_code == 404
    assert {p.name: p.read_bytes() for p in router_dir.iterdir()} == exported  # read-only


def test_one_writer_a_second_server_on_the_state_is_refused(router_dir, tmp_path):
    url = url_of(tmp_path / "state.sqlite")
    with open_store(url, router_dir, exclusive=True) as store:
        store.append(make_event("add_user", user_id="a", interactions=[]))
        db = store._db  # durable on power loss too: the WAL is fsynced at every commit
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        with pytest.raises(StoreError, match="in use by another process"):
            open_store(url, router_dir, exclusive=True)
    with open_store(url, router_dir, exclusive=True) as store:  # released on close
        assert [e.args["user_id"] for e in store.events_after(0)] == ["a"]


def test_a_failed_append_is_503_and_nothing_is_applied(router_dir, llms, tmp_path):
    store = open_store(url_of(tmp_path / "state.sqlite"), router_dir)
    app, restored = served(router_dir, store)
    router = restored.router
    before = scores(router, 3)
    with ServerThread(app) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        # a feedback the router refuses (unknown user) is not kept in the store
        fb = {"user": "stranger", "query": "hi", "llm": llms[0], "outcome": 0.5}
        assert c.post("/v1/feedback", json=fb).status_code == 404
        assert list(store.events_after(0)) == [] and store.user_summary("stranger") == (0, None)
        store.close()  # the store fails from now on
        resp = c.post("/v1/feedback", json={**fb, "user": 3})
        assert resp.status_code == 503 and "state store" in resp.json()["error"]["message"]
        resp = c.post("/v1/users", json={"user": "newbie", "interactions": []})
        assert resp.status_code == 503
    assert scores(router, 3) == before and "newbie" not in router.users


# ---------------------------------------------------------------------------- SIGKILL
def _start(router_dir, url, port):
    cmd = [sys.executable, "-m", "proute.cli", "serve", str(router_dir), "--state", url]
    cmd += ["--port", str(port), "--threads", "1"]
    return loadtest.start(cmd, f"http://127.0.0.1:{port}/health", cwd=ROOT)


def _burst(base: str, bodies: list[dict], kill_after: int, proc) -> list[str]:
    """Send ``bodies`` from 4 clients at once; SIGKILL the server once ``kill_after`` got a
    200. The queries of the acknowledged ones."""
    acked: list[str] = []
    todo = list(bodies)
    lock = threading.Lock()

    def client():
        with httpx.Client(base_url=base, timeout=30) as c:
            while True:
                with lock:
                    if not todo:
                        return
                    body = todo.pop(0)
                try:
                    resp = c.post("/v1/feedback", json=body)
                except httpx.HTTPError:
                    continue
                if resp.status_code == 200:
                    with lock:
                        acked.append(body["query"])

    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < kill_after and time.monotonic() < deadline and any(t.is_alive() for t in threads):
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    for t in threads:
        t.join(30)
    return list(acked)


def _expected_scores(router_dir, url):
    """The stored events' queries, and user 3's scores on a fresh router fed exactly them."""
    router = load_router(router_dir)
    with open_store(url, router_dir) as store:
        events = list(store.events_after(0))
    for e in events:
        apply(router, e)
    return [e.args["query"] for e in events], scores(router, 3)


def sigkill_trials(router_dir, llms, tmp_path, n: int) -> None:
    url, rng = url_of(tmp_path / "state.sqlite"), random.Random(17)
    sent: list[str] = []
    acked: list[str] = []
    for trial in range(n + 1):
        stored, expected = _expected_scores(router_dir, url)  # before the server locks it
        assert set(acked) <= set(stored) <= set(sent)  # every 200 was kept, nothing invented
        print(f"trial {trial}: {len(sent)} sent, {len(acked)} acknowledged, {len(stored)} stored")
        port = loadtest.free_port()
        proc = _start(router_dir, url, port)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=30) as c:
                assert http_scores(c, 3) == expected
                assert c.get("/v1/users/3").json()["events"] == len(stored)
            if trial == n:
                break
            bodies = [
                {"user": 3, "query": f"trial {trial} q{i}: {i} + {trial}?", "llm": rng.choice(llms)}
                for i in range(20)
            ]
            bodies = [{**b, "outcome": round(rng.random(), 3)} for b in bodies]
            sent += [b["query"] for b in bodies]
            acked += _burst(base, bodies, rng.randint(2, 12), proc)
        finally:
            if proc.poll() is None:
                loadtest.stop(proc)
    assert len(acked) >= 2 * n


def test_sigkill_mid_burst_loses_no_acknowledged_event(router_dir, llms, tmp_path, one_thread):
    sigkill_trials(router_dir, llms, tmp_path, n=2)


@pytest.mark.slow
def test_sigkill_mid_burst_ten_trials(router_dir, llms, tmp_path, one_thread):
    sigkill_trials(router_dir, llms, tmp_path, n=10)


# ---------------------------------------------------------------------------- files
def _store_with_events(router_dir, llms, path, snapshot: bool = False):
    """A state file holding a new user and three feedback events (and a snapshot); the
    router fed them, live."""
    router = load_router(router_dir)
    events = [
        make_event(
            "add_user", user_id="newbie", interactions=[{"query": "hi", "llm": llms[1], "reward": 0.9}]
        )
    ]
    events += [
        make_event(
            "feedback", user_id=3, query=f"Compute {i}", llm=llms[i], outcome=0.3 * i, unknown_user="error"
        )
        for i in range(3)
    ]
    with open_store(url_of(path), router_dir) as store:
        for e in events:
            store.append(e)
            apply(router, e)
        if snapshot:
            from proute.store import snapshot_blob

            store.write_snapshot(store.last_seq(), snapshot_blob(router))
    return router


def _cli(capsys, *argv) -> int:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        _cli.last = str(exc.code)
        return exc.code if isinstance(exc.code, int) else 1
    _cli.last = capsys.readouterr().err
    return code


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "foreign"])
def test_a_damaged_state_file_is_refused_naming_it_and_left_as_it_was(
    router_dir, llms, tmp_path, capsys, damage
):
    path = tmp_path / "state.sqlite"
    if damage == "garbage":
        path.write_bytes(b"not a database at all\n" * 50)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "foreign":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE t (x)")
    else:
        _store_with_events(router_dir, llms, path, snapshot=True)
        data = path.read_bytes()
        assert len(data) > 100_000  # the snapshot spans many pages
        path.write_bytes(data[: len(data) // 2])
    before = path.read_bytes()
    with pytest.raises(StoreError, match=str(path)):
        open_store(url_of(path), router_dir)
    code = _cli(capsys, "serve", router_dir, "--state", url_of(path), "--port", "9")
    assert code != 0 and str(path) in _cli.last, _cli.last
    code = _cli(capsys, "state", "compact", "--state", url_of(path), "--router", router_dir)
    assert code != 0 and str(path) in _cli.last, _cli.last
    assert path.read_bytes() == before


def test_replay_onto_another_router_is_refused(router_dir, llms, tmp_path, capsys):
    path = tmp_path / "state.sqlite"
    router = _store_with_events(router_dir, llms, path)
    other = router.save(tmp_path / "other")  # a valid router, not the one the state is of
    before = path.read_bytes()
    with pytest.raises(StoreError, match="belongs to another router") as err:
        open_store(url_of(path), other)
    assert str(path) in str(err.value) and str(other / "router.json") in str(err.value)
    code = _cli(capsys, "serve", other, "--state", url_of(path), "--port", "9")
    assert code != 0 and "another router" in _cli.last
    assert path.read_bytes() == before


def test_the_default_state_file_is_beside_the_router_never_in_it(router_dir):
    path = default_state_path(router_dir)
    assert path.parent == router_dir.resolve().parent and path.name == "router.state.sqlite"
    from proute.cli.parser import build_parser

    assert build_parser().parse_args(["serve", str(router_dir)]).state is None  # no silent memory
    with open_store("memory", router_dir, exclusive=True) as store:  # only when asked for
        assert (
            store.url == "memory" and store.append(make_event("add_user", user_id="a", interactions=[])) == 1
        )
    with open_store("memory", router_dir) as store:
        assert list(store.events_after(0)) == []  # nothing survives
    with pytest.raises(StoreError, match="unsupported state URL"):
        open_store("postgresql://db/proute", router_dir)


# ---------------------------------------------------------------------------- tools
def test_compact_keeps_scores_identical(router_dir, llms, tmp_path, capsys, one_thread):
    path = tmp_path / "state.sqlite"
    live = _store_with_events(router_dir, llms, path)
    want = scores(live, 3), scores(live, "newbie")
    assert _cli(capsys, "state", "compact", "--state", url_of(path)) == 0, _cli.last
    with open_store(url_of(path), router_dir) as store:
        assert list(store.events_after(0)) == [] and store.latest_snapshot()[0] == 4
        assert store.user_summary("3")[0] == 3  # the counts outlive the compacted events
        restored = restore(load_router(router_dir), store)
        assert (restored.snapshot_seq, restored.replayed) == (4, 0)
        assert (scores(restored.router, 3), scores(restored.router, "newbie")) == want
        # events after the snapshot replay on top of it
        e = make_event(
            "feedback", user_id=3, query="Compute 9", llm=llms[2], outcome=1.0, unknown_user="error"
        )
        assert store.append(e) == 5
        apply(live, e)
    with open_store(url_of(path), router_dir) as store:
        restored = restore(load_router(router_dir), store)
        assert restored.replayed == 1 and scores(restored.router, 3) == scores(live, 3)


def test_export_then_import_replays_to_the_same_scores(router_dir, llms, tmp_path, capsys, one_thread):
    src, dst, jsonl = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "events.jsonl"
    live = _store_with_events(router_dir, llms, src)
    assert _cli(capsys, "state", "export", "--state", url_of(src), "--file", jsonl) == 0, _cli.last
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["add_user", "feedback", "feedback", "feedback"]
    assert [x["seq"] for x in lines] == [1, 2, 3, 4] and all(x["ts"] > 0 for x in lines)
    # a new store needs its router
    assert _cli(capsys, "state", "import", "--state", url_of(dst), "--file", jsonl) != 0
    assert "--router" in _cli.last and not dst.exists()
    argv = ["state", "import", "--state", url_of(dst), "--file", jsonl, "--router", router_dir]
    assert _cli(capsys, *argv) == 0, _cli.last
    with open_store(url_of(dst), router_dir) as store:
        assert [e.args for e in store.events_after(0)] == [x["args"] for x in lines]
        restored = restore(load_router(router_dir), store)
    assert scores(restored.router, 3) == scores(live, 3)
    assert scores(restored.router, "newbie") == scores(live, "newbie")


def test_reading_a_user_needs_a_key_that_may_update_it(router_dir, tmp_path):
    import contextlib
    import io

    path = tmp_path / "keys.yaml"

    def create_key(*args) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["keys", "create", *args, "--keys", str(path)]) == 0
        return out.getvalue().strip()

    bound, unbound = create_key("--role", "app", "--users", "3"), create_key("--role", "app")
    app = create_app(load_router(router_dir), None, warmup=False, api_keys=path, key_rate="none")
    with ServerThread(app) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        get = lambda user, key: c.get(f"/v1/users/{user}", headers={"authorization": f"Bearer {key}"})  # noqa: E731
        assert get(3, bound).status_code == 200 and get(3, bound).json()["origin"] == "trained"
        assert get(4, bound).status_code == 403 and get(3, unbound).status_code == 403
        assert c.get("/v1/users/3").status_code == 401


def test_feedback_taken_under_the_average_policy_replays_as_it_was_applied(router_dir, llms, tmp_path):
    url = url_of(tmp_path / "state.sqlite")
    live = load_router(router_dir)
    live.unknown_user = "average"  # the server ran with --unknown-user average
    e = make_event(
        "feedback", user_id="stranger", query="hi", llm=llms[0], outcome=0.7, unknown_user="average"
    )
    with open_store(url, router_dir) as store:
        store.append(e)
        apply(live, e)
    with open_store(url, router_dir) as store:  # restarted with the default policy
        restored = restore(load_router(router_dir), store)
    assert restored.refused == 0 and "stranger" in restored.router.users
    assert restored.router.unknown_user == "error"  # the policy is the new server's again
    assert scores(restored.router, "stranger") == scores(live, "stranger")
