"""Experiment loggers: Weights & Biases (offline by default) or none.

A logger is a context manager: ``with logger.start(run_dir, config):`` always finishes
the run, also when training fails, so one failed job does not break a multirun.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd


class NullLogger:
    """Logs nothing."""

    run_dir: Path | None = None

    @contextmanager
    def start(self, run_dir: Path, config: dict, name: str | None = None) -> Iterator["NullLogger"]:
        self.run_dir = Path(run_dir)
        yield self

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_table(self, key: str, frame: pd.DataFrame, bars: Sequence[tuple[str, str]] = ()) -> None:
        """Log a table, with a bar chart (x column, y column) for each of ``bars``."""

    def log_summary(self, values: dict[str, Any]) -> None:
        pass


class WandbLogger(NullLogger):
    """Weights & Biases. ``mode="auto"``: online if ``WANDB_API_KEY`` is set, else offline.

    Offline runs are written to ``<run_dir>/wandb`` and can be uploaded later with
    ``wandb sync <run_dir>/wandb/offline-run-*``.
    """

    def __init__(
        self,
        project: str = "proute",
        mode: str = "auto",
        entity: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
    ):
        if mode not in ("auto", "online", "offline", "disabled"):
            raise ValueError(f"logger.mode={mode!r}; expected auto, online, offline or disabled")
        self.project, self.entity, self.group, self.tags = project, entity, group, list(tags)
        self.mode = mode
        self.run = None

    def resolved_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        env = os.environ.get("WANDB_MODE")
        if env in ("online", "offline", "disabled"):
            return env
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"

    @staticmethod
    def has_credentials() -> bool:
        if os.environ.get("WANDB_API_KEY"):
            return True
        netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
        return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")

    @contextmanager
    def start(self, run_dir, config, name=None):
        import wandb

        mode = self.resolved_mode()
        if mode == "online" and not self.has_credentials():
            raise RuntimeError(
                "logger mode 'online' needs W&B credentials: set WANDB_API_KEY or run "
                "`wandb login`; or use logger=wandb (offline without a key) or logger=none"
            )
        self.run_dir = Path(run_dir)
        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            group=self.group,
            tags=self.tags,
            mode=mode,
            dir=str(self.run_dir),
            config=config,
            name=name,
            settings=wandb.Settings(silent=True),
        )
        exit_code = 1
        try:
            yield self
            exit_code = 0
        finally:
            self.run.finish(exit_code=exit_code)
            self.run = None

    def log_metrics(self, metrics, step=None):
        self.run.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def log_table(self, key, frame, bars=()):
        import wandb

        table = wandb.Table(dataframe=frame.reset_index(drop=True))
        payload: dict[str, Any] = {key: table}
        for x, y in bars:
            payload[f"{key}_{y}"] = wandb.plot.bar(table, x, y, title=f"{key}: {y}")
        self.run.log(payload)

    def log_summary(self, values):
        for k, v in values.items():
            self.run.summary[k] = v
