"""Benchmarks on the default dataset (prints medians; nothing is asserted).

    python scripts/bench.py [--skip-cold] [--repeats N]

1. data: first load with an empty embedding cache vs a second load (cache reused);
2. masking: one sample of each strategy on the default graph;
3. training: one forward+backward of each conv variant on a masked sample;
4. routing: one query through the exported-router path (cached context, no graph pass)
   vs one full-graph forward (what the reference code does per query), and a batch of 256.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cold", action="store_true",
                        help="skip the cold-cache load (encodes 5,989 queries, ~2 min)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from hydra.utils import instantiate

    from proute.config import compose
    from proute.data.pipeline import prepare_from_config
    from proute.graph.masking import (ColdStartMasking, QueryMasking, RandomEdgeMasking,
                                      UserBalancedMasking)
    from proute.train import build_graph_from

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("\n== 1. data load (default dataset, 9 users)")
    if not args.skip_cold:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = compose("train", [f"paths.cache_dir={tmp}"])
            t = time.perf_counter()
            prepare_from_config(cfg)
            cold = time.perf_counter() - t
            t = time.perf_counter()
            prepare_from_config(cfg)
            warm = time.perf_counter() - t
        print(f"first load (empty cache): {cold:.1f} s; second load: {warm:.2f} s; "
              f"ratio {cold / warm:.0f}x")
    cfg = compose("train")
    prepared = prepare_from_config(cfg)
    print(f"load with the project cache: {prepared.timings['total']:.2f} s "
          f"({ {k: round(v, 2) for k, v in prepared.timings.items()} })")

    rg = build_graph_from(prepared, cfg.graph)
    print(f"\n== 2. masking ({rg})")
    gen = torch.Generator().manual_seed(0)
    for strategy in (RandomEdgeMasking(0.3), QueryMasking(0.3), UserBalancedMasking(0.3),
                     ColdStartMasking(0.3, 0.3)):
        ms = 1000 * median_time(lambda: strategy.sample(rg, gen), max(10, args.repeats))
        print(f"{type(strategy).__name__:>22}: {ms:7.1f} ms per sample (median)")

    print("\n== 3. training step (forward + backward, one query-masked sample)")
    sample = QueryMasking(0.3).sample(rg, gen)
    q, l = sample.target_query, sample.target_llm
    models = {}
    for conv in ("graphconv", "sage", "gat", "gatv2"):
        model = instantiate(compose("train", [f"model={conv}"]).model)(rg)
        models[conv] = model

        def step():
            model.zero_grad()
            h = model(sample.graph)
            model.score_pairs(h, q, l, rg.query_user[q]).sum().backward()

        print(f"{conv:>10}: {median_time(step, args.repeats):6.2f} s per step (median)")

    print("\n== 4. routing latency (graphconv, untrained weights: timing only)")
    model = models["graphconv"].eval()
    with torch.no_grad():
        cache = model.context_cache(rg.graph)
    test = rg.nodes_of("test")
    feat = rg.graph.nodes["query"].data["feat"][test]
    users, tasks = rg.query_user[test], rg.query_task[test]
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(test), size=50)

    def one():
        i = int(picks[rng.integers(50)])
        with torch.no_grad():
            model.score_new(cache, feat[i:i + 1], users[i:i + 1], tasks[i:i + 1])

    def full():
        with torch.no_grad():
            h = model(rg.graph)
            model.score_all(h, test[:1], users[:1])

    def batch():
        with torch.no_grad():
            model.score_new(cache, feat[:256], users[:256], tasks[:256])

    single = median_time(one, 50)
    whole = median_time(full, args.repeats)
    b = median_time(batch, 20)
    print(f"one query, cached context: {1000 * single:.2f} ms; one full-graph forward: "
          f"{1000 * whole:.0f} ms; ratio {whole / single:.0f}x")
    print(f"batch of 256: {1000 * b:.1f} ms ({256 / b:.0f} queries/s)")


if __name__ == "__main__":
    main()
