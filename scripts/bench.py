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

Writes ``<out>/bench.json`` and ``<out>/scaling.png`` and prints the tables. The code lives
in :mod:`proute.benchmarks`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from proute.benchmarks import scaling
from proute.benchmarks.training import bench_training
from proute.config.paths import project_root


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument(
        "--scale-users", type=lambda s: [int(x) for x in s.split(",")], default=[10, 100, 1000]
    )
    parser.add_argument("--queries-per-user", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=project_root() / "experiments" / "bench")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="a Hydra override for every run (repeatable), e.g. paths.data_dir=...",
    )
    parser.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.scale_child is not None:  # one scaling point (python -m proute.benchmarks.scaling)
        return scaling.scale_child(args.scale_child, args.queries_per_user, args.child_out, args.override)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch  # local: after --help and the scaling child's memory cap

    from proute.benchmarks.steps import bench_steps_and_routing

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    result: dict = {"threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M")}
    if not args.skip_training:
        result["training"] = bench_training(args)
    result.update(bench_steps_and_routing(args))
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.skip_scale:
        result["scale"] = scaling.bench_scale(args)
        scaling.plot_scale(result["scale"], args.out / "scaling.png")
    (args.out / "bench.json").write_text(json.dumps(result, indent=2))
    print(
        f"\nwrote {args.out / 'bench.json'}" + ("" if args.skip_scale else f" and {args.out / 'scaling.png'}")
    )


if __name__ == "__main__":
    main()
