"""``proute infer``: route one query or a requests file with an exported router, and
optionally call the chosen LLM (``--upstreams``)."""

from __future__ import annotations

import argparse
import sys

from proute.cli.requests_io import fail, read_requests, results_text, write_atomically


def _call_upstreams(upstreams: dict, routed: list[dict], requests: list[dict]) -> list[dict]:
    """Each routed request's answer from its LLM's upstream (a failed call: ``error``),
    eight calls at a time."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from proute.serving.upstreams import UpstreamError, answer_text, complete

    def call(pair):
        result, request = pair
        body = {"messages": [{"role": "user", "content": request["query"]}]}
        try:
            response = complete(upstreams[result["model_name"]], body, client)
        except UpstreamError as exc:
            return {**result, "error": str(exc)}
        return {**result, "answer": answer_text(response), "response": response}

    with httpx.Client() as client, ThreadPoolExecutor(8) as pool:
        return list(pool.map(call, zip(routed, requests, strict=True)))


def _request_error(router, request: dict, policy: str) -> str | None:
    """What is wrong with ``request`` for ``router``; an unknown user under ``error`` gets
    the option that routes it."""
    error = router.request_error(request)
    if error is None:
        return None
    message = error.args[0]
    if policy == "error" and isinstance(error, KeyError) and message.startswith("unknown user_id"):
        message += "; --unknown-user average routes unknown users as the population's average user"
    return message


def _load_requests(args: argparse.Namespace):
    """``(router, requests)``: the router (with the ``--unknown-user`` policy) and the
    checked requests of ``--file`` or of ``--query``/``--user``/``--task``; a bad request
    is a one-line :class:`SystemExit`."""
    from proute.router import load_router
    from proute.serving.user_ids import text_user_id

    if args.file:
        numbered = read_requests(args.file)  # before the router: a bad file fails fast
        router = load_router(args.router, unknown_user=args.unknown_user)
        for n, request in numbered:
            error = _request_error(router, request, args.unknown_user)
            if error is not None:
                raise fail(f"{args.file}, line {n}", error)
        return router, [request for _, request in numbered]
    if args.query is not None and args.user is not None:
        user = text_user_id(args.user, "--user")  # the chat page's reading: "007" is not user 7
        requests = [{"query": args.query, "user_id": user, "task": args.task}]
        router = load_router(args.router, unknown_user=args.unknown_user)
        error = _request_error(router, requests[0], args.unknown_user)
        if error is not None:
            raise fail("--query/--user/--task", error)
        return router, requests
    raise SystemExit("proute infer: give --query and --user, or --file")


def _upstreams(args: argparse.Namespace, router):
    if args.upstreams is None or args.route_only:
        return None
    from proute.serving.upstreams import UpstreamsError, load_upstreams

    try:
        return load_upstreams(args.upstreams, router.llms)
    except UpstreamsError as exc:
        raise SystemExit(f"proute infer: {exc}") from None


def _print_answer(result: dict) -> int:
    """One query with upstreams: the answer on stdout, the decision on stderr."""
    print(
        f"proute: routed to {result['model_name']} (score {result['score']:.4g}, task {result['task']})",
        file=sys.stderr,
    )
    if "error" in result:
        raise SystemExit(f"proute infer: {result['error']}")
    print(result["answer"])
    return 0


def infer(args: argparse.Namespace) -> int:
    if args.output is not None and not args.file:
        raise SystemExit("proute infer: --output goes with --file")
    if args.output is not None and not args.output.parent.is_dir():
        raise fail(args.output, "its folder does not exist")
    router, requests = _load_requests(args)
    upstreams = _upstreams(args, router)
    results = []
    for result, request in zip(router.route_batch(requests), requests, strict=True):
        result = {"query": request["query"], **result, "score": result["scores"][result["model_name"]]}
        if not args.scores:
            result.pop("scores")
        results.append(result)
    if upstreams is not None:
        results = _call_upstreams(upstreams, results, requests)
    if upstreams is not None and not args.file:
        return _print_answer(results[0])
    text = results_text(args.output, [{k: v for k, v in r.items() if k != "response"} for r in results])
    if args.output is not None:
        write_atomically(args.output, text)
    else:
        sys.stdout.write(text)
    failed = [r for r in results if "error" in r]
    if failed:
        print(
            f"proute infer: {len(failed)} of {len(results)} upstream calls failed; the first: "
            f"{failed[0]['error']}",
            file=sys.stderr,
        )
        return 1
    return 0
