"""``proute serve`` (the OpenAI-compatible HTTP server) and ``proute chat`` (the Gradio
chat page)."""

from __future__ import annotations

import argparse


def _limits(args: argparse.Namespace):
    """The server's limits: the defaults, with the ``--max-*`` options given."""
    from proute.serving.limits import Limits

    given = {"max_body_bytes": args.max_body_bytes, "max_batch_items": args.max_batch_items}
    return Limits(**{k: v for k, v in given.items() if v is not None})


def serve_command(args: argparse.Namespace) -> int:
    from proute.serving.app import serve

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise SystemExit(
            'proute serve: needs the serve extra: pip install -e ".[serve]" -c requirements/constraints.txt'
        ) from None
    from proute.serving.upstreams import UpstreamsError

    try:
        serve(
            args.router,
            args.host,
            args.port,
            args.upstreams,
            args.unknown_user,
            args.max_batch,
            args.max_wait_ms,
            threads=args.threads,
            api_keys=args.api_keys,
            insecure=args.insecure,
            key_rate=args.key_rate,
            key_burst=args.key_burst,
            limits=_limits(args),
            state=args.state,
        )
    except (UpstreamsError, ValueError) as exc:
        raise SystemExit(f"proute serve: {exc}") from None
    return 0


def chat_command(args: argparse.Namespace) -> int:
    from proute.serving.chat import launch

    launch(args.router, args.upstreams, host=args.host, port=args.port, share=args.share)
    return 0


def stub_upstream_command(args: argparse.Namespace) -> int:
    """``proute stub-upstream``: an OpenAI-compatible upstream that echoes, until interrupted."""
    from proute.serving.stub_upstream import serve_stub

    serve_stub(args.port, args.host)
    return 0


def state_command(args: argparse.Namespace) -> int:
    """``proute state export|import|compact --state URL``."""
    import sys

    from proute.router import RouterFormatError
    from proute.store import StoreError
    from proute.store.tools import compact, export_events, import_events

    try:
        if args.action == "export":
            if args.file is None:
                n, after = export_events(args.state, sys.stdout)
            else:
                with open(args.file, "w", encoding="utf-8") as out:
                    n, after = export_events(args.state, out)
            note = f" (events up to seq {after} are compacted into a snapshot)" if after else ""
            print(f"proute state export: {n} events{note}", file=sys.stderr)
        elif args.action == "import":
            if args.file is None:
                raise SystemExit("proute state import: give the events with --file events.jsonl")
            n = import_events(args.state, args.file, args.router_option)
            print(f"proute state import: {n} events appended to {args.state}", file=sys.stderr)
        else:
            r = compact(args.state, args.router_option)
            print(
                f"proute state compact: snapshot at seq {r.last_seq} "
                f"({r.replayed} events replayed into it, {r.refused} refused)",
                file=sys.stderr,
            )
    except (StoreError, RouterFormatError, ValueError) as exc:
        raise SystemExit(f"proute state {args.action}: {exc}") from None
    return 0
