"""The study's Hydra callback (``conf/sweep/study.yaml``): the plan and progress of its runs,
the embedding cache warmed once before them, and the resolvers that make it resumable.

A study cut short is run again with the same command: a run whose directory says
``finished`` is skipped (``skip_finished=true``, :func:`proute.train.main`); an interrupted
or failed one with a ``checkpoint/`` resumes (``resume: ${proute_resumable:...}``); one whose
``status.json`` is unreadable starts over (``overwrite: ${proute_unreadable:...}``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from proute.study.runs import StudyRun, fmt_seconds, plan_of_config
from proute.training import lifecycle


def resumable(run_dir: str) -> bool:
    """``resume``: a run that did not finish and left a checkpoint continues from it."""
    return (Path(run_dir) / "checkpoint").is_dir() and not lifecycle.is_finished(run_dir)


def unreadable(run_dir: str) -> bool:
    """``overwrite``: a directory whose ``status.json`` cannot be read is started over."""
    try:
        lifecycle.read_status(run_dir)
    except lifecycle.RunStateError:
        return True
    return False


def register_resolvers() -> None:
    for name, fn in (("proute_resumable", resumable), ("proute_unreadable", unreadable)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


# The callback is instantiated (main process) and unpickled (each launcher's worker) before
# any job's config is resolved, so importing this module registers the resolvers in time.
register_resolvers()


def warm_cache(config: DictConfig, out=sys.stdout) -> None:
    """Encode the query, task and LLM texts into the embedding cache once, with every core,
    before the one-thread jobs start (on a fresh clone each job would encode them itself, on
    one thread). The settings share the bundled texts, so the study's base config stands for
    all; a failure is reported and left to the runs."""
    import torch  # heavy: only when there is a run to warm the cache for

    from proute.data.pipeline import prepare_from_config

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    t = time.perf_counter()
    try:
        cfg = OmegaConf.masked_copy(config, [str(k) for k in config if k != "hydra"])
        prepare_from_config(cfg)
        print(f"study: embedding cache ready ({fmt_seconds(time.perf_counter() - t)})", file=out, flush=True)
    except Exception as exc:  # noqa: BLE001 - reported; each run then encodes (or fails) itself
        print(f"study: warming the embedding cache failed ({type(exc).__name__}: {exc}); the runs encode")
    finally:
        torch.set_num_threads(threads)


class StudyProgress(Callback):
    """Prints the plan (runs, finished already, to run), then each run's start and end with
    the runs finished so far, the elapsed time and an ETA."""

    def __init__(self, warm: bool = True) -> None:
        self.warm = warm
        self.runs: list[StudyRun] = []
        self.jobs = 1
        self.t0 = time.time()
        self.before = 0
        self._start: float | None = None
        self._skipped = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.t0 = time.time()
        self.runs = plan_of_config(config)
        self.jobs = int(OmegaConf.select(config, "hydra.launcher.n_jobs", default=None) or 1)
        self.before = sum(r.state == "finished" for r in self.runs)
        todo = len(self.runs) - self.before
        print(
            f"study: {len(self.runs)} runs, {self.before} finished already (skipped), {todo} to run"
            f" ({self.jobs} at a time) into {config.hydra.sweep.dir}",
            flush=True,
        )
        if todo and self.warm:
            warm_cache(config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = config.hydra.runtime.output_dir
        self._start, self._skipped = time.time(), lifecycle.is_finished(run_dir)
        if not self._skipped:
            how = " (resume)" if resumable(run_dir) else ""
            print(f"  start {self._name(config)}{how}", flush=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        name = self._name(config)
        if self._skipped:
            print(f"  skip  {name}: finished already", flush=True)
            return
        failed = job_return.status.name == "FAILED"
        seconds = time.time() - (self._start or time.time())
        done = sum(lifecycle.is_finished(r.dir) for r in self.runs)
        msg = f"  {'FAILED' if failed else 'done  '} {name} in {fmt_seconds(seconds)}"
        if self.runs:
            msg += f" [{done}/{len(self.runs)} finished]; elapsed {fmt_seconds(time.time() - self.t0)}"
            msg += self._eta(done)
        if failed:
            msg += f"\n         {type(job_return._return_value).__name__}: {job_return._return_value}"
            msg += f" (log: {Path(config.hydra.runtime.output_dir) / 'train.log'})"
        print(msg, flush=True)

    def _eta(self, done: int) -> str:
        """The remaining runs at this invocation's pace (runs finished per second so far)."""
        now_done = done - self.before
        if now_done <= 0:
            return ""
        left = len(self.runs) - done
        return f", ETA {fmt_seconds((time.time() - self.t0) / now_done * left)}"

    @staticmethod
    def _name(config: DictConfig) -> str:
        return f"{config.hydra.runtime.choices.get('setting')}/seed{config.random_state}"


class MakeSweepDir(Callback):
    """Creates the sweep directory when the multirun starts, before the sweeper runs (the
    Optuna sweeper opens its SQLite storage there before any job has made the folder)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
