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
