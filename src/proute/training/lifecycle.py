"""The state of a run directory: ``running`` → ``finished`` | ``failed`` | ``interrupted``.

A training run writes ``status.json`` (atomically: a temporary file, then
:func:`os.replace`) when it starts, after every epoch, and when it ends::

    {"state": "running", "attempt": 2, "pid": 4242, "host": "...", "started": "...",
     "updated": "...", "epoch": 17, "resumed": true}

``finished`` is written last, after every artefact (metrics, plots, router), so a run
directory that says ``finished`` is complete. A run that raises is marked ``failed`` with
the error; SIGINT (Ctrl-C) and SIGTERM (a scheduler's time limit) mark it ``interrupted``
with the signal's name. Either keeps its config, log, epoch history (``history.csv``,
rewritten after every epoch) and checkpoint, and a later run into the same directory may
resume it (``resume=true``) or start over without ``overwrite=true``. Only a finished run is
protected: a run into its directory is refused before anything is written there, Hydra's own
files (``.hydra/``, the job log) included; see :func:`hydra_subdir` and :func:`job_log`,
which ``conf/hydra/default.yaml`` uses.

Directories written before ``status.json`` existed count as finished when they hold
``metrics.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

STATUS = "status.json"
STATES = ("running", "finished", "failed", "interrupted")


class RunStateError(RuntimeError):
    """A run directory's ``status.json`` is unreadable, or another process is writing it."""


class RunInterrupted(BaseException):
    """Raised in the main thread by SIGTERM while a run is active. Like KeyboardInterrupt it
    is not an :class:`Exception`, so ``except Exception`` blocks let it through."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"received {signal.Signals(signum).name}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_status(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run directory's status, or None for a directory that holds no run."""
    run_dir = Path(run_dir)
    path = run_dir / STATUS
    if path.is_file():
        try:
            status = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunStateError(
                f"{path}: not valid JSON ({exc}); if no run is writing {run_dir}, delete the "
                "file (or pass overwrite=true) to run there again"
            ) from exc
        if not isinstance(status, dict) or status.get("state") not in STATES:
            raise RunStateError(f"{path}: field 'state' must be one of {list(STATES)}; got {status!r}")
        return status
    if (run_dir / "metrics.json").is_file():  # a run from before status.json
        return {"state": "finished", "legacy": True}
    return None


def is_finished(run_dir: str | os.PathLike) -> bool:
    try:
        status = read_status(run_dir)
    except RunStateError:
        return False
    return status is not None and status["state"] == "finished"


def write_status(run_dir: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the status (``updated`` set now) and write it atomically."""
    run_dir = Path(run_dir)
    path = run_dir / STATUS
    try:
        status = read_status(run_dir) or {}
    except RunStateError:
        status = {}
    status.pop("legacy", None)
    status.update(fields, updated=_now())
    tmp = path.with_name(f".{STATUS}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status, indent=2, default=str))
    os.replace(tmp, path)
    return status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def check_can_run(run_dir: str | os.PathLike, overwrite: bool = False) -> dict[str, Any] | None:
    """Raise unless a new attempt may write into ``run_dir``; return its current status."""
    run_dir = Path(run_dir)
    status = read_status(run_dir) if not overwrite else None
    if status is None:
        return None
    if status["state"] == "finished":
        raise FileExistsError(
            f"{run_dir} already holds a finished run ({STATUS}: finished); proute does not "
            "overwrite it. Choose another hydra.run.dir, or pass overwrite=true."
        )
    pid = status.get("pid")
    if (
        status["state"] == "running"
        and isinstance(pid, int)
        and pid != os.getpid()
        and status.get("host") == socket.gethostname()
        and _alive(pid)
    ):
        raise RunStateError(
            f"{run_dir} is being written by another run (pid {pid}, {STATUS}: running); "
            "wait for it, stop it, or choose another hydra.run.dir"
        )
    return status


class RunLifecycle:
    """``with RunLifecycle(run_dir) as life: ...; life.finish()`` around one attempt.

    On entry: checks the directory (:func:`check_can_run`), writes ``running`` and, in the
    main thread, turns SIGTERM into :class:`RunInterrupted`. On exit by an exception:
    ``interrupted`` (SIGINT, SIGTERM) or ``failed`` (anything else, with the error), and
    the exception propagates. :meth:`finish` writes ``finished``: call it last.
    """

    def __init__(self, run_dir: str | os.PathLike, overwrite: bool = False, resume: bool = False):
        self.run_dir = Path(run_dir)
        self.overwrite, self.resume = overwrite, resume
        self._old_handler: Any = None

    def __enter__(self) -> "RunLifecycle":
        previous = check_can_run(self.run_dir, self.overwrite) or {}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_status(
            self.run_dir,
            state="running",
            attempt=int(previous.get("attempt", 0)) + 1,
            pid=os.getpid(),
            host=socket.gethostname(),
            started=_now(),
            resumed=bool(self.resume and previous),
            epoch=previous.get("epoch") if self.resume else None,
            error=None,
            signal=None,
            finished=None,
        )
        if threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    @staticmethod
    def _on_sigterm(signum, frame):
        raise RunInterrupted(signum)

    def epoch_done(self, epoch: int) -> None:
        write_status(self.run_dir, epoch=int(epoch))

    def finish(self) -> None:
        write_status(self.run_dir, state="finished", finished=_now())

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if self._old_handler is not None:
            signal.signal(signal.SIGTERM, self._old_handler)
            self._old_handler = None
        if exc_type is None:
            return False
        with contextlib.suppress(AttributeError, TypeError):
            exc.run_dir = self.run_dir  # for the caller's message
        with contextlib.suppress(OSError):
            if issubclass(exc_type, RunInterrupted):
                write_status(self.run_dir, state="interrupted", signal=signal.Signals(exc.signum).name)
            elif issubclass(exc_type, KeyboardInterrupt):
                write_status(self.run_dir, state="interrupted", signal="SIGINT")
            else:
                write_status(self.run_dir, state="failed", error=f"{exc_type.__name__}: {exc}"[:2000])
        return False


# -- Hydra's files ------------------------------------------------------------------------
# Hydra writes .hydra/{config,hydra,overrides}.yaml and opens the job log before proute's
# code runs. conf/hydra/default.yaml routes both through these resolvers, so that a run
# refused because its directory holds a finished run writes nothing there.


def _protected(output_dir: str, overwrite) -> bool:
    return not _truthy(overwrite) and is_finished(output_dir)


def _truthy(value) -> bool:
    return str(value).lower() in ("true", "1", "yes")


def hydra_subdir(output_dir: str, overwrite=False, resume=False) -> str | None:
    """``hydra.output_subdir``: ``.hydra``, or None (Hydra writes nothing) when protected.
    A resumed attempt keeps the first attempt's ``.hydra/`` files (a resume composes its
    config from their overrides, :mod:`proute.training.resume`) and writes its own in
    ``.hydra/attempt-<n>``."""
    if _protected(output_dir, overwrite):
        return None
    if _truthy(resume) and (Path(output_dir) / ".hydra" / "overrides.yaml").is_file():
        from proute.training.resume import hydra_attempt_subdir

        return hydra_attempt_subdir(output_dir)
    return ".hydra"


def job_log(output_dir: str, job_name: str, overwrite=False) -> str:
    """The job log's path, or the null device when the directory is protected."""
    return os.devnull if _protected(output_dir, overwrite) else str(Path(output_dir) / f"{job_name}.log")


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    for name, fn in (("proute_hydra_subdir", hydra_subdir), ("proute_job_log", job_log)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
