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


def _fail(where: object, what: str) -> SystemExit:
    """The one-line error of ``proute infer`` (exit status 1, no traceback)."""
    return SystemExit(f"proute infer: {where}: {what}")


def _read_requests(path: Path) -> list[tuple[int, dict]]:
    """``(line number, request)`` of each non-blank line of a UTF-8 JSONL file; any problem
    of the file or of a line's syntax is a :class:`SystemExit` naming the file and line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"cannot read the requests file ({exc.strerror or exc})") from None
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark
        data = data[3:]
    requests = []
    for n, raw in enumerate(data.splitlines(), start=1):  # \n, \r\n or \r, as JSON allows
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(
                f"{path}, line {n}",
                f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                "save the file as UTF-8",
            ) from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(f"{path}, line {n}", f"invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise _fail(f"{path}, line {n}", "expected an object with 'query' and 'user_id'")
        requests.append((n, obj))
    return requests


def infer(args: argparse.Namespace) -> int:
    from proute.router import PersonalizedRouter

    if args.file:
        numbered = _read_requests(args.file)  # before the router: a bad file fails fast
        router = PersonalizedRouter.load(args.router)
        for n, request in numbered:
            error = router.request_error(request)
            if error is not None:
                raise _fail(f"{args.file}, line {n}", error.args[0])
        requests = [request for _, request in numbered]
    elif args.query is not None and args.user is not None:
        user = int(args.user) if args.user.lstrip("-").isdigit() else args.user
        requests = [{"query": args.query, "user_id": user, "task": args.task}]
        router = PersonalizedRouter.load(args.router)
        error = router.request_error(requests[0])
        if error is not None:
            raise _fail("--query/--user/--task", error.args[0])
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
    from proute.data.text_encoders import ModelNotAvailableError
    from proute.router import RouterFormatError

    try:
        return infer(args)
    except (RouterFormatError, ModelNotAvailableError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise SystemExit(f"proute infer: {message}") from None


if __name__ == "__main__":
    sys.exit(main())
