"""The service commands of ``proute``: ``infer`` calling upstreams (``--route-only``,
``--upstreams``, ``--output`` written atomically), ``evaluate``, ``serve`` as a process,
and the load-test script (slow). Upstreams are the stub of proute.serving.stub_upstream on
127.0.0.1.
"""

import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402

from conftest import FIXTURES, ROOT  # noqa: E402
from proute.cli import main  # noqa: E402
from proute.serving import loadtest  # noqa: E402
from proute.serving.stub_upstream import stub_app  # noqa: E402
from serving_fixtures import KEY_ENV, ServerThread, train_tiny_router, write_upstreams  # noqa: E402


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory, cache_dir):
    return train_tiny_router(tmp_path_factory, cache_dir)


@pytest.fixture(scope="module")
def llms(router_dir):
    return json.loads((router_dir / "router.json").read_text())["llms"]


@pytest.fixture(scope="module")
def stub():
    with ServerThread(stub_app(stall_s=5.0)) as server:
        yield server


@pytest.fixture
def upstreams_file(stub, llms, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "cli-key")
    return write_upstreams(tmp_path / "upstreams.yaml", stub.url + "/v1", llms, timeout=1.0)


def run(capsys, *argv) -> tuple[int, str, str]:
    """``proute ARGV`` in this process (paths as strings): (exit status, stdout, stderr)."""
    argv = [str(a) for a in argv]
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if not isinstance(exc.code, int) and exc.code is not None:
            print(exc.code, file=sys.stderr)
    out = capsys.readouterr()
    return code, out.out, out.err


def ask(query: str, user: str = "0") -> list[str]:
    return ["--query", query, "--user", user]


def test_infer_route_only_and_with_upstreams(capsys, router_dir, upstreams_file, stub, llms):
    code, out, err = run(
        capsys, "infer", router_dir, *ask("What is 2 + 2?"), "--route-only", "--upstreams", upstreams_file
    )
    assert code == 0, err
    decision = json.loads(out)
    assert decision["model_name"] in llms and decision["score"] is not None
    code, out, err = run(capsys, "infer", router_dir, *ask("What is 2 + 2?"), "--upstreams", upstreams_file)
    assert code == 0, err
    llm = decision["model_name"]
    assert out.strip() == f"stub stub-{llm}: What is 2 + 2?"
    assert f"routed to {llm}" in err
    assert stub.server.config.app.state.calls[-1]["auth"] == "Bearer cli-key"
    # without --upstreams infer routes only, as before
    code, out, _ = run(capsys, "infer", str(router_dir), "--query", "What is 2 + 2?", "--user", "0")
    assert code == 0 and json.loads(out)["model_name"] == llm


def test_infer_user_is_read_by_the_one_rule(capsys, router_dir):
    """--user "007" is not user 7 (it was before), " 7 " is user 7, and a blank id is an
    error naming --user."""
    code, out, err = run(capsys, "infer", router_dir, *ask("What is 2 + 2?", " 7 "), "--route-only")
    assert code == 0, err
    assert json.loads(out)["user_id"] == 7
    code, out, err = run(capsys, "infer", router_dir, *ask("What is 2 + 2?", "007"), "--route-only")
    assert code == 1 and out == "" and "unknown user_id '007'" in err
    code, out, err = run(capsys, "infer", router_dir, *ask("What is 2 + 2?", " "), "--route-only")
    assert code == 1 and "field '--user'" in err and "Traceback" not in err


def test_infer_upstream_failure_is_one_line(capsys, router_dir, upstreams_file):
    code, out, err = run(capsys, "infer", router_dir, *ask("hi STUB_FAIL"), "--upstreams", upstreams_file)
    assert code == 1 and out == ""
    assert "proute infer: upstream '" in err and "HTTP 500" in err and "Traceback" not in err


def test_infer_file_output_atomic(capsys, router_dir, upstreams_file, tmp_path):
    requests = tmp_path / "requests.jsonl"
    lines = [
        {"query": "What is 2 + 2?", "user_id": 0},
        {"query": "Capital of France? STUB_FAIL", "user_id": 1},
        {"query": "Reverse a string in Python", "user_id": 2},
    ]
    requests.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out_file = tmp_path / "results.jsonl"
    code, out, err = run(
        capsys, "infer", str(router_dir), "--file", str(requests), "--output", str(out_file), "--route-only"
    )
    assert code == 0 and out == "", err
    routed = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert [r["user_id"] for r in routed] == [0, 1, 2] and all("answer" not in r for r in routed)
    assert oct(out_file.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode

    code, out, err = run(
        capsys,
        "infer",
        router_dir,
        "--file",
        str(requests),
        "--output",
        str(out_file),
        "--upstreams",
        upstreams_file,
    )
    assert code == 1 and "1 of 3 upstream calls failed" in err
    results = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert results[0]["answer"] == f"stub stub-{results[0]['model_name']}: What is 2 + 2?"
    assert "HTTP 500" in results[1]["error"] and "answer" not in results[1]
    assert results[2]["answer"].endswith("Reverse a string in Python")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left

    before = out_file.read_bytes()  # a bad request file changes nothing
    requests.write_text('{"query": "", "user_id": 0}\n')
    code, _, err = run(capsys, "infer", str(router_dir), "--file", str(requests), "--output", str(out_file))
    assert code == 1 and "line 1" in err and out_file.read_bytes() == before
    code, _, err = run(
        capsys, "infer", router_dir, "--file", str(requests), "--output", str(tmp_path / "no-dir" / "r.jsonl")
    )
    assert code == 1 and "folder does not exist" in err


def test_infer_bad_upstreams_file(capsys, router_dir, tmp_path):
    bad = tmp_path / "u.yaml"
    bad.write_text("llms: {}\n")
    code, out, err = run(
        capsys, "infer", str(router_dir), "--query", "hi", "--user", "0", "--upstreams", str(bad)
    )
    assert code == 1 and out == "" and "u.yaml" in err and "has no upstream for" in err


@pytest.fixture
def data(cache_dir) -> list[str]:
    """The overrides that evaluate on the fixture data."""
    return [f"paths.data_dir={FIXTURES}", f"paths.cache_dir={cache_dir}"]


def test_evaluate_prints_the_metrics_table(capsys, router_dir, data, tmp_path):
    out_json = tmp_path / "metrics.json"
    code, out, err = run(capsys, "evaluate", router_dir, *data, "--output", out_json)
    assert code == 0, err
    assert "| user | pairs | reward (gold task)" in out and "| **overall** |" in out
    metrics = json.loads(out_json.read_text())
    rows = [x for x in out.splitlines() if x.startswith("| ") and "**overall**" not in x][1:]
    assert len(rows) == len(metrics["gold"]["per_user"]) >= 2
    overall = metrics["gold"]["overall"]
    assert f"| {overall['reward']:.4f} |" in out and 0 <= metrics["task_accuracy"] <= 1
    assert metrics["gold"]["overall"]["n"] == metrics["live"]["overall"]["n"] == metrics["n"]
    code, _, err = run(capsys, "evaluate", str(router_dir), "notanoverride")
    assert code == 1 and "not a Hydra override" in err


def test_evaluate_split_and_unknown_users(capsys, router_dir, data):
    code, out, err = run(capsys, "evaluate", router_dir, *data, "--split", "val", "users=archetypes")
    assert code == 0, err
    assert "'val' split" in out and "unknown to the router" in err  # 12 archetype users, 9 known


def test_serve_command_as_a_process(router_dir, upstreams_file):
    port = loadtest.free_port()
    cmd = [sys.executable, "-m", "proute.cli", "serve", str(router_dir), "--port", str(port)]
    cmd += ["--upstreams", str(upstreams_file), "--unknown-user", "error"]
    proc = loadtest.start(cmd, f"http://127.0.0.1:{port}/health", cwd=ROOT)
    try:
        body = {"model": "proute", "user": "0", "messages": [{"role": "user", "content": "hi there"}]}
        resp = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"].endswith(": hi there")
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["unknown_user"] == "error"
    finally:
        loadtest.stop(proc)


def test_serve_command_refuses_a_bad_upstreams_file(router_dir, tmp_path):
    bad = tmp_path / "u.yaml"
    bad.write_text(
        "defaults: {base_url: 'https://llm.invalid/v1', api_key_env: PROUTE_SURELY_UNSET}\nllms: {}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROUTE_SURELY_UNSET"}
    t = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "proute.cli",
            "serve",
            str(router_dir),
            "--upstreams",
            str(bad),
            "--port",
            "9",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert out.returncode == 1 and "PROUTE_SURELY_UNSET" in out.stderr and "Traceback" not in out.stderr
    assert time.monotonic() - t < 120


@pytest.mark.slow
def test_loadtest_script_tiny(router_dir, tmp_path):
    out_json = tmp_path / "load.json"
    cmd = [sys.executable, "scripts/loadtest.py", str(router_dir), "--clients", "4", "--requests", "40"]
    cmd += ["--max-seconds", "60", "--out", str(out_json)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out_json.read_text())
    assert [p["phase"] for p in result["phases"]] == ["route", "chat via stub upstream"]
    for p in result["phases"]:
        assert p["errors"] == 0 and p["ok"] == 40 and p["server_peak_rss_mib"] > 0
        assert p["route_batches"] <= 40
