"""Section 1 of the benchmarks: real training runs, each ``python -m proute.train`` in a
subprocess, and the timing helper the other sections share."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path
from typing import Any, Callable

from proute.config.paths import project_root

MODES = ("fullgraph", "minibatch")


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """The median wall time of ``repeats`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def train_run(overrides: list[str], limit: int | None = None) -> dict[str, Any]:
    """One ``python -m proute.train`` run in a subprocess; its metrics, or the failure."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "proute.train",
            "logger=none",
            "quiet=true",
            "export_router=false",
            f"hydra.run.dir={tmp}/run",
            *overrides,
        ]

        def cap() -> None:
            if limit:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=project_root(), capture_output=True, text=True, preexec_fn=cap)
        wall = time.perf_counter() - t
        metrics = Path(tmp) / "run" / "metrics.json"
        if proc.returncode != 0 or not metrics.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            return {"ok": False, "error": tail[0][:300], "wall_seconds": wall}
        m = json.loads(metrics.read_text())
    return {"ok": True, "wall_seconds": wall, **m["timing"], "test_reward": m["test"]["overall"]["reward"]}


def bench_training(args: Namespace) -> dict[str, Any]:
    """Train on the default data and config in each mode; print and return the timings."""
    print("\n== 1. training on the default data (default config, seed 42)")
    out = {}
    for mode in MODES:
        r = train_run([f"trainer={mode}", *args.override])
        out[mode] = r
        if not r["ok"]:
            print(f"{mode:>10}: failed: {r['error']}")
            continue
        print(
            f"{mode:>10}: {r['train_seconds']:6.1f} s training, {r['epochs']} epochs (best "
            f"{r['best_epoch']}), {r['seconds_per_epoch']:.2f} s/epoch, time to best "
            f"{r['time_to_best_seconds']:.1f} s, {r['train_pairs_per_second']:,.0f} pairs/s, "
            f"peak RSS {r['peak_rss_mb']:,.0f} MiB, test reward {r['test_reward']:.4f}"
        )
    return out
