"""Statistics over runs: the paired bootstrap of two routers' rewards, "mean ± std" cells
over seeds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from proute.evaluation.outcomes import KEY


@dataclass(frozen=True)
class BootstrapResult:
    """Mean of ``a − b`` over the aligned pairs, its percentile confidence interval, and
    the share of resamples whose mean difference is ``<= 0`` (a one-sided bootstrap
    p-value for "a is better than b")."""

    mean_diff: float
    ci_low: float
    ci_high: float
    frac_le_zero: float
    n_pairs: int
    n_resamples: int
    level: float = 0.95

    def __str__(self) -> str:
        return (
            f"{self.mean_diff:+.4f} [{self.ci_low:+.4f}, {self.ci_high:+.4f}] "
            f"({self.level:.0%} CI, {self.n_pairs} pairs; P(diff <= 0) = {self.frac_le_zero:.4f})"
        )


def _keyed(x, name: str) -> pd.Series:
    if isinstance(x, pd.DataFrame):
        if "reward" not in x.columns or not set(KEY) <= set(x.columns):
            raise ValueError(f"{name}: a DataFrame needs columns {KEY + ['reward']}")
        x = x.assign(**{k: x[k].astype(str) for k in KEY}).set_index(KEY)["reward"]
    if not isinstance(x, pd.Series):
        x = pd.Series(np.asarray(x, dtype=float))
    if x.index.has_duplicates:
        raise ValueError(f"{name}: duplicate keys")
    return x.astype(float)


def paired_bootstrap(
    reward_a,
    reward_b,
    n: int = 10000,
    seed: int = 0,
    level: float = 0.95,
    cluster: str | None = None,
) -> BootstrapResult:
    """Paired bootstrap of the mean reward difference ``a − b`` over (user, query) pairs.

    ``reward_a``/``reward_b``: Series indexed by the pair key (e.g. ``(user_id,
    query_id)``), DataFrames with ``user_id``, ``query_id`` and ``reward`` (e.g. two runs'
    ``test_picks.csv``), or arrays aligned by position. Keyed inputs are aligned by key and
    must hold the same pairs. Each of ``n`` resamples draws the pairs with replacement
    (``cluster``: an index level, e.g. ``"query_id"``, whose groups are drawn whole, since
    the users of one query text share its outcomes); the interval is the percentile
    interval of the resampled means at ``level``.
    """
    a, b = _keyed(reward_a, "reward_a"), _keyed(reward_b, "reward_b")
    if len(a) != len(b) or not a.index.sort_values().equals(b.index.sort_values()):
        raise ValueError(f"reward_a and reward_b must hold the same pairs ({len(a)} and {len(b)} given)")
    diff = a - b.reindex(a.index)
    if diff.isna().any() or len(diff) == 0:
        raise ValueError("rewards must be finite and non-empty")
    if cluster is None:
        sums, counts = diff.to_numpy(), np.ones(len(diff))
    else:
        grouped = diff.groupby(level=cluster, sort=False)
        sums, counts = grouped.sum().to_numpy(), grouped.size().to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    k = len(sums)
    means = np.empty(n)
    chunk = max(1, 2_000_000 // k)
    for start in range(0, n, chunk):
        idx = rng.integers(0, k, size=(min(chunk, n - start), k))
        means[start : start + len(idx)] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return BootstrapResult(
        mean_diff=float(diff.mean()),
        ci_low=float(low),
        ci_high=float(high),
        frac_le_zero=float(np.mean(means <= 0)),
        n_pairs=len(diff),
        n_resamples=n,
        level=level,
    )


def format_mean_std(mean: float, std: float, digits: int = 4) -> str:
    """``"0.3554 ± 0.0053"``; a single value (std NaN) prints alone."""
    if not np.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def mean_std_over_seeds(
    frames: Sequence[pd.DataFrame | pd.Series], digits: int = 4, ddof: int = 1
) -> pd.DataFrame:
    """Cells ``"mean ± std"`` over runs (e.g. seeds) of frames with the same index and
    columns: numeric cells are averaged (``std`` with ``ddof``, the sample standard
    deviation by default), other columns are taken from the first frame.

    >>> runs = [pd.DataFrame({"reward": [r]}, index=["gnn"]) for r in (0.35, 0.36, 0.37)]
    >>> mean_std_over_seeds(runs).loc["gnn", "reward"]
    '0.3600 ± 0.0100'
    """
    frames = [f.to_frame() if isinstance(f, pd.Series) else f for f in frames]
    if not frames:
        raise ValueError("no frames given")
    first = frames[0]
    for f in frames[1:]:
        if not (f.index.equals(first.index) and f.columns.equals(first.columns)):
            raise ValueError("frames must share index and columns (align them first)")
    out = first.copy().astype(object)
    for col in first.columns:
        if pd.api.types.is_numeric_dtype(first[col]) and not pd.api.types.is_bool_dtype(first[col]):
            stack = np.stack([f[col].to_numpy(dtype=float) for f in frames])
            mean = stack.mean(axis=0)
            std = stack.std(axis=0, ddof=ddof) if len(frames) > ddof else np.full(len(mean), np.nan)
            out[col] = [format_mean_std(m, s, digits) for m, s in zip(mean, std, strict=True)]
    return out
