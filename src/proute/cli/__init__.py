"""The ``proute`` command line (``proute --help``: :data:`.parser.EPILOG` lists the commands).

One module per command: :mod:`.hydra_commands` (``train``, ``data``, ``--config FILE``),
:mod:`.infer`, :mod:`.evaluate`, :mod:`.services` (``serve``, ``chat``), :mod:`.keys`; the parser in
:mod:`.parser`, the requests file, result files and atomic writes in :mod:`.requests_io`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from proute.cli.evaluate import evaluate, evaluate_router, metrics_table
from proute.cli.hydra_commands import run_hydra
from proute.cli.infer import infer
from proute.cli.keys import keys_command
from proute.cli.parser import build_parser
from proute.cli.requests_io import read_requests, write_atomically
from proute.cli.services import chat_command, serve_command, state_command, stub_upstream_command

__all__ = [
    "chat_command",
    "evaluate",
    "evaluate_router",
    "infer",
    "main",
    "metrics_table",
    "read_requests",
    "serve_command",
    "state_command",
    "stub_upstream_command",
    "write_atomically",
]


def _resolve_router(parser, args: argparse.Namespace, overrides: list[str]) -> None:
    """``args.router`` from the positional ROUTER or ``--router`` (exactly one of them);
    ``evaluate --router R key=value``: the positional caught the first override."""
    option, positional = args.router_option, args.router
    if option is not None and positional is not None:
        if args.command != "evaluate" or "=" not in positional:
            parser.error(f"give the router once: ROUTER ({positional}) or --router ({option})")
        overrides.insert(0, positional)
        positional = None
    if option is None and positional is None:
        parser.error(f"{args.command}: the router directory is required (ROUTER or --router ROUTER)")
    args.router = Path(option if option is not None else positional)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("train", "data"):
        return run_hydra(argv[0], argv[1:])
    parser = build_parser()
    if argv and argv[0] == "evaluate":
        args, overrides = parser.parse_known_args(argv)
    else:
        args, overrides = parser.parse_args(argv), []
    if args.command == "stub-upstream":  # no router
        return stub_upstream_command(args)
    if args.command == "keys":  # no router
        return keys_command(args)
    if args.command == "state":  # the router is optional: the store records it
        return state_command(args)
    _resolve_router(parser, args, overrides)
    from proute.data.text_encoders import ModelNotAvailableError
    from proute.router import RouterFormatError
    from proute.store import StoreError

    try:
        if args.command == "evaluate":
            return evaluate(args, overrides)
        if args.command == "serve":
            return serve_command(args)
        if args.command == "chat":
            return chat_command(args)
        return infer(args)
    except (RouterFormatError, ModelNotAvailableError, KeyError, ValueError, StoreError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise SystemExit(f"proute {args.command}: {message}") from None
