"""The `proute` command line and `python -m proute.study report`, run as a user would."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, train_overrides


def proute(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """``python -m proute.cli ARGS`` from the project folder."""
    return subprocess.run(
        [sys.executable, "-m", "proute.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


def report(*args: str) -> subprocess.CompletedProcess:
    """``python -m proute.study report ARGS`` from the project folder (was scripts/report.py)."""
    return subprocess.run(
        [sys.executable, "-m", "proute.study", "report", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("cache")
    out = proute("train", *train_overrides(run_dir, cache), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dir


def test_cli_train_writes_a_run(trained_run):
    for name in ("config.yaml", "environment.json", "metrics.json", "per_user.png", "router/router.json"):
        assert (trained_run / name).is_file(), name
    env = json.loads((trained_run / "environment.json").read_text())
    assert env["versions"]["dgl"].startswith("2.") and "commit" in env["git"]


def test_cli_infer_single_and_file(trained_run, tmp_path):
    router = str(trained_run / "router")
    out = proute(
        "infer",
        router,
        "--query",
        "Write a function that reverses a string",
        "--user",
        "8",
        "--task",
        "human_eval",
        "--scores",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["task"] == "human_eval" and result["user_id"] == 8
    assert result["model_name"] == max(result["scores"], key=result["scores"].get)
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        '{"query": "What is 2+2?", "user_id": 0}\n\n{"query": "Capital of France?", "user_id": 1}\nnot json\n'
    )
    out = proute("infer", router, "--file", str(requests))
    assert out.returncode != 0 and "line 4: invalid JSON" in out.stderr
    requests.write_text(
        '{"query": "What is 2+2?", "user_id": 0}\n{"query": "Capital of France?", "user_id": 1}\n'
    )
    out = proute("infer", router, "--file", str(requests))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["user_id"] for r in lines] == [0, 1]


def test_report_script(trained_run, tmp_path):
    out = report(str(trained_run), "--out", str(tmp_path / "report.md"))
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "report.md").read_text()
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert f"| GNN | {metrics['test']['overall']['reward']:.4f}" in text
    assert "best fixed LLM per user" in text and "| per_user |" in text


def test_cli_infer_errors_are_one_line(trained_run, tmp_path):
    out = proute("infer", str(trained_run / "router"), "--query", "hi", "--user", "77")
    assert out.returncode != 0
    assert "unknown user_id 77" in out.stderr and "Traceback" not in out.stderr
    out = proute("infer", str(tmp_path), "--query", "hi", "--user", "1")
    assert "missing router.json" in out.stderr and "Traceback" not in out.stderr


def test_report_latest_picks_the_newest_finished_run(trained_run, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "2026-01-01_00-00-00")
    (runs / "2026-01-02_00-00-00").mkdir()  # a failed run: no metrics.json
    out = report("--latest", str(runs))
    assert out.returncode == 0, out.stderr
    assert "2026-01-01_00-00-00" in out.stdout
    out = report("--latest", str(tmp_path / "x"))
    assert out.returncode != 0 and "no finished run" in out.stderr


@pytest.mark.slow
def test_bench_script_runs_and_writes_its_results(tmp_path, cache_dir):
    """scripts/bench.py end to end on the fixtures: every section prints its numbers and the
    JSON and plot are written (the numbers themselves are not asserted)."""
    fixtures = [
        f"--override=paths.data_dir={ROOT / 'tests' / 'data'}",
        f"--override=paths.cache_dir={cache_dir}",
        "--override=text_encoder.show_progress=false",
        "--override=train_epoch=2",
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/bench.py",
            "--repeats",
            "1",
            "--scale-users",
            "2,3",
            "--queries-per-user",
            "5",
            "--out",
            str(tmp_path),
            *fixtures,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for section in ("== 1. training", "== 2. one training step", "== 3. routing latency", "== 4. scaling"):
        assert section in proc.stdout
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["training"]["fullgraph"]["ok"] and result["training"]["minibatch"]["ok"]
    assert {p["users"] for p in result["scale"]["points"]} == {2, 3}
    assert all(p["ok"] for p in result["scale"]["points"])
    assert (tmp_path / "scaling.png").stat().st_size > 0
