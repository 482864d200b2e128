"""The study's tables: routers x (test reward, reward / oracle, accuracy, cost), mean ± std
over the seeds of a setting, from each run's ``metrics.json``."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from proute.evaluation.analysis import mean_std_over_seeds

GNN, GNN_LIVE = "GNN (gold tasks)", "GNN (live, inferred tasks)"
#: (column, title, Markdown digits)
COLUMNS = (
    ("reward", "test reward", 4),
    ("reward_ratio", "reward / oracle", 3),
    ("accuracy", "accuracy", 3),
    ("cost", "mean cost ×10³", 4),
)
#: Markdown cells of these columns are scaled (the CSV keeps the raw values)
SCALE = {"cost": 1e3}
TITLES = {c: t for c, t, _ in COLUMNS} | {"task_accuracy": "task accuracy (live)"}


def router_frame(metrics: dict[str, Any], block: str = "overall") -> pd.DataFrame:
    """Routers x (reward, reward_ratio, accuracy, cost, task_accuracy) of one run;
    ``block="new_users"`` gives the held-out users' numbers."""
    rows: dict[str, dict[str, float]] = {}

    def take(name: str, m: dict[str, Any]) -> None:
        part = m.get(block)
        if part is not None:
            rows[name] = {c: float(part.get(c, np.nan)) for c, _, _ in COLUMNS}

    take(GNN, metrics["test"])
    if "live" in metrics:
        take(GNN_LIVE, metrics["live"]["test"])
        if GNN_LIVE in rows:
            rows[GNN_LIVE]["task_accuracy"] = float(metrics["live"]["test"]["task_accuracy"])
    for name, m in metrics.get("baselines", {}).get("test", {}).items():
        take(name, m)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    if "task_accuracy" not in frame.columns:
        frame["task_accuracy"] = np.nan
    frame.index.name = "router"
    return frame[[c for c, _, _ in COLUMNS] + ["task_accuracy"]]


def upper_bounds(metrics: dict[str, Any]) -> set[str]:
    """The baselines of a run that are upper bounds (the oracle), not routers to beat."""
    return {n for n, m in metrics.get("baselines", {}).get("test", {}).items() if m.get("upper_bound")}


def seed_table(frames: dict[int, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric: mean and std per column, Markdown cells ``mean ± std``) over the seeds."""
    index = list(dict.fromkeys(i for f in frames.values() for i in f.index))
    aligned = [f.reindex(index) for _, f in sorted(frames.items())]
    stack = np.stack([f.to_numpy(dtype=float) for f in aligned])
    cols = list(aligned[0].columns)
    numeric = pd.DataFrame(index=pd.Index(index, name="router"))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a router of no seed: nan, not a warning
        mean = np.nanmean(stack, axis=0)
        std = np.nanstd(stack, axis=0, ddof=1) if len(aligned) > 1 else np.full(mean.shape, np.nan)
    for j, c in enumerate(cols):
        numeric[f"{c}_mean"], numeric[f"{c}_std"] = mean[:, j], std[:, j]
    numeric["seeds"] = np.sum(~np.isnan(stack[:, :, 0]), axis=0)
    cells = pd.DataFrame(index=numeric.index)
    digits = {c: d for c, _, d in COLUMNS} | {"task_accuracy": 3}
    for c in cols:
        scaled = [f[[c]] * SCALE.get(c, 1.0) for f in aligned]
        part = mean_std_over_seeds(scaled, digits=digits[c])[c]
        cells[c] = [
            "" if not np.isfinite(m) else cell for m, cell in zip(numeric[f"{c}_mean"], part, strict=True)
        ]
    return numeric, cells


def markdown(cells: pd.DataFrame, titles: dict[str, str], index_title: str = "router") -> str:
    """A Markdown table of text cells; a column with no cell filled is left out."""
    cols = [c for c in cells.columns if (cells[c] != "").any()]
    head = "| " + " | ".join([index_title] + [titles.get(c, c) for c in cols]) + " |"
    sep = "|" + "---|" * (len(cols) + 1)
    body = ["| " + " | ".join([str(i)] + [str(cells.loc[i, c]) for c in cols]) + " |" for i in cells.index]
    return "\n".join([head, sep, *body])
