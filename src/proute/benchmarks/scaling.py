"""Section 4 of the benchmarks: scaling with ``experiment=scale`` (simulated users each
asking ``queries_per_user`` of the bundled queries) for a growing number of users.

Each point runs in its own process (``python -m proute.benchmarks.scaling USERS
QUERIES_PER_USER OUT [OVERRIDE ...]``, under a :data:`MEM_LIMIT` address-space limit): it
prepares the data and graph once and trains one epoch in each mode (a mode that does not
fit is reported as such). The parent prints each point, fits the log-log slopes of time and
peak memory against train edges, and plots them (:func:`plot_scale`).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

import numpy as np

from proute.config import compose
from proute.config.paths import project_root

MEM_LIMIT = 22 * 2**30
#: Mini-batch first: peak RSS only grows, so the full-graph figure includes the data's share.
SCALE_MODES = ("minibatch", "fullgraph")


def slope(x, y) -> float:
    """The slope of ``log y`` against ``log x`` (NaN with fewer than two points)."""
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(x, y, 1)[0]) if len(x) >= 2 else float("nan")


def _one_epoch(base: list[str], mode: str, rg) -> dict[str, Any]:
    """One epoch (with its validation pass) of trainer ``mode``, or why it did not fit."""
    # Local imports: torch loads only after scale_child has capped the address space.
    import torch
    from hydra.utils import instantiate

    from proute.training.timing import peak_rss_mb

    try:
        c = compose("train", [*base, f"trainer={mode}"])
        torch.manual_seed(0)
        model = instantiate(c.model)(rg)
        trainer = instantiate(c.trainer)
        trainer.fit(model, rg, instantiate(c.masking), torch.Generator().manual_seed(0), quiet=True)
        h = trainer.history[-1]
        return {
            "ok": True,
            "seconds_per_epoch": h["train/epoch_seconds"] + h["val/seconds"],
            "train_seconds": h["train/epoch_seconds"],
            "val_seconds": h["val/seconds"],
            "pairs_per_second": h["train/pairs"] / h["train/epoch_seconds"],
            "peak_rss_mb": peak_rss_mb(),
            "val_reward": h["val/reward"],
        }
    except Exception as exc:  # noqa: BLE001 - a point that does not fit is a result
        return {
            "ok": False,
            "error": f"{type(exc).__name__}: {str(exc)[:200]}",
            "peak_rss_mb": peak_rss_mb(),
        }


def scale_child(users: int, queries_per_user: int, out: Path, extra: list[str]) -> None:
    """One scaling point, in its own process: prepare the data and graph once, then one
    epoch (with its validation pass) in each mode, mini-batch first; peak RSS is read after
    each mode (it only grows, so the full-graph figure includes the data's share)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT, MEM_LIMIT))
    # Local imports: after the memory cap, so torch and DGL load under it.
    from proute.data.pipeline import prepare_from_config
    from proute.train import build_graph_from
    from proute.training.timing import peak_rss_mb

    base = [
        "experiment=scale",
        f"users.num_users={users}",
        f"users.queries_per_user={queries_per_user}",
        "logger=none",
        "train_epoch=1",
        "quiet=true",
        *extra,
    ]
    t = time.perf_counter()
    cfg = compose("train", base)
    prepared = prepare_from_config(cfg)
    rg = build_graph_from(prepared, cfg.graph)
    res: dict[str, Any] = {
        "users": users,
        "num_query_nodes": rg.num_query_nodes,
        "num_train_edges": rg.num_outcome_edges,
        "data_seconds": time.perf_counter() - t,
        "data_peak_rss_mb": peak_rss_mb(),
    }
    del prepared
    for mode in SCALE_MODES:
        res[mode] = _one_epoch(base, mode, rg)
        out.write_text(json.dumps(res))


def _run_point(users: int, args: Namespace) -> dict[str, Any]:
    """One point in a child process; a child that died is reported in each mode it missed."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "point.json"
        cmd = [sys.executable, "-m", "proute.benchmarks.scaling", str(users), str(args.queries_per_user)]
        cmd += [str(out), *args.override]
        proc = subprocess.run(cmd, cwd=project_root(), capture_output=True, text=True)
        point = json.loads(out.read_text()) if out.exists() else {"users": users}
    if proc.returncode != 0 and "fullgraph" not in point:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        point.setdefault("fullgraph", {"ok": False, "error": f"process died: {tail[0][:200]}"})
        point.setdefault("minibatch", {"ok": False, "error": f"process died: {tail[0][:200]}"})
    return point


def _print_point(users: int, point: dict[str, Any]) -> None:
    print(
        f"{users:>5} users: {point.get('num_query_nodes', 0):>9,} query nodes, "
        f"{point.get('num_train_edges', 0):>11,} train edges, data + graph "
        f"{point.get('data_seconds', float('nan')):.0f} s"
    )
    for mode in SCALE_MODES:
        r = point.get(mode, {"ok": False, "error": "not run"})
        if r["ok"]:
            print(
                f"      {mode:>9}: {r['seconds_per_epoch']:8.1f} s/epoch "
                f"({r['train_seconds']:.1f} train + {r['val_seconds']:.1f} val), "
                f"{r['pairs_per_second']:>9,.0f} pairs/s, peak RSS "
                f"{r['peak_rss_mb']:>7,.0f} MiB"
            )
        else:
            print(f"      {mode:>9}: does not fit / failed: {r['error']}")


def _slopes(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per mode with two or more points that fit: the log-log slopes against train edges."""
    fits = {}
    for mode in SCALE_MODES:
        ok = [r for r in rows if r["mode"] == mode and r["ok"]]
        if len(ok) >= 2:
            e = [r["num_train_edges"] for r in ok]
            fits[mode] = {
                "time_slope": slope(e, [r["seconds_per_epoch"] for r in ok]),
                "memory_slope": slope(e, [r["peak_rss_mb"] for r in ok]),
            }
            print(
                f"{mode:>9}: log-log slope against edges: time {fits[mode]['time_slope']:.2f}, "
                f"peak memory {fits[mode]['memory_slope']:.2f}"
            )
    return fits


def bench_scale(args: Namespace) -> dict[str, Any]:
    """Every point of ``args.scale_users``, printed; the rows per (point, mode) and slopes."""
    print(f"\n== 4. scaling: experiment=scale ({args.queries_per_user} queries per user), one epoch per mode")
    rows = []
    for users in args.scale_users:
        point = _run_point(users, args)
        _print_point(users, point)
        for mode in SCALE_MODES:
            r = point.get(mode, {"ok": False, "error": "not run"})
            rows.append(
                {
                    "users": users,
                    "mode": mode,
                    "num_query_nodes": point.get("num_query_nodes"),
                    "num_train_edges": point.get("num_train_edges"),
                    **r,
                }
            )
    return {"points": rows, "slopes": _slopes(rows)}


def plot_scale(scale: dict[str, Any], path: Path) -> None:
    """Time and peak memory per epoch against train edges, log-log, one line per mode."""
    import matplotlib  # local: only the scaling section plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for mode, marker in (("minibatch", "o"), ("fullgraph", "s")):
        ok = [r for r in scale["points"] if r["mode"] == mode and r["ok"]]
        if not ok:
            continue
        e = [r["num_train_edges"] for r in ok]
        fit = scale["slopes"].get(mode, {})
        for ax, key, what in (
            (axes[0], "seconds_per_epoch", "time_slope"),
            (axes[1], "peak_rss_mb", "memory_slope"),
        ):
            label = f"{mode} (slope {fit[what]:.2f})" if what in fit else mode
            ax.loglog(e, [r[key] for r in ok], marker=marker, label=label)
    axes[0].set_ylabel("seconds per epoch")
    axes[1].set_ylabel("peak RSS (MiB)")
    for ax in axes:
        ax.set_xlabel("train query->LLM edges")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("proute scaling (experiment=scale, 2-core CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":  # one point: USERS QUERIES_PER_USER OUT [OVERRIDE ...]
    scale_child(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
