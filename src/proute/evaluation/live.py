"""The *live* protocol: the exported router scores the val and test pairs without their task
labels (it infers them, :mod:`proute.router.task_inference`), as a request would reach it.

:func:`live_protocol` chooses the router's ``task_mode`` on validation reward and scores
the test split once with it; :func:`live_metrics` is one split's metrics under one mode.
"""

from __future__ import annotations

import logging
from typing import Any

from proute.evaluation.scorers import RouterScorer
from proute.evaluation.scoring import evaluate, task_accuracy
from proute.router.task_inference import HARD, TASK_MODES

log = logging.getLogger(__name__)


def live_metrics(router, rg, emb: dict, split: str, mode: str, texts: dict | None = None) -> dict[str, Any]:
    """``split``'s pairs scored by the exported router without their task labels, plus
    ``task_accuracy``. ``emb``: query id -> embedding (``PreparedData.query_embedding_dict``);
    ``texts``: query id -> text (the router's text classifier), or None (the embedding-only
    fallback)."""
    block = rg.split_block(split)
    scorer = RouterScorer(router, emb, texts, task_mode=mode)
    m = evaluate(scorer, block, llms=list(rg.llms))
    m["task_accuracy"] = task_accuracy(scorer.tasks_used, block[0])
    return m


def live_protocol(router, rg, prepared) -> dict[str, Any]:
    """Choose the router's ``task_mode`` (hard or soft task inference) on validation reward,
    then score the test split once with it. Also sets the router's default mode. Requests
    carry their text, so the router infers tasks from text and embedding; the embedding-only
    fallback (a request given only as an embedding) is reported as ``embedding_only``."""
    emb = prepared.query_embedding_dict()
    table = prepared.table
    texts: dict | None = dict(zip(table["query_id"].astype(str), table["query"].astype(str), strict=True))
    if getattr(router, "text_task_classifier", None) is None:
        texts = None
    val = {mode: live_metrics(router, rg, emb, "val", mode, texts) for mode in TASK_MODES}
    mode = max(TASK_MODES, key=lambda m: (val[m]["overall"]["reward"], m == HARD))
    router.task_mode = router.meta["task_inference"]["mode"] = mode
    router.meta["task_inference"]["val_reward_by_mode"] = {m: val[m]["overall"]["reward"] for m in val}
    test = live_metrics(router, rg, emb, "test", mode, texts)
    out: dict[str, Any] = {"mode": mode, "val": val[mode], "test": test}
    fallback = ""
    if texts is not None:
        out["embedding_only"] = {s: live_metrics(router, rg, emb, s, mode) for s in ("val", "test")}
        eo = out["embedding_only"]["test"]
        fallback = f" (embedding only: {eo['overall']['reward']:.4f}, {eo['task_accuracy']:.3f})"
    log.info(
        "live protocol (no task labels, task_mode=%s chosen on val): test reward %.4f, task accuracy %.3f%s",
        mode,
        test["overall"]["reward"],
        test["task_accuracy"],
        fallback,
    )
    return out
