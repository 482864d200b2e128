"""Outcome columns of the routing table: normalised cost and reward, each rule in one place.

DGL-free; used by the readers, the user simulators, the data pipeline and the graph builder.

- :func:`normalize_cost`: cost min-max normalised within each task (the paper's
  ``cost_norm``), optionally fitted on a subset of rows (the graph fits it on train rows);
- :func:`cost_efficiency_reward`: the paper's reward ``p · performance − (1 − p) · cost_norm``;
- :func:`reward_column` / :func:`with_reward`: a table without a ``reward`` column is
  rewarded by its ``performance``.

>>> import pandas as pd
>>> t = pd.DataFrame({"task": ["a", "a", "a", "b"], "cost": [1.0, 3.0, 2.0, 5.0],
...                   "performance": [1.0, 0.0, 1.0, 1.0]})
>>> normalize_cost(t).tolist()
[0.0, 1.0, 0.5, 0.0]
>>> reward_column(t), with_reward(t)["reward"].tolist()
('performance', [1.0, 0.0, 1.0, 1.0])
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The column a table without ``reward`` is rewarded by.
DEFAULT_REWARD = "performance"


def minmax_within(values: np.ndarray, groups, fit: np.ndarray | None = None) -> np.ndarray:
    """``values`` min-max normalised within each group, in the dtype of ``values``.

    Minimum and maximum of a group are taken over the rows where ``fit`` is true (default:
    all rows) and applied to all its rows. A group whose span is 0, that has no ``fit`` row,
    or that is missing (NaN), gives 0.
    """
    values = np.asarray(values)
    codes, uniq = pd.factorize(np.asarray(groups), sort=False)  # a missing group: code -1
    fit = np.ones(len(values), dtype=bool) if fit is None else np.asarray(fit, dtype=bool)
    fit = fit & (codes >= 0)
    # One slot per group plus a last one, never fitted, that code -1 reads (gives 0).
    lo = np.full(len(uniq) + 1, np.inf, values.dtype)
    hi = np.full(len(uniq) + 1, -np.inf, values.dtype)
    np.fmin.at(lo, codes[fit], values[fit])  # fmin/fmax skip NaN, as pandas' min/max do
    np.fmax.at(hi, codes[fit], values[fit])
    lo_row, span = lo[codes], (hi - lo)[codes]
    ok = np.isfinite(span) & (span > 0)
    out = np.zeros_like(values)
    out[ok] = (values[ok] - lo_row[ok]) / span[ok]
    return out


def normalize_cost(table: pd.DataFrame, fit: np.ndarray | None = None, dtype=np.float64) -> np.ndarray:
    """Cost min-max normalised within each task (0 where a task's costs are all equal).

    ``fit`` (a boolean row mask) chooses the rows the minimum and maximum are taken over;
    ``dtype`` the precision of the arithmetic and the result.
    """
    return minmax_within(table["cost"].to_numpy(dtype=dtype), table["task"], fit)


def cost_efficiency_reward(
    performance: np.ndarray, cost_norm: np.ndarray, p: np.ndarray | float
) -> np.ndarray:
    """The paper's reward: ``p · performance − (1 − p) · cost_norm``."""
    p = np.asarray(p, dtype=float)
    return p * np.asarray(performance, dtype=float) - (1.0 - p) * np.asarray(cost_norm, dtype=float)


def reward_column(table: pd.DataFrame) -> str:
    """``"reward"`` when the table has it, else :data:`DEFAULT_REWARD`."""
    return "reward" if "reward" in table.columns else DEFAULT_REWARD


def with_reward(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``reward`` column: its own, else a float copy of ``performance``."""
    if "reward" in table.columns:
        return table
    return table.assign(reward=table[DEFAULT_REWARD].astype(float))
