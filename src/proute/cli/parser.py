"""The argument parser of ``proute``: one function per command's options."""

from __future__ import annotations

import argparse
from pathlib import Path

from proute.cli.keys import add_keys_parser
from proute.schema import UNKNOWN_USER_POLICIES

DESCRIPTION = """\
proute: personalized LLM routing. Train a router, summarise a dataset, route queries
with an exported router, evaluate it on a dataset's split, or serve it."""

EPILOG = """\
commands:
  proute train [--config FILE.yaml] [hydra overrides ...]   same as python -m proute.train
  proute data  [--config FILE.yaml] [hydra overrides ...]   same as python -m proute.data
  proute infer ROUTER --query TEXT --user ID [--task TASK] [--route-only] [--upstreams FILE]
  proute infer ROUTER --file requests.jsonl [--output results.json or .jsonl]
                  (one {"query", "user_id"[, "task"]} object a line; --unknown-user average:
                  route users the router does not know as its average user)
  proute evaluate ROUTER [--split test] [--allow-overlap] [hydra overrides: dataset=, ...]
  proute serve ROUTER [--host 127.0.0.1] [--port 8000] [--upstreams FILE] [--unknown-user P]
                  [--api-keys FILE] (a --host other than loopback needs it, or --insecure)
                  [--max-body-bytes N] [--max-batch-items N] (413 / 422 beyond them)
                  [--state sqlite:///PATH | memory]   (default: ROUTER.state.sqlite beside ROUTER)
  proute state export|import|compact --state URL [--router ROUTER] [--file events.jsonl]
  proute chat ROUTER [--port 7860] [--share] [--upstreams FILE]   (needs the chat extra)
  proute keys create --role admin|app [--users ID ...] [--name NAME] --keys FILE
  proute keys list --keys FILE | proute keys revoke ID --keys FILE   (serve --api-keys FILE)
  proute stub-upstream [--port 8001]   a fake OpenAI-compatible upstream (echoes) to try them

ROUTER is an exported router directory (also --router ROUTER). train and data take
Hydra overrides (group=option, key=value); --config FILE.yaml adds the overrides of a
YAML file (a mapping such as {model: gat, train_epoch: 20, trainer: {loss: listwise}},
or a list of key=value texts) before them, composed on top of conf/train.yaml
(conf/data.yaml for data). "proute train --help" lists the config groups.

infer routes only (prints the decision) unless --upstreams is given and --route-only is
not: then it calls the chosen LLM and prints its answer (with --file: each result gets
the answer, or the error of its call).
"""


def _router(p) -> None:
    """The router directory: the positional ROUTER, or ``--router ROUTER``."""
    p.add_argument(
        "router",
        nargs="?",
        default=None,
        metavar="ROUTER",
        help="exported router directory (a run's router/ or baselines/<name>/)",
    )
    p.add_argument(
        "--router", dest="router_option", default=None, metavar="ROUTER", help="the same, as an option"
    )


def _infer(sub) -> None:
    p = sub.add_parser("infer", help="route queries with an exported router (and call the chosen LLM)")
    _router(p)
    p.add_argument("--query", help="the query text")
    p.add_argument("--user", "--user-id", dest="user", metavar="ID", help="the user's id")
    p.add_argument("--task", default=None, help="task name (inferred when omitted)")
    p.add_argument("--file", "--input", dest="file", type=Path, help="JSONL file of requests")
    p.add_argument(
        "--output",
        type=Path,
        help="with --file: write the results here, atomically; a .json path gets one JSON "
        "array, any other (.jsonl) one JSON object a line",
    )
    p.add_argument("--scores", action="store_true", help="print per-LLM scores too")
    p.add_argument("--upstreams", type=Path, help="upstreams YAML: call the chosen LLM, print its answer")
    p.add_argument("--route-only", action="store_true", help="print the routing decision, call no LLM")
    p.add_argument(
        "--unknown-user",
        choices=UNKNOWN_USER_POLICIES,
        default="error",
        help="a user the router does not know: an error (default), or routed as the "
        "population's average user (average)",
    )


def _evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics of a router on a dataset's split (Hydra overrides follow)")
    _router(p)
    p.add_argument("--split", default="test", help="which split to score (default: test)")
    p.add_argument(
        "--unknown-user",
        choices=UNKNOWN_USER_POLICIES,
        default=None,
        help="route users the router does not know as the average user (default: skip them)",
    )
    p.add_argument("--output", type=Path, help="also write the metrics as JSON here (atomically)")
    p.add_argument(
        "--allow-overlap",
        action="store_true",
        help="evaluate even when the split holds queries the router trained on (another "
        "random_state, split or data); the result is then marked as not held out",
    )


def _serve(sub) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server (needs the serve extra)")
    _router(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--upstreams", type=Path, help="upstreams YAML (conf/upstreams.example.yaml)")
    p.add_argument(
        "--unknown-user",
        choices=UNKNOWN_USER_POLICIES,
        default=None,
        help="404 for unknown users (default: error), or route them as the average user",
    )
    p.add_argument("--max-batch", type=int, default=64, help="micro-batch size bound (default 64)")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="micro-batch wait bound (default 2 ms)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads for routing (default: one per core)"
    )
    p.add_argument("--max-body-bytes", type=int, default=None, help="largest request body (default 1 MiB)")
    p.add_argument("--max-batch-items", type=int, default=None, help="most items of a batch (default 256)")
    p.add_argument(
        "--state",
        default=None,
        metavar="URL",
        help="where new users and feedback are recorded and restored from: sqlite:///PATH, or "
        "memory (nothing survives the process); default: ROUTER.state.sqlite beside the router "
        "directory (never inside it)",
    )
    _serve_keys(p)


def _serve_keys(p) -> None:
    """``proute serve``'s API keys (proute.serving.auth)."""
    p.add_argument(
        "--api-keys", type=Path, metavar="FILE", help="every request needs a key of FILE (proute keys create)"
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="serve on a non-loopback --host without --api-keys (anyone reaching it may use it)",
    )
    p.add_argument(
        "--key-rate", default=None, help="default rate limit per key: 20/s (default), 600/min, none"
    )
    p.add_argument(
        "--key-burst", type=int, default=None, help="default burst per key (default: 2 s of the rate)"
    )


def _state(sub) -> None:
    p = sub.add_parser("state", help="export, import or compact a server's state store")
    p.add_argument("action", choices=("export", "import", "compact"))
    p.add_argument("--state", required=True, metavar="URL", help="the store: sqlite:///PATH")
    p.add_argument(
        "--router",
        dest="router_option",
        default=None,
        metavar="ROUTER",
        help="the router the state belongs to (import into a new store; compact: default the "
        "one the store records)",
    )
    p.add_argument(
        "--file",
        type=Path,
        default=None,
        help="export: write the JSONL here (default: stdout); import: the JSONL to append",
    )


def _chat(sub) -> None:
    p = sub.add_parser("chat", help="Gradio chat page (needs the chat extra)")
    _router(p)
    p.add_argument("--upstreams", type=Path, help="upstreams YAML: answer with the chosen LLM")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="ask Gradio's share server for a public link")


def _stub_upstream(sub) -> None:
    p = sub.add_parser("stub-upstream", help="a fake OpenAI-compatible upstream that echoes (serve extra)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proute",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train a router ([--config FILE.yaml] and Hydra overrides follow)")
    sub.add_parser("data", help="summarise a dataset ([--config FILE.yaml] and Hydra overrides follow)")
    _infer(sub)
    _evaluate(sub)
    _serve(sub)
    _state(sub)
    _chat(sub)
    _stub_upstream(sub)
    add_keys_parser(sub)
    return parser
