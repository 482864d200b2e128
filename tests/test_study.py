"""scripts/study.py: a tiny study on the fixtures, end to end; resumable; failures reported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import FIXTURES, ROOT

STUDY = ROOT / "scripts" / "study.py"


def study(tmp_path, cache_dir, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        str(STUDY),
        "--runs",
        str(tmp_path / "runs"),
        "--out",
        str(tmp_path / "results"),
        "--override",
        "debug=default",
        "--override",
        f"paths.data_dir={FIXTURES}",
        "--override",
        f"paths.cache_dir={cache_dir}",
        "--bootstrap",
        "200",
        *args,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # about 80 s: two settings of real training runs, twice
def test_a_tiny_study_runs_aggregates_resumes_and_reports_failures(tmp_path, cache_dir):
    args = ("--settings", "default,new_users_k3", "--seeds", "42", "--no-notebook")
    first = study(tmp_path, cache_dir, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "2 to run" in first.stdout
    results = tmp_path / "results"
    for name in (
        "default.md",
        "default.csv",
        "new_users_k3.md",
        "new_users.md",
        "new_users.csv",
        "summary.md",
    ):
        assert (results / name).stat().st_size > 0, name
    assert (results / "default_cost_quality.png").stat().st_size > 1000
    table = (results / "default.md").read_text()
    for router in ("GNN (gold tasks)", "GNN (live, inferred tasks)", "per_user_task", "knn", "mf", "oracle"):
        assert f"| {router} |" in table, router
    assert "paired bootstrap" in table
    summary = (results / "summary.md").read_text()
    assert "## Headline" in summary and "new_users_k3" in summary and "CPU cores" in summary
    assert "k = 3" in (results / "new_users.md").read_text()

    # Again, with one more setting whose run fails: the finished runs are not recomputed, the
    # failure is reported, the study goes on and ends with a non-zero status.
    metrics = sorted((tmp_path / "runs").glob("*/seed42/metrics.json"))
    assert len(metrics) == 2
    mtimes = [m.stat().st_mtime_ns for m in metrics]
    config = tmp_path / "study.yaml"
    config.write_text(
        (ROOT / "conf" / "study.yaml").read_text()
        + "  broken:\n    overrides: [train_epoch=-1]\n    seeds: [42]\n"
    )
    second = study(
        tmp_path, cache_dir, *args[:1], "default,new_users_k3,broken", *args[2:], "--config", str(config)
    )
    assert second.returncode == 1, second.stdout[-3000:] + second.stderr[-3000:]
    assert "2 finished already (skipped), 1 to run" in second.stdout
    assert "FAILED broken/seed42" in second.stdout and "FAILED broken/seed42" in second.stderr
    assert "train_epoch" in second.stdout  # the run's own error message is shown
    assert [m.stat().st_mtime_ns for m in metrics] == mtimes
    summary = (results / "summary.md").read_text()
    assert "## Failed or missing runs" in summary and "broken/seed42" in summary
    assert "| broken | 0 of 1 | no finished run" in summary
    assert (results / "default.md").is_file()


@pytest.mark.slow
def test_the_study_exports_the_notebook(tmp_path, cache_dir):
    pytest.importorskip("nbconvert")
    done = study(tmp_path, cache_dir, "--settings", "default", "--seeds", "42")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    html = (tmp_path / "results" / "per_user_analysis.html").read_text()
    assert "<html" in html and "image/png" in html
    assert "per_user_analysis.html" in (tmp_path / "results" / "summary.md").read_text()
