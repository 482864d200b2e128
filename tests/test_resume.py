"""resume=true continues a run with the config it started with (issue 16, item 2): the first
attempt's overrides apply again, a changed setting is refused by name, the few keys that may
change do so with a warning, and config.yaml always says what ran."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import FIXTURES, train_overrides
from proute.config import ConfigError
from proute.train import run
from proute.training.lifecycle import write_status
from proute.training.resume import merged_overrides


def _interrupted(run_dir) -> None:
    """Mark a run directory as a SIGTERM would have left it (a finished run is never resumed)."""
    write_status(run_dir, state="interrupted", signal="SIGTERM", finished=None)


def test_merged_overrides_put_the_new_ones_last_and_drop_what_they_replace():
    first = ["debug=default", "train_epoch=8", "model=gat", "+foo=1"]
    assert merged_overrides(first, ["resume=true", "train_epoch=9"]) == [
        "debug=default",
        "model=gat",
        "+foo=1",
        "resume=true",
        "train_epoch=9",
    ]


def test_a_cli_resume_continues_with_the_first_attempts_settings(tmp_path, cache_dir):
    """The user's report: a run started with train_epoch=3 (and debug=default: quiet, no W&B)
    resumed with only `resume=true hydra.run.dir=...` went on with the defaults
    (train_epoch 100, W&B) and said so nowhere. Now the first attempt's overrides apply
    again, .hydra/overrides.yaml keeps them, and the attempt's own files go beside."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "proute.train"]
    first = subprocess.run(
        [*cmd, *train_overrides(run_dir, cache_dir), "train_epoch=3"], env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr[-2000:]
    _interrupted(run_dir)
    # the data paths given again only make a failure fast (the defaults are the full data)
    paths = [f"paths.data_dir={FIXTURES}", f"paths.cache_dir={cache_dir}"]
    again = [*cmd, "resume=true", f"hydra.run.dir={run_dir}", *paths]
    resumed = subprocess.run(again, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert saved.train_epoch == 3 and saved.trainer.train_epoch == 3
    assert saved.quiet is True and saved.logger._target_.endswith("NullLogger")
    assert "train_epoch=3" in OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")
    attempt = run_dir / ".hydra" / "attempt-2"
    assert list(OmegaConf.load(attempt / "overrides.yaml")) == ["resume=true", *paths]
    assert OmegaConf.load(attempt / "config.yaml").train_epoch == 3
    assert len(pd.read_csv(run_dir / "history.csv")) == 3
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"


def test_a_resume_refuses_a_changed_setting_and_allows_more_epochs(train_cfg, tmp_path, caplog):
    """A setting that changes what is learned (trainer.patience) is refused, naming the key
    old → new, and the run is left as it was; more epochs (and quiet) may change, with a
    warning, and config.yaml then says what ran."""
    run(train_cfg("train_epoch=2"), tmp_path)
    _interrupted(tmp_path)
    before = (tmp_path / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"(?s)config\.yaml.*trainer\.patience: 20 → 3") as err:
        run(train_cfg("train_epoch=2", "resume=true", "trainer.patience=3", "model.dropout=0.5"), tmp_path)
    assert "model.dropout: 0.1 → 0.5" in str(err.value) and "train_epoch:" not in str(err.value)
    assert (tmp_path / "config.yaml").read_text() == before
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "interrupted"

    with caplog.at_level(logging.WARNING, logger="proute.training.resume"):
        run(train_cfg("resume=true", "train_epoch=3", "quiet=false"), tmp_path)
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert "train_epoch: 2 → 3" in warned and "quiet: True → False" in warned
    saved = OmegaConf.load(tmp_path / "config.yaml")
    assert saved.train_epoch == 3 and saved.quiet is False and saved.resume is True
    assert len(pd.read_csv(tmp_path / "history.csv")) == 3
