"""Console lines for the phases of a run that have no progress bar (baselines, test pass,
router export, live protocol, report), so that no stretch of a run is silent.

``with phase("fitting baselines"):`` logs the phase's start, a line every ``every`` seconds
while it runs, and how long it took. Phases are logged (INFO, the console and the run's log
under Hydra); ``quiet=true`` silences progress *bars* only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

__all__ = ["HEARTBEAT_SECONDS", "phase"]

log = logging.getLogger("proute.train")

#: Seconds between the "still running" lines of a long phase.
HEARTBEAT_SECONDS = 15.0


@contextlib.contextmanager
def phase(name: str, every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Log ``name …`` now, ``name: still running (N s)`` every ``every`` seconds, and
    ``name: done in N s`` at the end (nothing more when the phase raises)."""
    log.info("%s …", name)
    t0, stop = time.perf_counter(), threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            log.info("%s: still running (%.0f s)", name, time.perf_counter() - t0)

    thread = threading.Thread(target=beat, name=f"progress: {name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    log.info("%s: done in %.1f s", name, time.perf_counter() - t0)
