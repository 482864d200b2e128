"""The ``proute`` command line.

proute train [hydra overrides ...]      same as python -m proute.train
proute data  [hydra overrides ...]      same as python -m proute.data
proute infer ROUTER --query TEXT --user ID [--task TASK]
proute infer ROUTER --file requests.jsonl   (one {"query", "user_id"[, "task"]} a line)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _hydra(module: str, overrides: list[str]) -> int:
    import runpy

    sys.argv = [f"proute {module}"] + overrides
    runpy.run_module(f"proute.{module}", run_name="__main__")
    return 0


def _read_requests(path: Path) -> list[dict]:
    requests = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path}, line {n}: invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or "query" not in obj or "user_id" not in obj:
            raise SystemExit(f"{path}, line {n}: expected an object with 'query' and 'user_id'")
        requests.append(obj)
    return requests


def infer(args: argparse.Namespace) -> int:
    from proute.router import PersonalizedRouter

    router = PersonalizedRouter.load(args.router)
    if args.file:
        requests = _read_requests(args.file)
    elif args.query is not None and args.user is not None:
        user = int(args.user) if args.user.lstrip("-").isdigit() else args.user
        requests = [{"query": args.query, "user_id": user, "task": args.task}]
    else:
        raise SystemExit("proute infer: give --query and --user, or --file")
    for result in router.route_batch(requests):
        if not args.scores:
            result.pop("scores")
        print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("train", "data"):
        return _hydra(argv[0], argv[1:])
    parser = argparse.ArgumentParser(prog="proute", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train a router (Hydra overrides follow)")
    sub.add_parser("data", help="summarise a dataset (Hydra overrides follow)")
    p = sub.add_parser("infer", help="route queries with an exported router")
    p.add_argument("router", type=Path, help="exported router directory")
    p.add_argument("--query")
    p.add_argument("--user")
    p.add_argument("--task", default=None, help="task name (inferred when omitted)")
    p.add_argument("--file", type=Path, help="JSONL file of requests")
    p.add_argument("--scores", action="store_true", help="print per-LLM scores too")
    args = parser.parse_args(argv)
    from proute.router import RouterFormatError

    try:
        return infer(args)
    except (RouterFormatError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise SystemExit(f"proute infer: {message}") from None


if __name__ == "__main__":
    sys.exit(main())
