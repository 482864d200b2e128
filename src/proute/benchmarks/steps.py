"""Sections 2 and 3 of the benchmarks, in this process: one training step of each conv in
each trainer (median over repeats), and the routing latency of one query through the
exported-router path (cached context, no graph pass) against one full-graph forward, with
the throughput of a batch of 256."""

from __future__ import annotations

from argparse import Namespace
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from proute.benchmarks.training import MODES, median_time
from proute.config import compose
from proute.data.pipeline import prepare_from_config
from proute.train import build_graph_from

CONVS = ("graphconv", "sage", "gat", "gatv2")


def bench_steps(args: Namespace, rg) -> dict[str, dict[str, float]]:
    """Seconds per training step (forward + backward), per conv and trainer."""
    print(f"\n== 2. one training step (forward + backward), each trainer, {rg}")
    out: dict[str, dict[str, float]] = {}
    for conv in CONVS:
        out[conv] = {}
        for mode in MODES:
            c = compose("train", ["logger=none", f"model={conv}", f"trainer={mode}", *args.override])
            model = instantiate(c.model)(rg)
            trainer = instantiate(c.trainer)
            trainer.prepare(model, rg, instantiate(c.masking))
            gen = torch.Generator().manual_seed(0)
            trainer.start_epoch(0, gen)
            model.train()

            def step(m=model, t=trainer) -> object:
                return t.train_step(m, rg, gen)  # noqa: B023

            sec = median_time(step, args.repeats)
            out[conv][mode] = sec
        print(
            f"{conv:>10}: "
            + ", ".join(f"{m} {s:6.3f} s" for m, s in out[conv].items())
            + f" per step (median of {args.repeats})"
        )
    return out


def bench_routing(cfg: DictConfig, rg, repeats: int) -> dict[str, float]:
    """Milliseconds for one routed query, one full-graph forward and a batch of 256."""
    print("\n== 3. routing latency (graphconv, untrained weights: timing only)")
    model = instantiate(cfg.model)(rg).eval()
    with torch.no_grad():
        cache = model.context_cache(rg.graph)
    test = rg.nodes_of("test")
    feat = rg.graph.nodes["query"].data["feat"][test]
    users, tasks = rg.query_user[test], rg.query_task[test]
    rng = np.random.default_rng(0)

    def one() -> None:
        i = int(rng.integers(len(test)))
        with torch.no_grad():
            model.score_new(cache, feat[i : i + 1], users[i : i + 1], tasks[i : i + 1])

    def full() -> None:
        with torch.no_grad():
            h = model(rg.graph)
            model.score_all(h, test[:1], users[:1])

    def batch() -> None:
        with torch.no_grad():
            model.score_new(cache, feat[:256], users[:256], tasks[:256])

    single, whole, b = median_time(one, 50), median_time(full, repeats), median_time(batch, 20)
    print(
        f"one query, cached context: {1000 * single:.2f} ms; one full-graph forward: "
        f"{1000 * whole:.0f} ms ({whole / single:.0f}x); batch of 256: {1000 * b:.1f} ms "
        f"({256 / b:,.0f} queries/s)"
    )
    return {
        "one_query_ms": 1000 * single,
        "full_graph_forward_ms": 1000 * whole,
        "batch256_ms": 1000 * b,
        "batch256_queries_per_second": 256 / b,
    }


def bench_steps_and_routing(args: Namespace) -> dict[str, Any]:
    """Sections 2 and 3 on the default data (``args.override`` applied), one graph for both."""
    cfg = compose("train", ["logger=none", *args.override])
    prepared = prepare_from_config(cfg)
    rg = build_graph_from(prepared, cfg.graph)
    steps = bench_steps(args, rg)
    return {"steps": steps, "routing": bench_routing(cfg, rg, args.repeats)}
