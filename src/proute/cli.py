"""The ``proute`` command line.

proute train [hydra overrides ...]      same as python -m proute.train
proute data  [hydra overrides ...]      same as python -m proute.data
proute infer ROUTER --query TEXT --user ID [--task TASK] [--route-only] [--upstreams FILE]
proute infer ROUTER --file requests.jsonl [--output results.jsonl]
                                        (one {"query", "user_id"[, "task"]} a line)
proute evaluate ROUTER [hydra overrides: dataset=, users=, split=, paths.data_dir=, ...]
proute serve ROUTER [--host 127.0.0.1] [--port 8000] [--upstreams FILE] [--unknown-user P]
proute chat ROUTER [--port 7860] [--share] [--upstreams FILE]   (needs the `chat` extra)
proute stub-upstream [--port 8001]      a fake OpenAI-compatible upstream (echoes) to try them

``infer`` routes only (prints the decision) unless ``--upstreams`` is given and
``--route-only`` is not: then it calls the chosen LLM and prints its answer (``--file``:
each result line gets the ``answer``, or the ``error`` of its call).
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


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in its folder and a rename: a
    failed or interrupted write leaves an existing file as it was."""
    import os
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def infer(args: argparse.Namespace) -> int:
    from proute.router import PersonalizedRouter
    from proute.serving.user_ids import text_user_id

    if args.output is not None and not args.file:
        raise SystemExit("proute infer: --output goes with --file")
    if args.output is not None and not args.output.parent.is_dir():
        raise _fail(args.output, "its folder does not exist")
    if args.file:
        numbered = _read_requests(args.file)  # before the router: a bad file fails fast
        router = PersonalizedRouter.load(args.router)
        for n, request in numbered:
            error = router.request_error(request)
            if error is not None:
                raise _fail(f"{args.file}, line {n}", error.args[0])
        requests = [request for _, request in numbered]
    elif args.query is not None and args.user is not None:
        user = text_user_id(args.user, "--user")  # the chat page's reading: "007" is not user 7
        requests = [{"query": args.query, "user_id": user, "task": args.task}]
        router = PersonalizedRouter.load(args.router)
        error = router.request_error(requests[0])
        if error is not None:
            raise _fail("--query/--user/--task", error.args[0])
    else:
        raise SystemExit("proute infer: give --query and --user, or --file")
    upstreams = None
    if args.upstreams is not None and not args.route_only:
        from proute.serving.upstreams import UpstreamsError, load_upstreams

        try:
            upstreams = load_upstreams(args.upstreams, router.llms)
        except UpstreamsError as exc:
            raise SystemExit(f"proute infer: {exc}") from None
    results = router.route_batch(requests)
    for result in results:
        result["score"] = result["scores"][result["model_name"]]
        if not args.scores:
            result.pop("scores")
    if upstreams is not None:
        results = _call_upstreams(upstreams, results, requests)
    failed = [r for r in results if "error" in r]
    if upstreams is not None and not args.file:  # one query: the answer, the decision on stderr
        r = results[0]
        print(
            f"proute: routed to {r['model_name']} (score {r['score']:.4g}, task {r['task']})",
            file=sys.stderr,
        )
        if failed:
            raise SystemExit(f"proute infer: {r['error']}")
        print(r["answer"])
        return 0
    text = "".join(json.dumps({k: v for k, v in r.items() if k != "response"}) + "\n" for r in results)
    if args.output is not None:
        write_atomically(args.output, text)
    else:
        sys.stdout.write(text)
    if failed:
        print(
            f"proute infer: {len(failed)} of {len(results)} upstream calls failed; the first: "
            f"{failed[0]['error']}",
            file=sys.stderr,
        )
        return 1
    return 0


_RUNTIME_ENCODER_KEYS = ("cache_dir", "show_progress", "device", "batch_size")


def _encoder_id(spec) -> dict:
    from omegaconf import DictConfig, OmegaConf

    if isinstance(spec, DictConfig):
        spec = OmegaConf.to_container(spec, resolve=True)
    return {k: v for k, v in dict(spec or {}).items() if k not in _RUNTIME_ENCODER_KEYS}


def evaluate_router(router, cfg, split: str = "test", log=print) -> dict:
    """Score ``split`` of the data ``cfg`` describes with ``router``, with the gold task
    labels and without them (tasks inferred, as a live request): ``{"gold", "live",
    "task_accuracy", "skipped_users", "skipped_llms", "n"}`` (metrics of
    :func:`proute.evaluation.metrics.routing_metrics`). Users the router does not know are skipped
    (named) unless its unknown-user policy routes them."""
    import pandas as pd

    # local: torch/dgl are imported only by the command that needs them (`proute --help` stays fast)
    from proute.data.pipeline import prepare_from_config
    from proute.evaluation.scorers import RouterScorer
    from proute.evaluation.scoring import dense_block, evaluate, task_accuracy

    same_encoder = _encoder_id(cfg.get("text_encoder")) == _encoder_id(router.meta["encoder"])
    prepared = prepare_from_config(cfg, encode=same_encoder)
    table = prepared.table
    if "split" not in table.columns or not (table["split"] == split).any():
        raise ValueError(f"the data has no {split!r} split (check split= and the dataset's split column)")
    test = table[table["split"] == split]
    users = pd.unique(test["user_id"])
    skipped_users = [u for u in users if router.request_error({"query": "x", "user_id": u}) is not None]
    if skipped_users:
        log(
            f"note: {len(skipped_users)} users of the data are unknown to the router, "
            f"skipped: {skipped_users[:10]}"
        )
        test = test[~test["user_id"].isin(skipped_users)]
    llms = list(router.llms)
    skipped_llms = sorted(set(test["llm"].astype(str)) - set(llms))
    if skipped_llms:
        log(f"note: the router cannot choose these LLMs of the data; left out: {skipped_llms}")
    test = test[test["llm"].astype(str).isin(llms)]
    if test.empty:
        raise ValueError(f"nothing to evaluate: no {split!r} rows of a user and an LLM this router knows")
    pairs = test.drop_duplicates(["user_id", "query_id"])[["user_id", "query_id", "task", "query"]]
    pairs = pairs.sort_values(["user_id", "query_id"], kind="stable").reset_index(drop=True)
    dense = dense_block(test, pairs, llms)
    if same_encoder:
        emb = prepared.query_embedding_dict()
    else:
        log("note: the data's text encoder differs from the router's; encoding the queries with the router's")
        texts = pairs.drop_duplicates("query_id").set_index("query_id")["query"]
        emb = {str(i): v for i, v in zip(texts.index, router.encode(list(texts)), strict=True)}
    known_tasks = set(router.tasks)
    unknown_tasks = sorted({str(t) for t in pairs["task"]} - known_tasks)
    if unknown_tasks:
        log(f"note: tasks unknown to the router are inferred even with gold labels: {unknown_tasks}")
    block = (pairs.drop(columns=["query"]), dense)
    gold = RouterScorer(router, emb, gold_tasks=True, batch_size=4096)
    live = RouterScorer(router, emb, batch_size=4096)
    return {
        "gold": evaluate(gold, block, llms=llms),
        "live": evaluate(live, block, llms=llms),
        "task_accuracy": task_accuracy(live.tasks_used, pairs),
        "skipped_users": [str(u) for u in skipped_users],
        "skipped_llms": skipped_llms,
        "n": len(pairs),
    }


def metrics_table(result: dict) -> str:
    """The Markdown table of :func:`evaluate_router`: one row per user, then overall."""
    head = (
        "| user | pairs | reward (gold task) | accuracy (gold) | cost (gold) "
        "| reward (task inferred) | accuracy (inferred) | cost (inferred) | oracle reward |"
    )
    lines = [head, "|" + "---|" * 9]
    gold, live = result["gold"], result["live"]
    rows = [(u, gold["per_user"][u], live["per_user"][u]) for u in gold["per_user"]]
    rows.append(("**overall**", gold["overall"], live["overall"]))
    for name, g, v in rows:
        lines.append(
            f"| {name} | {g['n']} | {g['reward']:.4f} | {g['accuracy']:.3f} | {g['cost']:.4g} "
            f"| {v['reward']:.4f} | {v['accuracy']:.3f} | {v['cost']:.4g} | {g['oracle_reward']:.4f} |"
        )
    return "\n".join(lines)


def evaluate(args: argparse.Namespace, overrides: list[str]) -> int:
    from proute.config import compose
    from proute.router import PersonalizedRouter

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise SystemExit(f"proute evaluate: {bad[0]!r} is not a Hydra override (key=value)")
    router = PersonalizedRouter.load(args.router)
    if args.unknown_user is not None:
        from proute.serving.app import unknown_user_policy

        unknown_user_policy(router, args.unknown_user)
    try:
        cfg = compose("train", overrides)
    except Exception as exc:  # Hydra's composition errors name the bad override
        if isinstance(exc, ValueError):
            raise
        raise SystemExit(f"proute evaluate: {type(exc).__name__}: {exc}") from None

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    result = evaluate_router(router, cfg, args.split, log)
    trained = router.meta.get("config", {})
    for group in ("dataset", "users", "split"):
        if trained.get(group) is not None and _plain(cfg.get(group)) != trained.get(group):
            log(f"note: {group} differs from the router's training config")
    print(f"proute evaluate: {args.router} on the {args.split!r} split, {result['n']} (user, query) pairs")
    print(metrics_table(result))
    print(f"\ntask inferred correctly for {result['task_accuracy']:.1%} of the pairs")
    if args.output is not None:
        payload = {
            k: ({kk: vv for kk, vv in v.items() if kk != "picks"} if k in ("gold", "live") else v)
            for k, v in result.items()
        }
        write_atomically(args.output, json.dumps(payload, indent=2, default=float) + "\n")
    return 0


def _plain(node):
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


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
        )
    except UpstreamsError as exc:
        raise SystemExit(f"proute serve: {exc}") from None
    return 0


def chat_command(args: argparse.Namespace) -> int:
    from proute.serving.chat import launch

    launch(args.router, args.upstreams, host=args.host, port=args.port, share=args.share)
    return 0


def stub_upstream_command(args: argparse.Namespace) -> int:
    from proute.serving.stub_upstream import serve_stub

    serve_stub(args.port, args.host)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("train", "data"):
        return _hydra(argv[0], argv[1:])
    parser = argparse.ArgumentParser(prog="proute", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train a router (Hydra overrides follow)")
    sub.add_parser("data", help="summarise a dataset (Hydra overrides follow)")
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
    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server (needs the serve extra)")
    p.add_argument("router", type=Path, help="exported router directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--upstreams", type=Path, help="upstreams YAML (conf/upstreams.example.yaml)")
    p.add_argument(
        "--unknown-user",
        choices=("error", "average"),
        default=None,
        help="404 for unknown users (default: error), or route them as the average user",
    )
    p.add_argument("--max-batch", type=int, default=64, help="micro-batch size bound (default 64)")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="micro-batch wait bound (default 2 ms)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads for routing (default: one per core)"
    )
    p = sub.add_parser("chat", help="Gradio chat page (needs the chat extra)")
    p.add_argument("router", type=Path, help="exported router directory")
    p.add_argument("--upstreams", type=Path, help="upstreams YAML: answer with the chosen LLM")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="ask Gradio's share server for a public link")
    p = sub.add_parser("stub-upstream", help="a fake OpenAI-compatible upstream that echoes (serve extra)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
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
        if args.command == "stub-upstream":
            return stub_upstream_command(args)
        return infer(args)
    except (RouterFormatError, ModelNotAvailableError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise SystemExit(f"proute {args.command}: {message}") from None


if __name__ == "__main__":
    sys.exit(main())
