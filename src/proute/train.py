"""``python -m proute.train [overrides]``: train a personalized GNN router.

compose → data → graph → model → fit (early stopping on val) → test once → export.
Writes to the Hydra run directory: ``config.yaml`` (resolved), ``environment.json`` (git
revision, library versions), ``metrics.json`` (val and test; overall, per user, per task;
baselines), ``history.csv``, ``per_user.csv``, ``per_user.png`` and ``router/``.
Returns the flat metric dict (the sweeper sees it); with ``optimized_metric`` set, that
one value.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from proute.config import register_resolvers
from proute.config.paths import config_dir
from proute.training import lifecycle

log = logging.getLogger(__name__)
register_resolvers()
lifecycle.register_resolvers()


def check_declared_sizes(cfg: DictConfig, num_users: int, num_tasks: int) -> None:
    """``user_num``/``num_task`` come from the data; an explicit mismatch is an error."""
    for key, actual in (("user_num", num_users), ("num_task", num_tasks)):
        declared = cfg.get(key)
        if declared is not None and int(declared) != actual:
            raise ValueError(
                f"{key}={declared} was set, but the data has {actual}; proute takes it from "
                f"the data (remove the override, or change the dataset/users config)"
            )


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def run_timing(history: list[dict], best_epoch: int, rg, data_seconds: float, train_seconds: float) -> dict:
    """Speed and size of a run, from its per-epoch history (a resumed run's too)."""
    epoch_s = [r["train/epoch_seconds"] + r["val/seconds"] for r in history]
    return {
        "data_seconds": data_seconds,
        "train_seconds": train_seconds,
        "epochs": len(history),
        "best_epoch": best_epoch,
        "seconds_per_epoch": float(sum(epoch_s) / max(1, len(history))),
        "train_pairs_per_second": sum(r["train/pairs"] for r in history)
        / max(1e-9, sum(r["train/epoch_seconds"] for r in history)),
        "time_to_best_seconds": float(
            sum(t for r, t in zip(history, epoch_s, strict=True) if r["epoch"] <= best_epoch)
        ),
        "peak_rss_mb": peak_rss_mb(),
        "num_users": rg.num_users,
        "num_query_nodes": rg.num_query_nodes,
        "num_train_edges": rg.num_outcome_edges,
    }


def build_graph_from(prepared, graph_cfg) -> "RoutingGraph":  # noqa: F821
    """The routing graph of prepared data, with the ``graph/`` config's options."""
    from proute.graph import build_graph

    data = prepared.data
    rg = build_graph(
        prepared.table,
        (prepared.query_ids, prepared.query_emb),
        (list(data.tasks.index), prepared.task_emb),
        (list(data.llms.index), prepared.llm_emb),
        llm_families=data.llms["family"].to_dict(),
        llms=list(data.llms.index),
        **OmegaConf.to_container(graph_cfg, resolve=True),
    )
    if "new_user" in prepared.table.columns:  # NewUserSplit: report new users apart
        flags = prepared.table.drop_duplicates("user_id").set_index("user_id")["new_user"]
        rg.pairs["new_user"] = rg.pairs["user_id"].map(flags).fillna(False).astype(bool)
    return rg


def live_metrics(router, rg, emb: dict, split: str, mode: str, texts: dict | None = None) -> dict[str, Any]:
    """The *live* protocol: ``split``'s pairs scored by the exported router without their
    task labels (it infers them, :mod:`proute.router.task_inference`), plus ``task_accuracy``.
    ``emb``: query id -> embedding (``PreparedData.query_embedding_dict``); ``texts``: query
    id -> text (the router's text classifier), or None (the embedding-only fallback)."""
    import numpy as np

    from proute.evaluation.metrics import routing_metrics

    pairs, dense = rg.split_block(split)
    q = np.stack([emb[str(i)] for i in pairs["query_id"]])
    queries = None if texts is None else [texts[str(i)] for i in pairs["query_id"]]
    scores, tasks = router.score(queries, list(pairs["user_id"]), None, query_emb=q, task_mode=mode)
    m = routing_metrics(
        scores, dense["reward"], dense["performance"], dense["cost"], dense["observed"], pairs, list(rg.llms)
    )
    m["task_accuracy"] = float(np.mean(np.asarray(tasks) == pairs["task"].astype(str).to_numpy()))
    return m


def live_protocol(router, rg, prepared) -> dict[str, Any]:
    """Choose the router's ``task_mode`` (hard or soft task inference) on validation reward,
    then score the test split once with it. Also sets the router's default mode. Requests
    carry their text, so the router infers tasks from text and embedding; the embedding-only
    fallback (a request given only as an embedding) is reported as ``embedding_only``."""
    emb = prepared.query_embedding_dict()
    table = prepared.table
    texts = dict(zip(table["query_id"].astype(str), table["query"].astype(str), strict=True))
    if getattr(router, "text_task_classifier", None) is None:
        texts = None
    val = {mode: live_metrics(router, rg, emb, "val", mode, texts) for mode in ("hard", "soft")}
    mode = max(("hard", "soft"), key=lambda m: (val[m]["overall"]["reward"], m == "hard"))
    router.task_mode = router.meta["task_inference"]["mode"] = mode
    router.meta["task_inference"]["val_reward_by_mode"] = {m: val[m]["overall"]["reward"] for m in val}
    test = live_metrics(router, rg, emb, "test", mode, texts)
    out = {"mode": mode, "val": val[mode], "test": test}
    if texts is not None:
        out["embedding_only"] = {s: live_metrics(router, rg, emb, s, mode) for s in ("val", "test")}
    fallback = ""
    if texts is not None:
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


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Everything ``python -m proute.train`` does, for a composed config.

    The run directory's state (:mod:`proute.training.lifecycle`) goes ``running`` → ``finished``
    (written after every artefact) or ``failed`` / ``interrupted``; a directory that holds
    a finished run is refused unless ``overwrite=true``.
    """
    from proute.config import validate_config

    validate_config(cfg)  # before the run directory is claimed or any data is read
    resume = bool(cfg.get("resume", False))
    with lifecycle.RunLifecycle(run_dir, overwrite=bool(cfg.get("overwrite", False)), resume=resume) as life:
        out = _run(cfg, Path(run_dir), life, resume)
        life.finish()
    return out


def _run(cfg: DictConfig, run_dir: Path, life: lifecycle.RunLifecycle, resume: bool) -> dict[str, Any]:
    import torch
    from hydra.utils import instantiate

    from proute.baselines import evaluate_baselines_by_split
    from proute.data.pipeline import prepare_from_config
    from proute.evaluation.metrics import flat
    from proute.evaluation.reporting import write_history, write_run_report, write_test_outcomes
    from proute.training.provenance import environment
    from proute.training.trainer import resolve_device, seed_everything

    resolved = OmegaConf.to_container(cfg, resolve=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    env = environment()
    (run_dir / "environment.json").write_text(json.dumps(env, indent=2))

    device = resolve_device(str(cfg.device))
    seed_everything(int(cfg.random_state))
    t0 = time.perf_counter()
    prepared = prepare_from_config(cfg)
    table = prepared.table
    check_declared_sizes(cfg, table["user_id"].nunique(), table["task"].nunique())
    rg = build_graph_from(prepared, cfg.graph)
    model = instantiate(cfg.model)(rg)
    rg, model = rg.to(device), model.to(device)
    masking = instantiate(cfg.masking)
    trainer = instantiate(cfg.trainer)
    logger = instantiate(cfg.logger)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("graph: %s; model: %d parameters; device: %s", rg, n_params, device)
    data_seconds = time.perf_counter() - t0

    def on_epoch(epoch: int, record: dict) -> None:
        logger.log_metrics(record, step=epoch)
        write_history(run_dir, trainer.history)
        life.epoch_done(epoch)

    generator = torch.Generator().manual_seed(int(cfg.random_state))
    with logger.start(run_dir, {**resolved, "environment": env, "parameters": n_params}):
        t1 = time.perf_counter()
        history = trainer.fit(
            model,
            rg,
            masking,
            generator,
            quiet=bool(cfg.quiet),
            on_epoch=on_epoch,
            run_dir=run_dir,
            resume=resume,
            seed=int(cfg.random_state),
        )
        train_seconds = time.perf_counter() - t1
        if trainer.best_epoch < 0:
            raise RuntimeError(
                f"no epoch gave a finite validation {trainer.monitor} (history: {run_dir / 'history.csv'}); "
                "there is no model to select"
            )
        val = trainer.evaluate(model, rg, "val")
        test = trainer.evaluate(model, rg, "test")  # the one and only test evaluation
        train_rows = table[table["split"] == "train"]
        # Fitted baselines (knn, mlp, mf) choose their hyperparameters on val alone.
        baselines = evaluate_baselines_by_split(
            train_rows,
            {split: rg.split_block(split) for split in ("val", "test")},
            list(rg.llms),
            names=list(cfg.baselines),
            query_emb=(prepared.query_ids, prepared.query_emb),
        )
        timing = run_timing(history, trainer.best_epoch, rg, data_seconds, train_seconds)
        timing.update({f"data_{k}_seconds": v for k, v in prepared.timings.items()})
        from proute.router import PersonalizedRouter

        router = PersonalizedRouter.from_training(model, rg, prepared, cfg, env)
        live = live_protocol(router, rg, prepared)
        report = write_run_report(run_dir, val, test, baselines, history, timing, n_params, logger, live=live)
        write_test_outcomes(run_dir, table, baselines)
        if cfg.export_router:
            router.save(run_dir / "router")
    out = {**flat(val, "val"), **flat(test, "test"), **flat(live["test"], "test_live"), **timing}
    out["test_live/task_accuracy"] = live["test"]["task_accuracy"]
    log.info("test: %s", json.dumps(report["test"]["overall"]))
    return out


@hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.get("skip_finished") and lifecycle.is_finished(run_dir):  # a study resumed: done already
        log.info("%s holds a finished run: skipped (skip_finished=true)", run_dir)
        return None
    out = run(cfg, run_dir)
    metric = cfg.get("optimized_metric")
    return out[metric] if metric else out


def cli() -> None:
    """``main()`` with a signal's conventional exit status (130 for SIGINT, 143 for SIGTERM)
    and a one-line message instead of a traceback; the run directory is marked
    ``interrupted`` and can be resumed (``resume=true hydra.run.dir=<dir>``)."""
    import sys

    try:
        main()
    except (lifecycle.RunInterrupted, KeyboardInterrupt) as exc:
        signum = getattr(exc, "signum", 2)
        where = getattr(exc, "run_dir", None)
        hint = f"; resume with resume=true hydra.run.dir={where}" if where else ""
        print(f"proute train: interrupted by {signal_name(signum)}{hint}", file=sys.stderr)
        sys.exit(128 + signum)


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


if __name__ == "__main__":
    cli()
