"""``proute evaluate``: metrics of an exported router on a dataset's split, with the gold
task labels and with the tasks inferred as for a live request."""

from __future__ import annotations

import argparse
import json
import sys

from proute.cli.requests_io import write_atomically

_RUNTIME_ENCODER_KEYS = ("cache_dir", "show_progress", "device", "batch_size")


def _encoder_id(spec) -> dict:
    from omegaconf import DictConfig, OmegaConf

    if isinstance(spec, DictConfig):
        spec = OmegaConf.to_container(spec, resolve=True)
    return {k: v for k, v in dict(spec or {}).items() if k not in _RUNTIME_ENCODER_KEYS}


def _split_rows(router, table, split: str, log):
    """The rows of ``split`` the router can score: users it knows (or routes by its
    unknown-user policy) and LLMs it can choose; ``(rows, skipped users, skipped LLMs)``."""
    import pandas as pd

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
    return test, skipped_users, skipped_llms


#: How the router infers a task, by what it has (:func:`proute.router.routing.task_proba`).
TASK_INFERENCE = {
    "text": "the text classifier (query embedding and text), as the server for text requests",
    "embedding": "the embedding-only classifier",
    "centroid": "the nearest training-task centroid",
}


def _task_inference(router, texts) -> str:
    if texts is not None and getattr(router, "text_task_classifier", None) is not None:
        return "text"
    return "embedding" if getattr(router, "task_classifier", None) is not None else "centroid"


def _embeddings(router, prepared, pairs, same_encoder: bool, log) -> dict:
    if same_encoder:
        return prepared.query_embedding_dict()
    log("note: the data's text encoder differs from the router's; encoding the queries with the router's")
    texts = pairs.drop_duplicates("query_id").set_index("query_id")["query"]
    return {str(i): v for i, v in zip(texts.index, router.encode(list(texts)), strict=True)}


def evaluate_router(router, cfg, split: str = "test", log=print, allow_overlap: bool = False) -> dict:
    """Score ``split`` of the data ``cfg`` describes with ``router``, with the gold task
    labels and without them (tasks inferred from the query's text and embedding, as the
    server infers them for a text request): ``{"gold", "live", "task_accuracy",
    "task_inference", "held_out", "overlap", "skipped_users", "skipped_llms", "n"}``
    (metrics of :func:`proute.evaluation.metrics.routing_metrics`). Users the router does
    not know are skipped (named) unless its unknown-user policy routes them. A split that
    holds queries the router trained on (:func:`proute.cli.held_out.training_overlap`) is
    an :class:`~proute.cli.held_out.OverlapError` unless ``allow_overlap`` (then
    ``held_out`` is False)."""
    # local: torch/dgl are imported only by the command that needs them (`proute --help` stays fast)
    from proute.cli.held_out import OverlapError, overlap_message, training_overlap
    from proute.data.pipeline import prepare_from_config
    from proute.evaluation.scorers import RouterScorer
    from proute.evaluation.scoring import dense_block, evaluate, task_accuracy

    same_encoder = _encoder_id(cfg.get("text_encoder")) == _encoder_id(router.meta["encoder"])
    prepared = prepare_from_config(cfg, encode=same_encoder)
    test, skipped_users, skipped_llms = _split_rows(router, prepared.table, split, log)
    llms = list(router.llms)
    pairs = test.drop_duplicates(["user_id", "query_id"])[["user_id", "query_id", "task", "query"]]
    pairs = pairs.sort_values(["user_id", "query_id"], kind="stable").reset_index(drop=True)
    overlap = training_overlap(router, cfg, split, pairs, log)
    if overlap["pairs"] and not allow_overlap:
        message = overlap_message(overlap, split, router.meta.get("config") or {}, cfg)
        raise OverlapError(f"{message}. Evaluate the router's own split, or give --allow-overlap")
    emb = _embeddings(router, prepared, pairs, same_encoder, log)
    unknown_tasks = sorted({str(t) for t in pairs["task"]} - set(router.tasks))
    if unknown_tasks:
        log(f"note: tasks unknown to the router are inferred even with gold labels: {unknown_tasks}")
    texts = dict(zip(pairs["query_id"].astype(str), pairs["query"].astype(str), strict=True))
    texts_or_none = texts if _task_inference(router, texts) == "text" else None
    block = (pairs.drop(columns=["query"]), dense_block(test, pairs, llms))
    gold = RouterScorer(router, emb, texts_or_none, gold_tasks=True, batch_size=4096)
    live = RouterScorer(router, emb, texts_or_none, batch_size=4096)
    return {
        "gold": evaluate(gold, block, llms=llms),
        "live": evaluate(live, block, llms=llms),
        "task_accuracy": task_accuracy(live.tasks_used, pairs),
        "task_inference": _task_inference(router, texts_or_none),
        "held_out": None if not overlap["checked"] else overlap["pairs"] == 0,
        "overlap": overlap,
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


def _report_held_out(result: dict, router, cfg, split: str, log) -> str:
    """Log whether the split is held out; the line's suffix for the header ("" when it is)."""
    from proute.cli.held_out import overlap_message, plain

    trained = router.meta.get("config") or {}
    if result["held_out"] is None:
        log("note: the router records no training config: cannot check that the split is held out")
        return " (held out: unchecked)"
    if result["held_out"]:
        differs = [g for g in ("dataset", "users", "split") if plain(cfg.get(g)) != trained.get(g)]
        if differs:
            log(
                f"note: {', '.join(differs)} differ from the router's training config; no query of "
                f"the {split!r} split is a training query of the router (checked)"
            )
        return ""
    message = overlap_message(result["overlap"], split, trained, cfg)
    log(f"WARNING: NOT HELD OUT (--allow-overlap): {message}")
    return f" -- NOT HELD OUT: {result['overlap']['pairs']} pairs are training queries of the router"


def evaluate(args: argparse.Namespace, overrides: list[str]) -> int:
    from proute.config import compose
    from proute.router import load_router

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise SystemExit(f"proute evaluate: {bad[0]!r} is not a Hydra override (key=value)")
    router = load_router(args.router)
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

    result = evaluate_router(router, cfg, args.split, log, allow_overlap=args.allow_overlap)
    suffix = _report_held_out(result, router, cfg, args.split, log)
    where = f"{args.router} on the {args.split!r} split"
    print(f"proute evaluate: {where}, {result['n']} (user, query) pairs{suffix}")
    print(metrics_table(result))
    inference = TASK_INFERENCE[result["task_inference"]]
    print(f"\ntask inferred correctly for {result['task_accuracy']:.1%} of the pairs, by {inference}")
    if args.output is not None:
        payload = {
            k: ({kk: vv for kk, vv in v.items() if kk != "picks"} if k in ("gold", "live") else v)
            for k, v in result.items()
        }
        write_atomically(args.output, json.dumps(payload, indent=2, default=float) + "\n")
    return 0
