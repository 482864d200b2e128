"""The ``proute`` command line.

proute train [hydra overrides ...]      same as python -m proute.train
proute data  [hydra overrides ...]      same as python -m proute.data
proute infer ROUTER --query TEXT --user ID [--task TASK] [--route-only] [--upstreams FILE]
proute infer ROUTER --file requests.jsonl [--output results.jsonl]
                                        (one {"query", "user_id"[, "task"]} a line)
proute evaluate ROUTER [hydra overrides: dataset=, users=, split=, paths.data_dir=, ...]
proute serve ROUTER [--host 127.0.0.1] [--port 8000] [--upstreams FILE] [--unknown-user P]
proute chat ROUTER [--port 7860] [--share] [--upstreams FILE]   (needs the `chat` extra)

``infer`` routes only (prints the decision) unless ``--upstreams`` is given and
``--route-only`` is not: then it calls the chosen LLM and prints its answer (``--file``:
each result line gets the ``answer``, or the ``error`` of its call).

One module per command: :mod:`.infer`, :mod:`.evaluate`, :mod:`.services` (``serve``,
``chat``); the parser in :mod:`.parser`, the requests file and atomic writes in
:mod:`.requests_io`.
"""

from __future__ import annotations

import sys

from proute.cli.evaluate import evaluate, evaluate_router, metrics_table
from proute.cli.infer import infer
from proute.cli.parser import build_parser
from proute.cli.requests_io import read_requests, write_atomically
from proute.cli.services import chat_command, serve_command

__all__ = [
    "chat_command",
    "evaluate",
    "evaluate_router",
    "infer",
    "main",
    "metrics_table",
    "read_requests",
    "serve_command",
    "write_atomically",
]


def _hydra(module: str, overrides: list[str]) -> int:
    import runpy

    sys.argv = [f"proute {module}"] + overrides
    runpy.run_module(f"proute.{module}", run_name="__main__")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("train", "data"):
        return _hydra(argv[0], argv[1:])
    parser = build_parser(description=(__doc__ or "").splitlines()[0])
    if argv and argv[0] == "evaluate":
        args, overrides = parser.parse_known_args(argv)
    else:
        args, overrides = parser.parse_args(argv), []
    from proute.data.text_encoders import ModelNotAvailableError
    from proute.router import RouterFormatError

    try:
        if args.command == "evaluate":
            return evaluate(args, overrides)
        if args.command == "serve":
            return serve_command(args)
        if args.command == "chat":
            return chat_command(args)
        return infer(args)
    except (RouterFormatError, ModelNotAvailableError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise SystemExit(f"proute {args.command}: {message}") from None
