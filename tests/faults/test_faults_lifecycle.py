"""Faults of a run's life: crashes, refused reruns, signals, and whose files survive them.

The signal cases run ``python -m proute.train`` as a real subprocess and send it SIGTERM or
SIGINT after its first epoch, as a scheduler or a user at a terminal would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import train_overrides
from proute.train import run
from proute.training.lifecycle import RunStateError, check_can_run, read_status, write_status

PY = sys.executable


def _status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def _train_cmd(run_dir: Path, cache: Path, *extra: str) -> list[str]:
    return [PY, "-m", "proute.train", *train_overrides(run_dir, cache), *extra]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}


# -- in-process ---------------------------------------------------------------------------


def test_a_crash_after_the_metrics_is_failed_not_finished(train_cfg, tmp_path, monkeypatch):
    """Finding 1: metrics.json used to mark a run finished, so a crash in the router export
    left a run that looked finished and a rerun was refused. Now the run is `failed`, keeps
    its history, and a rerun needs no overwrite=true."""
    from proute.router import PersonalizedRouter

    def boom(self, path):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(PersonalizedRouter, "save", boom)
    with pytest.raises(OSError, match="injected"):
        run(train_cfg("train_epoch=2"), tmp_path)
    status = _status(tmp_path)
    assert status["state"] == "failed" and "disk full" in status["error"]
    assert len(pd.read_csv(tmp_path / "history.csv")) == 2
    assert (tmp_path / "config.yaml").is_file()
    monkeypatch.undo()
    run(train_cfg("train_epoch=1"), tmp_path)  # no overwrite=true needed
    assert _status(tmp_path)["state"] == "finished" and _status(tmp_path)["attempt"] == 2
    assert (tmp_path / "router" / "weights.safetensors").is_file()


def test_finished_is_written_after_every_artefact(train_cfg, tmp_path, monkeypatch):
    import proute.training.lifecycle as lc

    seen = {}
    finish = lc.RunLifecycle.finish

    def spy(self):
        seen["files"] = sorted(p.name for p in tmp_path.iterdir())
        finish(self)

    monkeypatch.setattr(lc.RunLifecycle, "finish", spy)
    run(train_cfg("train_epoch=1"), tmp_path)
    for name in (
        "metrics.json",
        "history.csv",
        "per_user.png",
        "router",
        "config.yaml",
        "test_outcomes.parquet",
    ):
        assert name in seen["files"], name
    assert _status(tmp_path)["state"] == "finished"


def test_history_is_on_disk_after_every_epoch(train_cfg, tmp_path, monkeypatch):
    import proute.training.trainer as trainer_mod

    rows = []
    fit = trainer_mod.Trainer.fit

    def watching_fit(self, *args, on_epoch=None, **kwargs):
        def watch(epoch, record):
            on_epoch(epoch, record)
            rows.append(len(pd.read_csv(tmp_path / "history.csv")))
            assert _status(tmp_path) | {"state": "running", "epoch": epoch} == _status(tmp_path)

        return fit(self, *args, on_epoch=watch, **kwargs)

    monkeypatch.setattr(trainer_mod.Trainer, "fit", watching_fit)
    run(train_cfg("train_epoch=3", "trainer.patience=5"), tmp_path)
    assert rows == [1, 2, 3]


def test_a_run_being_written_blocks_a_second_writer(tmp_path):
    sleeper = subprocess.Popen([PY, "-c", "import time; time.sleep(30)"])
    try:
        write_status(tmp_path, state="running", pid=sleeper.pid, host=os.uname().nodename)
        with pytest.raises(RunStateError, match=rf"pid {sleeper.pid}"):
            check_can_run(tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert check_can_run(tmp_path)["state"] == "running"  # its process is gone: a stale claim


@pytest.mark.parametrize(
    "content,match",
    [("{not json", "not valid JSON"), ('{"state": "done"}', "field 'state'"), ("[]", "field 'state'")],
    ids=["truncated", "unknown-state", "not-an-object"],
)
def test_a_corrupt_status_file_is_a_clear_error(tmp_path, unchanged, content, match):
    (tmp_path / "status.json").write_text(content)
    with unchanged(tmp_path), pytest.raises(RunStateError, match=match) as info:
        check_can_run(tmp_path)
    assert str(tmp_path / "status.json") in str(info.value)


def test_a_run_from_before_status_files_counts_as_finished(tmp_path, unchanged):
    (tmp_path / "metrics.json").write_text("{}")
    assert read_status(tmp_path)["state"] == "finished"
    with unchanged(tmp_path), pytest.raises(FileExistsError, match="finished run"):
        check_can_run(tmp_path)


# -- real processes -------------------------------------------------------------------------


def test_a_refused_rerun_touches_nothing_hydra_included(tmp_path, cache_dir, unchanged):
    """Finding 2: Hydra wrote .hydra/overrides.yaml (and the job log) of the refused run into
    the finished run's directory before proute's check ran."""
    run_dir = tmp_path / "run"
    env = _env()
    first = subprocess.run(
        _train_cmd(run_dir, cache_dir, "train_epoch=1"), env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert (run_dir / ".hydra" / "overrides.yaml").is_file() and _status(run_dir)["state"] == "finished"
    with unchanged(run_dir):
        again = subprocess.run(
            _train_cmd(run_dir, cache_dir, "train_epoch=1", "random_state=3"),
            env=env,
            capture_output=True,
            text=True,
        )
    assert again.returncode != 0
    assert "already holds a finished run" in again.stderr + again.stdout


def _wandb_exit_code(run_dir: Path) -> int:
    logs = list(run_dir.glob("wandb/offline-run-*/logs/debug.log"))
    assert len(logs) == 1, logs
    found = re.findall(r"got exitcode: (-?\d+)", logs[0].read_text())
    assert found, f"{logs[0]} records no exit code: the W&B run was not finished"
    return int(found[-1])


@pytest.mark.parametrize(
    "sig,code",
    [
        pytest.param(signal.SIGTERM, 143, id="SIGTERM"),
        pytest.param(signal.SIGINT, 130, id="SIGINT", marks=pytest.mark.slow),  # same path; ~35 s
    ],
)
def test_a_signal_marks_the_run_interrupted_and_it_resumes(tmp_path, cache_dir, sig, code):
    """Finding 3: SIGTERM left no history and an unfinished W&B run; SIGINT lost the history.
    Now both leave `interrupted` with the epochs trained, a W&B run finished with a non-zero
    exit code, and resume=true continues the run to the end."""
    run_dir = tmp_path / "run"
    cmd = _train_cmd(
        run_dir,
        cache_dir,
        "train_epoch=100000",
        "trainer.patience=100000",
        "logger=wandb",
        "export_router=false",
    )
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if (_status(run_dir).get("epoch") or 0) >= 1:
                    break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert "resume=true" in err
    status = _status(run_dir)
    assert status["state"] == "interrupted" and status["signal"] == sig.name
    history = pd.read_csv(run_dir / "history.csv")
    assert len(history) >= 2 and history["epoch"].tolist() == list(range(len(history)))
    assert (run_dir / "config.yaml").is_file() and (run_dir / "train.log").is_file()
    assert _wandb_exit_code(run_dir) != 0
    assert not (run_dir / "metrics.json").exists()

    done = int(json.loads((run_dir / "checkpoint" / "trainer.json").read_text())["epoch"])
    resumed = subprocess.run(
        [*cmd, "resume=true", f"train_epoch={done + 3}", "logger=none"],
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    status = _status(run_dir)
    assert status["state"] == "finished" and status["attempt"] == 2 and status["resumed"]
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == list(range(done + 3))
    assert (run_dir / "metrics.json").is_file()
