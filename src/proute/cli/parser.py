"""The argument parser of ``proute``: one function per command's options."""

from __future__ import annotations

import argparse
from pathlib import Path


def _infer(sub) -> None:
    p = sub.add_parser("infer", help="route queries with an exported router (and call the chosen LLM)")
    p.add_argument("router", type=Path, help="exported router directory")
    p.add_argument("--query")
    p.add_argument("--user")
    p.add_argument("--task", default=None, help="task name (inferred when omitted)")
    p.add_argument("--file", type=Path, help="JSONL file of requests")
    p.add_argument("--output", type=Path, help="write the results (JSONL) here, atomically; with --file")
    p.add_argument("--scores", action="store_true", help="print per-LLM scores too")
    p.add_argument("--upstreams", type=Path, help="upstreams YAML: call the chosen LLM, print its answer")
    p.add_argument("--route-only", action="store_true", help="print the routing decision, call no LLM")


def _evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics of a router on a dataset's split (Hydra overrides follow)")
    p.add_argument("router", type=Path, help="exported router directory")
    p.add_argument("--split", default="test", help="which split to score (default: test)")
    p.add_argument(
        "--unknown-user",
        choices=("error", "average"),
        default=None,
        help="route users the router does not know as the average user (default: skip them)",
    )
    p.add_argument("--output", type=Path, help="also write the metrics as JSON here (atomically)")


def _serve(sub) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server (needs the serve extra)")
    p.add_argument("router", type=Path, help="exported router directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--upstreams", type=Path, help="upstreams YAML (conf/upstreams.example.yaml)")
    p.add_argument(
        "--unknown-user",
        choices=("error", "average"),
        default=None,
        help="404 for unknown users, or route them as the average user (default when supported)",
    )
    p.add_argument("--max-batch", type=int, default=64, help="micro-batch size bound (default 64)")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="micro-batch wait bound (default 2 ms)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads for routing (default: one per core)"
    )


def _chat(sub) -> None:
    p = sub.add_parser("chat", help="Gradio chat page (needs the chat extra)")
    p.add_argument("router", type=Path, help="exported router directory")
    p.add_argument("--upstreams", type=Path, help="upstreams YAML: answer with the chosen LLM")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="ask Gradio's share server for a public link")


def build_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="proute", description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train a router (Hydra overrides follow)")
    sub.add_parser("data", help="summarise a dataset (Hydra overrides follow)")
    _infer(sub)
    _evaluate(sub)
    _serve(sub)
    _chat(sub)
    return parser
