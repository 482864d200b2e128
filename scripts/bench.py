"""Benchmarks (prints numbers and writes them; nothing is asserted).

    python scripts/bench.py [--skip-scale] [--scale-users 10,100,1000] [--repeats N]
                            [--out experiments/bench]

1. training on the default data and config, both modes (trainer=fullgraph, trainer=minibatch):
   time to best validation, seconds per epoch, trained (query, LLM) pairs per second,
   peak RSS, test reward — each a real ``python -m proute.train`` run in a subprocess;
2. one training step of each conv variant in each trainer (median over repeats);
3. routing latency: one query through the exported-router path (cached context, no graph
   pass) vs one full-graph forward, and the throughput of a batch of 256;
4. scaling: ``experiment=scale`` (simulated users each asking 2,000 of the bundled queries)
   for a growing number of users: per point one subprocess (22 GiB address-space limit)
   prepares the data and graph once and trains one epoch in each mode (a mode that does not
   fit is reported as such); the log-log slopes of time and peak memory against train
   edges, and a plot.

Writes ``<out>/bench.json`` and ``<out>/scaling.png`` and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEM_LIMIT = 22 * 2**30


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def train_run(overrides: list[str], limit: int | None = None) -> dict:
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

        def cap():
            if limit:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, preexec_fn=cap)
        wall = time.perf_counter() - t
        metrics = Path(tmp) / "run" / "metrics.json"
        if proc.returncode != 0 or not metrics.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            return {"ok": False, "error": tail[0][:300], "wall_seconds": wall}
        m = json.loads(metrics.read_text())
    return {"ok": True, "wall_seconds": wall, **m["timing"], "test_reward": m["test"]["overall"]["reward"]}


def bench_training(args) -> dict:
    print("\n== 1. training on the default data (default config, seed 42)")
    out = {}
    for mode in ("fullgraph", "minibatch"):
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


def bench_steps_and_routing(args) -> dict:
    import torch
    from hydra.utils import instantiate

    from proute.config import compose
    from proute.data.pipeline import prepare_from_config
    from proute.train import build_graph_from

    cfg = compose("train", ["logger=none", *args.override])
    prepared = prepare_from_config(cfg)
    rg = build_graph_from(prepared, cfg.graph)
    out: dict = {"steps": {}, "routing": {}}
    print(f"\n== 2. one training step (forward + backward), each trainer, {rg}")
    for conv in ("graphconv", "sage", "gat", "gatv2"):
        out["steps"][conv] = {}
        for mode in ("fullgraph", "minibatch"):
            c = compose("train", ["logger=none", f"model={conv}", f"trainer={mode}", *args.override])
            model = instantiate(c.model)(rg)
            trainer = instantiate(c.trainer)
            trainer.prepare(model, rg, instantiate(c.masking))
            gen = torch.Generator().manual_seed(0)
            trainer.start_epoch(0, gen)
            model.train()
            sec = median_time(lambda m=model, t=trainer: t.train_step(m, rg, gen), args.repeats)  # noqa: B023
            out["steps"][conv][mode] = sec
        print(
            f"{conv:>10}: "
            + ", ".join(f"{m} {s:6.3f} s" for m, s in out["steps"][conv].items())
            + f" per step (median of {args.repeats})"
        )

    print("\n== 3. routing latency (graphconv, untrained weights: timing only)")
    model = instantiate(cfg.model)(rg).eval()
    with torch.no_grad():
        cache = model.context_cache(rg.graph)
    test = rg.nodes_of("test")
    feat = rg.graph.nodes["query"].data["feat"][test]
    users, tasks = rg.query_user[test], rg.query_task[test]
    rng = np.random.default_rng(0)

    def one():
        i = int(rng.integers(len(test)))
        with torch.no_grad():
            model.score_new(cache, feat[i : i + 1], users[i : i + 1], tasks[i : i + 1])

    def full():
        with torch.no_grad():
            h = model(rg.graph)
            model.score_all(h, test[:1], users[:1])

    def batch():
        with torch.no_grad():
            model.score_new(cache, feat[:256], users[:256], tasks[:256])

    single, whole, b = median_time(one, 50), median_time(full, args.repeats), median_time(batch, 20)
    out["routing"] = {
        "one_query_ms": 1000 * single,
        "full_graph_forward_ms": 1000 * whole,
        "batch256_ms": 1000 * b,
        "batch256_queries_per_second": 256 / b,
    }
    print(
        f"one query, cached context: {1000 * single:.2f} ms; one full-graph forward: "
        f"{1000 * whole:.0f} ms ({whole / single:.0f}x); batch of 256: {1000 * b:.1f} ms "
        f"({256 / b:,.0f} queries/s)"
    )
    return out


def slope(x, y) -> float:
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(x, y, 1)[0]) if len(x) >= 2 else float("nan")


def scale_child(users: int, queries_per_user: int, out: Path, extra: list[str]) -> None:
    """One scaling point, in its own process: prepare the data and graph once, then one
    epoch (with its validation pass) in each mode, mini-batch first; peak RSS is read after
    each mode (it only grows, so the full-graph figure includes the data's share)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT, MEM_LIMIT))
    import torch
    from hydra.utils import instantiate

    from proute.config import compose
    from proute.data.pipeline import prepare_from_config
    from proute.train import build_graph_from, peak_rss_mb

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
    res: dict = {
        "users": users,
        "num_query_nodes": rg.num_query_nodes,
        "num_train_edges": rg.num_outcome_edges,
        "data_seconds": time.perf_counter() - t,
        "data_peak_rss_mb": peak_rss_mb(),
    }
    del prepared
    for mode in ("minibatch", "fullgraph"):
        try:
            c = compose("train", [*base, f"trainer={mode}"])
            torch.manual_seed(0)
            model = instantiate(c.model)(rg)
            trainer = instantiate(c.trainer)
            trainer.fit(model, rg, instantiate(c.masking), torch.Generator().manual_seed(0), quiet=True)
            h = trainer.history[-1]
            res[mode] = {
                "ok": True,
                "seconds_per_epoch": h["train/epoch_seconds"] + h["val/seconds"],
                "train_seconds": h["train/epoch_seconds"],
                "val_seconds": h["val/seconds"],
                "pairs_per_second": h["train/pairs"] / h["train/epoch_seconds"],
                "peak_rss_mb": peak_rss_mb(),
                "val_reward": h["val/reward"],
            }
        except Exception as exc:  # noqa: BLE001 - a point that does not fit is a result
            res[mode] = {
                "ok": False,
                "error": f"{type(exc).__name__}: {str(exc)[:200]}",
                "peak_rss_mb": peak_rss_mb(),
            }
        out.write_text(json.dumps(res))


def bench_scale(args) -> dict:
    print(f"\n== 4. scaling: experiment=scale ({args.queries_per_user} queries per user), one epoch per mode")
    rows = []
    for users in args.scale_users:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "point.json"
            cmd = [
                sys.executable,
                __file__,
                "--scale-child",
                str(users),
                "--queries-per-user",
                str(args.queries_per_user),
                "--child-out",
                str(out),
                *(f"--override={o}" for o in args.override),
            ]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            point = json.loads(out.read_text()) if out.exists() else {"users": users}
        if proc.returncode != 0 and "fullgraph" not in point:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            point.setdefault("fullgraph", {"ok": False, "error": f"process died: {tail[0][:200]}"})
            point.setdefault("minibatch", {"ok": False, "error": f"process died: {tail[0][:200]}"})
        print(
            f"{users:>5} users: {point.get('num_query_nodes', 0):>9,} query nodes, "
            f"{point.get('num_train_edges', 0):>11,} train edges, data + graph "
            f"{point.get('data_seconds', float('nan')):.0f} s"
        )
        for mode in ("minibatch", "fullgraph"):
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
            rows.append(
                {
                    "users": users,
                    "mode": mode,
                    "num_query_nodes": point.get("num_query_nodes"),
                    "num_train_edges": point.get("num_train_edges"),
                    **r,
                }
            )
    fits = {}
    for mode in ("minibatch", "fullgraph"):
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
    return {"points": rows, "slopes": fits}


def plot_scale(scale: dict, path: Path) -> None:
    import matplotlib

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument(
        "--scale-users", type=lambda s: [int(x) for x in s.split(",")], default=[10, 100, 1000]
    )
    parser.add_argument("--queries-per-user", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "bench")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="a Hydra override for every run (repeatable), e.g. paths.data_dir=...",
    )
    parser.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale_child is not None:
        return scale_child(args.scale_child, args.queries_per_user, args.child_out, args.override)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    result: dict = {"threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M")}
    if not args.skip_training:
        result["training"] = bench_training(args)
    result.update(bench_steps_and_routing(args))
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.skip_scale:
        result["scale"] = bench_scale(args)
        plot_scale(result["scale"], args.out / "scaling.png")
    (args.out / "bench.json").write_text(json.dumps(result, indent=2))
    print(
        f"\nwrote {args.out / 'bench.json'}" + ("" if args.skip_scale else f" and {args.out / 'scaling.png'}")
    )


if __name__ == "__main__":
    main()
