"""A token bucket per client (:class:`TokenBucket`) and the rates that configure it
(``20/s``, ``600/min``, ``1000/h``; :func:`parse_rate`), for the per-key limit of
:mod:`proute.serving.auth`.

>>> parse_rate("600/min"), parse_rate(5), parse_rate("none")
(10.0, 5.0, None)
>>> b = TokenBucket(rate=1.0, burst=2)
>>> [b.take(b.last) for _ in range(3)]  # two at once, the third waits a second
[0.0, 0.0, 1.0]
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

_PER = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_RATE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*([a-z]+)\s*")


def parse_rate(value: Any, where: str = "rate") -> float | None:
    """Requests per second of ``"20/s"``, ``"600/min"``, ``"1000/h"`` or a number (per
    second); ``None`` or ``"none"``: no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "off", "unlimited")):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        per_s = float(value)
    else:
        m = _RATE.fullmatch(str(value).lower())
        if m is None or m.group(2) not in _PER:
            raise ValueError(f"{where}: expected a rate such as 20/s, 600/min, 1000/h or none, got {value!r}")
        per_s = float(m.group(1)) / _PER[m.group(2)]
    if not math.isfinite(per_s) or per_s <= 0:
        raise ValueError(f"{where}: expected a positive rate, got {value!r}")
    return per_s


def parse_burst(value: Any, where: str = "burst") -> int | None:
    """A positive whole number of requests, or ``None`` (the default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: expected a whole number of requests >= 1, got {value!r}")
    return value


class TokenBucket:
    """``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self.tokens, self.last = float(burst), time.monotonic()

    def take(self, now: float) -> float:
        """0 when a request may pass (and counts it), else the seconds until one may."""
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def describe_rate(rate: float, burst: int) -> str:
    return f"{rate:g}/s, burst {burst}"
