"""The benchmark pieces behind ``scripts/bench.py`` on the fixtures (the whole script runs
in ``tests/test_cli.py::test_bench_script_runs_and_writes_its_results``, marked slow)."""

from __future__ import annotations

import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from proute.benchmarks import scaling
from proute.benchmarks.training import median_time

ROOT = Path(__file__).resolve().parents[1]


def test_bench_script_lists_its_flags():
    out = subprocess.run(
        [sys.executable, "scripts/bench.py", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for flag in ("--repeats", "--skip-training", "--skip-scale", "--scale-users", "--queries-per-user"):
        assert flag in out.stdout
    assert "--scale-child" not in out.stdout  # internal


def test_slope_and_median_time():
    assert scaling.slope([1, 10, 100], [2, 200, 20000]) == pytest.approx(2.0)
    assert scaling.slope([1], [1]) != scaling.slope([1], [1])  # one point: NaN
    assert median_time(lambda: None, 3) >= 0.0


def test_one_scaling_point_runs_in_a_child_and_plots(tmp_path, fixture_overrides, capsys):
    args = Namespace(scale_users=[2], queries_per_user=5, override=fixture_overrides)
    result = scaling.bench_scale(args)
    assert [(p["users"], p["mode"]) for p in result["points"]] == [(2, "minibatch"), (2, "fullgraph")]
    assert all(p["ok"] and p["num_train_edges"] > 0 for p in result["points"]), result
    assert result["slopes"] == {}  # one point: no slope
    assert "== 4. scaling" in capsys.readouterr().out
    two = {"points": result["points"] * 2, "slopes": {}}
    for i, p in enumerate(two["points"]):
        two["points"][i] = {**p, "num_train_edges": p["num_train_edges"] * (1 + i // 2)}
    two["slopes"] = scaling._slopes(two["points"])
    assert set(two["slopes"]) == {"minibatch", "fullgraph"}
    scaling.plot_scale(two, tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").stat().st_size > 0
