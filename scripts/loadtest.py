"""Load test of ``proute serve`` on loopback (127.0.0.1 only; bounded in count and time).

    python scripts/loadtest.py ROUTER [--clients 32] [--requests 2000] [--max-seconds 120]
                               [--skip-upstream] [--bench] [--out FILE.json]

Starts a stub upstream (an OpenAI-compatible chat-completions server that echoes:
:mod:`proute.serving.stub_upstream`) and ``proute serve ROUTER`` pointed at it, each in its
own process, then:

1. ``--clients`` concurrent clients send ``--requests`` route-only requests in all
   (``POST /v1/route``, short queries from a fixed set, random known users);
2. the same through the stub upstream (``POST /v1/chat/completions``, ``model: proute``);

and reports for each: throughput, p50/p99 latency, errors (must be 0), the server's peak
RSS and its micro-batches. A phase stops at ``--max-seconds`` (the requests not sent are
reported, not counted as errors).

``--bench`` also measures, in this process: ``route_single`` and ``route_batch`` with
precomputed embeddings (no text encoding), and the latency of one ``/v1/route`` request at a
time for a short query (text encoding included).

The logic is :mod:`proute.serving.loadtest`; this is its command line.
"""

import argparse
import json
import sys
from pathlib import Path

from proute.serving import loadtest
from proute.serving.stub_upstream import serve_stub

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("router", nargs="?", help="exported router directory")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000, help="requests per phase, all clients together")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time bound of each phase")
    parser.add_argument("--skip-upstream", action="store_true", help="route-only phase alone")
    parser.add_argument("--bench", action="store_true", help="also the in-process and one-at-a-time numbers")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--server-threads",
        type=int,
        default=1,
        help="torch threads of the server and of --bench (default 1: more oversubscribe a busy machine; "
        "0: torch's default)",
    )
    parser.add_argument("--stub-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stub_upstream is not None:
        serve_stub(args.stub_upstream)
        return 0
    if args.router is None:
        parser.error("give the router directory")
    result = loadtest.run(args, cwd=ROOT)
    for line in loadtest.report(result):
        print(line)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if any(p["errors"] for p in result["phases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
