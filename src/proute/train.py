"""``python -m proute.train [overrides]``: train a personalized GNN router.

compose → data → graph → model → fit (early stopping on val) → test once → export.
Writes to the Hydra run directory: ``config.yaml`` (resolved), ``environment.json`` (git
revision, library versions), ``metrics.json`` (val and test; overall, per user, per task;
baselines), ``history.csv``, ``learning_curve.png``, ``per_user.csv``, ``per_user.png``,
``router/`` and (``export_baselines``) ``baselines/<name>/``, baselines as routers
(:mod:`proute.baselines.export`).
Returns the flat metric dict (the sweeper sees it); with ``optimized_metric`` set, that
one value. Prints the run directory first and, at the end, a table of the test reward of
the GNN (gold task labels and live), the strongest baseline on val and the oracle
(:func:`proute.evaluation.reporting.run_summary`); each phase without a bar logs its
start, a line every 15 s and its duration (:mod:`proute.training.progress`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, cast

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from proute.baselines import evaluate_baselines_by_split
from proute.baselines.export import export_baselines
from proute.config import register_resolvers, validate_config
from proute.config.paths import config_dir
from proute.data.pipeline import prepare_from_config
from proute.evaluation.live import live_protocol
from proute.evaluation.metrics import flat
from proute.evaluation.reporting import run_summary, write_history, write_run_report, write_test_outcomes
from proute.graph import RoutingGraph, build_graph
from proute.training import lifecycle
from proute.training.device import resolve_device, seed_everything, single_threaded
from proute.training.export import export_router
from proute.training.progress import phase
from proute.training.provenance import environment
from proute.training.resume import check_resume_config, merged_overrides, saved_overrides
from proute.training.timing import peak_rss_mb, run_timing

__all__ = ["build_graph_from", "check_declared_sizes", "cli", "main", "peak_rss_mb", "run", "run_timing"]

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


def build_graph_from(prepared, graph_cfg) -> RoutingGraph:
    """The routing graph of prepared data, with the ``graph/`` config's options."""
    data = prepared.data
    rg = build_graph(
        prepared.table,
        (prepared.query_ids, prepared.query_emb),
        (list(data.tasks.index), prepared.task_emb),
        (list(data.llms.index), prepared.llm_emb),
        llm_families=data.llms["family"].to_dict(),
        llms=list(data.llms.index),
        **cast(dict, OmegaConf.to_container(graph_cfg, resolve=True)),
    )
    if "new_user" in prepared.table.columns:  # NewUserSplit: report new users apart
        flags = prepared.table.drop_duplicates("user_id").set_index("user_id")["new_user"]
        rg.pairs["new_user"] = rg.pairs["user_id"].map(flags).fillna(False).astype(bool)
    return rg


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Everything ``python -m proute.train`` does, for a composed config.

    The run directory's state (:mod:`proute.training.lifecycle`) goes ``running`` → ``finished``
    (written after every artefact) or ``failed`` / ``interrupted``; a directory that holds
    a finished run is refused unless ``overwrite=true``.
    """
    validate_config(cfg)  # before the run directory is claimed or any data is read
    if cfg.get("quiet") and OmegaConf.select(cfg, "text_encoder.show_progress"):
        cfg.text_encoder.show_progress = False  # quiet silences every bar, the encoder's too
    resume = bool(cfg.get("resume", False))
    if resume:  # continues with the saved config: a change outside the allow-list is refused
        check_resume_config(cfg, run_dir)
    print(f"proute train: run directory {run_dir}", flush=True)
    t0 = time.perf_counter()
    deterministic = bool(OmegaConf.select(cfg, "trainer.deterministic", default=False))
    with lifecycle.RunLifecycle(run_dir, overwrite=bool(cfg.get("overwrite", False)), resume=resume) as life:
        with single_threaded(deterministic):  # the graph is built on one thread too
            out, report = _run(cfg, Path(run_dir), life, resume)
        life.finish()
    print(run_summary(report, run_dir, time.perf_counter() - t0), flush=True)
    return out


def _run(cfg: DictConfig, run_dir: Path, life: lifecycle.RunLifecycle, resume: bool) -> tuple[dict, dict]:
    """One attempt: the flat metric dict and the report (``metrics.json``'s content)."""
    resolved = cast(dict, OmegaConf.to_container(cfg, resolve=True))
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    env = environment()
    (run_dir / "environment.json").write_text(json.dumps(env, indent=2))
    t0 = time.perf_counter()
    with phase("preparing the data, graph and model"):
        prepared, rg, model, masking, trainer, logger = _instantiate(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("graph: %s; model: %d parameters; device: %s", rg, n_params, rg.device)
    data_seconds = time.perf_counter() - t0

    def on_epoch(epoch: int, record: dict) -> None:
        logger.log_metrics(record, step=epoch)
        write_history(run_dir, trainer.history)
        life.epoch_done(epoch)

    generator = torch.Generator().manual_seed(int(cfg.random_state))
    with logger.start(run_dir, {**resolved, "environment": env, "parameters": n_params}):
        t1 = time.perf_counter()
        fit_kw = {
            "quiet": bool(cfg.quiet),
            "run_dir": run_dir,
            "resume": resume,
            "seed": int(cfg.random_state),
        }
        history = trainer.fit(model, rg, masking, generator, on_epoch=on_epoch, **fit_kw)
        timing = run_timing(history, trainer.best_epoch, rg, data_seconds, time.perf_counter() - t1)
        timing.update({f"data_{k}_seconds": v for k, v in prepared.timings.items()})
        if trainer.best_epoch < 0:
            raise RuntimeError(
                f"no epoch gave a finite validation {trainer.monitor} (history: {run_dir / 'history.csv'}); "
                "there is no model to select"
            )
        return _evaluate_and_export(cfg, run_dir, (prepared, rg, model, trainer, logger), env, timing)


def _evaluate_and_export(cfg: DictConfig, run_dir: Path, parts, env: dict, timing: dict) -> tuple[dict, dict]:
    """Test once, the baselines, the router's export and live protocol, the report files."""
    prepared, rg, model, trainer, logger = parts
    with phase("evaluating the best model on val and test"):
        val = trainer.evaluate(model, rg, "val")
        test = trainer.evaluate(model, rg, "test")  # the one and only test evaluation
    with phase(f"fitting and scoring the baselines ({', '.join(cfg.baselines)})"):
        fitted: dict = {}
        baselines = _baselines(cfg, prepared, rg, fitted)
    with phase("exporting the router (task classifiers, user state)"):
        router = export_router(model, rg, prepared, cfg, env)
    with phase("live protocol (the exported router, task labels inferred)"):
        live = live_protocol(router, rg, prepared)
    with phase("writing metrics, plots" + (" and the router" if cfg.export_router else "")):
        n_params = sum(p.numel() for p in model.parameters())
        users = prepared.data.meta.get("user_profiles")  # who the simulated users are, if simulated
        report = write_run_report(
            run_dir, val, test, baselines, trainer.history, timing, n_params, logger, live, users
        )
        write_test_outcomes(run_dir, prepared.table, baselines)
        if cfg.export_router:
            router.save(run_dir / "router")
        export_baselines(list(cfg.get("export_baselines") or []), fitted, router, run_dir / "baselines")
    out = {**flat(val, "val"), **flat(test, "test"), **flat(live["test"], "test_live"), **timing}
    out["test_live/task_accuracy"] = live["test"]["task_accuracy"]
    return out, report


def _instantiate(cfg: DictConfig):
    """Seed, prepare the data, build the graph, and instantiate the model, masking, trainer
    and logger of ``cfg`` (in this order: the model's initial weights draw from the seed)."""
    device = resolve_device(str(cfg.device))
    seed_everything(int(cfg.random_state))
    prepared = prepare_from_config(cfg)
    table = prepared.table
    check_declared_sizes(cfg, table["user_id"].nunique(), table["task"].nunique())
    rg = build_graph_from(prepared, cfg.graph)
    model = instantiate(cfg.model)(rg)
    rg, model = rg.to(device), model.to(device)
    return prepared, rg, model, instantiate(cfg.masking), instantiate(cfg.trainer), instantiate(cfg.logger)


def _baselines(cfg: DictConfig, prepared, rg, fitted: dict | None = None) -> dict[str, dict[str, dict]]:
    """The ``baselines:`` (and ``export_baselines:``) of ``cfg`` on val and test; the fitted
    ones (knn, mlp, mf) choose their hyperparameters on val alone; ``fitted`` receives them."""
    table = prepared.table
    return evaluate_baselines_by_split(
        table[table["split"] == "train"],
        {split: rg.split_block(split) for split in ("val", "test")},
        list(rg.llms),
        names=list(dict.fromkeys([*cfg.baselines, *(cfg.get("export_baselines") or [])])),
        query_emb=(prepared.query_ids, prepared.query_emb),
        fitted=fitted,
    )


@hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.get("skip_finished") and lifecycle.is_finished(run_dir):  # a study resumed: done already
        log.info("%s holds a finished run: skipped (skip_finished=true)", run_dir)
        return None
    if cfg.get("resume"):
        cfg = _resumed_config(cfg, run_dir)
    out = run(cfg, run_dir)
    metric = cfg.get("optimized_metric")
    return out[metric] if metric else out


def _resumed_config(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """A resumed run's config: the first attempt's overrides (``.hydra/overrides.yaml``)
    applied again, under the ones given now (:mod:`proute.training.resume`)."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    now = list(HydraConfig.get().overrides.task)
    merged = merged_overrides(saved_overrides(run_dir), now)
    if merged == now:  # every first-attempt override given again (a resumed study)
        return cfg
    log.info("resume=true: the first attempt's overrides applied again: %s", " ".join(merged))
    hydra_cfg = HydraConfig.get()
    cfg = compose(config_name=hydra_cfg.job.config_name, overrides=merged)
    if hydra_cfg.output_subdir is not None:  # Hydra's copy of this attempt's config: the one used
        (run_dir / str(hydra_cfg.output_subdir) / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    return cfg


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
