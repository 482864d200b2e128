"""Figures of a run: cost vs quality per user, heat maps, per-user bars.

matplotlib is imported inside each function (nothing at import time); each returns the
figure and saves it to ``path`` when given.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from proute.evaluation.aiq import LLM_FRONTIER, _panel_aiqs, frontier
from proute.evaluation.outcomes import GNN

#: Colours for methods (matplotlib's tab20, dark shades first, the pale blue last so that no
#: early method looks like the GNN's blue; greys left out: the single LLMs are grey).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#aec7e8",
)  # fmt: skip
MARKERS = "os^DvPXp<>hd8H"  # no "*": the oracle's
ORACLE_STYLE = ("*", "gold")
MAX_USER_TICKS = 40  # per-user figures label each user up to this many users


def _saved(fig, path: str | os.PathLike | None):
    """``fig``, written to ``path`` (110 dpi) when one is given."""
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def method_styles(names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``{name: (marker, colour)}``, a different marker and a different colour for each of up
    to len(MARKERS) methods (and a different pair up to len(PALETTE)), in the order given;
    ``"oracle"`` is always the gold star."""
    out, i = {}, 0
    for name in dict.fromkeys(names):
        if name == "oracle":
            out[name] = ORACLE_STYLE
            continue
        out[name] = (MARKERS[i % len(MARKERS)], PALETTE[i % len(PALETTE)])
        i += 1
    return out


def zoomed_limits(values, pad: float = 0.15, min_span: float = 0.05) -> tuple[float, float]:
    """Axis limits around the finite ``values`` (at least ``min_span`` wide, ``pad`` of the
    span added each side), so that small differences between methods show; (0, 1) when
    none is finite."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if not v.size:
        return (0.0, 1.0)
    lo, hi = float(v.min()), float(v.max())
    span = max(hi - lo, min_span)
    mid = (lo + hi) / 2
    lo, hi = min(lo, mid - span / 2), max(hi, mid + span / 2)
    return (lo - pad * span, hi + pad * span)


def _user_dots(ax, table: pd.DataFrame, labels: Mapping[str, str] | None = None) -> None:
    """Per user (rows of ``table``) a marker per method (columns), side by side, joined by
    grey lines; the value axis zoomed to the data (:func:`zoomed_limits`)."""
    values = table.to_numpy(dtype=float)
    n, k = values.shape
    x = np.arange(n)
    offsets = (np.arange(k) - (k - 1) / 2) * min(0.18, 0.6 / max(1, k))
    from matplotlib.collections import LineCollection

    xs = x[:, None] + offsets[None, :]
    segments = [np.column_stack([xs[i], values[i]])[np.isfinite(values[i])] for i in range(n)]
    ax.add_collection(LineCollection(segments, colors="0.8", linewidths=1.5, zorder=1))
    styles = method_styles([str(c) for c in table.columns])
    for j, col in enumerate(table.columns):
        marker, color = styles[str(col)]
        size = 80 if marker == "*" else 32
        ax.scatter(x + offsets[j], values[:, j], marker=marker, color=color, s=size, zorder=3, label=str(col))
    ax.set_ylim(*zoomed_limits(values))
    ax.set_xlim(-0.6, n - 0.4)
    if n <= MAX_USER_TICKS:
        names = [(labels or {}).get(str(u), str(u)) for u in table.index]
        long = max((len(t) for t in names), default=0) > 4
        ax.set_xticks(x, names, rotation=35 if long else 0, ha="right" if long else "center", fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n} users")
    ax.grid(axis="y", alpha=0.3)


def per_user_width(n_users: int, panels: int = 1) -> float:
    """Figure width in inches for ``panels`` per-user panels side by side (capped at 16)."""
    return float(min(16.0, max(6.0, panels * (0.45 * min(n_users, MAX_USER_TICKS) + 2.5))))


LEGEND_WIDTH = 2.6  # inches beside the panels for the cost-quality figure's one legend


def plot_cost_quality(
    points: pd.DataFrame,
    title: str = "test split: cost vs quality per user",
    ncols: int = 3,
    path: str | os.PathLike | None = None,
    log_cost: bool = False,
    labels: Mapping[str, str] | None = None,
):
    """One figure, a panel per user: routers as markers (each its own marker and colour,
    :func:`method_styles`), the single LLMs as grey dots with their non-decreasing convex
    hull frontier as a line, the oracle as a gold star.

    One legend for all panels, outside them (it hides no point). Each panel's title names
    the user (``labels``, e.g. ``"u3 (perf 0.8)"``) and the AIQs of
    :func:`proute.evaluation.aiq.aiq_table` for the single LLMs' frontier and the GNN
    (:func:`proute.evaluation.aiq.aiq_table` has every router's). A router named
    ``"oracle"`` is the oracle point, drawn once. Saves to ``path`` when given. Returns the
    figure.
    """
    import matplotlib.pyplot as plt

    points = points[~((points["kind"] == "router") & (points["name"] == "oracle"))]
    users = list(dict.fromkeys(points["user_id"]))
    ncols = max(1, min(ncols, len(users)))
    nrows = math.ceil(len(users) / ncols)
    width = 4.2 * ncols + LEGEND_WIDTH
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 3.5 * nrows), squeeze=False)
    routers = list(dict.fromkeys(points.loc[points["kind"] == "router", "name"]))
    styles = method_styles(sorted(routers, key=lambda r: r != GNN))  # the GNN keeps the first style
    legend: dict[str, Any] = {}
    for ax, user in zip(axes.flat, users, strict=False):
        aiqs = _cost_quality_panel(ax, points[points["user_id"] == user], styles)
        if log_cost:
            ax.set_xscale("log")
        else:  # per-query costs are often tiny: 2.5e-05, not 0.000025 overlapping its neighbours
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
        scores = ", ".join(f"{n} {aiqs[n]:.3f}" for n in (LLM_FRONTIER, GNN) if n in aiqs)
        name = (labels or {}).get(str(user)) or ("all users" if user == "all" else f"user {user}")
        ax.set_title(f"{name}\nAIQ: {scores}" if scores else name, fontsize=9)
        ax.set_xlabel("mean cost per query")
        ax.set_ylabel("mean performance")
        ax.grid(alpha=0.3)
        legend.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    for ax in list(axes.flat)[len(users) :]:
        ax.axis("off")
    fig.suptitle(title)
    right = 1 - LEGEND_WIDTH / width
    fig.tight_layout(rect=(0, 0, right, 1))
    fig.legend(legend.values(), legend.keys(), loc="center left", bbox_to_anchor=(right, 0.5), fontsize=8)
    return _saved(fig, path)


def _cost_quality_panel(ax, pts: pd.DataFrame, styles: dict[str, tuple[str, str]]) -> dict[str, float]:
    """One user's points on ``ax``: the single LLMs and their frontier, each router with its
    ``styles[name]`` (marker, colour), the oracle; returns the panel's AIQs."""
    llm = pts[pts["kind"] == "llm"]
    aiqs = _panel_aiqs(pts)
    if len(llm):
        hull = frontier(llm[["cost", "performance"]])
        xs = np.append(hull[:, 0], pts["cost"].max())
        ys = np.append(hull[:, 1], hull[-1, 1])
        ax.scatter(llm["cost"], llm["performance"], c="0.6", s=18, zorder=2, label="single LLM")
        ax.plot(xs, ys, c="0.4", lw=1.2, label=f"{LLM_FRONTIER}: frontier")
    for _, r in pts[pts["kind"] == "router"].iterrows():
        marker, color = styles[r["name"]]
        size, z = (70, 5) if r["name"] == GNN else (42, 3)
        ax.scatter(r["cost"], r["performance"], marker=marker, color=color, s=size, zorder=z, label=r["name"])
    for _, r in pts[pts["kind"] == "oracle"].iterrows():
        marker, color = ORACLE_STYLE
        ax.scatter(
            r["cost"],
            r["performance"],
            marker=marker,
            c=color,
            edgecolors="k",
            s=140,
            zorder=4,
            label="oracle",
        )
    return aiqs


def plot_heatmap(frame: pd.DataFrame, title: str, path: str | os.PathLike | None = None, fmt: str = "{:.2f}"):
    """A heat map of a numeric frame (rows × columns) with the values written in the cells."""
    import matplotlib.pyplot as plt

    values = frame.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * values.shape[1], 1.4 + 0.4 * values.shape[0]))
    im = ax.imshow(values, aspect="auto", cmap="viridis")
    ax.set_xticks(
        range(values.shape[1]), [str(c) for c in frame.columns], rotation=40, ha="right", fontsize=8
    )
    ax.set_yticks(range(values.shape[0]), [str(i) for i in frame.index], fontsize=8)
    ax.set_xlabel(frame.columns.name or "")
    ax.set_ylabel(frame.index.name or "")
    finite = values[np.isfinite(values)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7, color="k" if v > mid else "w")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(title)
    fig.tight_layout()
    return _saved(fig, path)


def plot_per_user(
    table: pd.DataFrame,
    ylabel: str,
    title: str,
    path: str | os.PathLike | None = None,
    labels: Mapping[str, str] | None = None,
):
    """A user × method table (e.g. :func:`proute.evaluation.outcomes.per_user_headline`:
    the GNN, the reference baseline and the oracle) as a marker per method and user, the
    axis zoomed to the data; users named by ``labels``. Meant for a few methods: the whole
    table reads better as a table. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(per_user_width(len(table)), 4.0))
    _user_dots(ax, table, labels)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)  # off the dots
    ax.set_title(title)
    fig.tight_layout()
    return _saved(fig, path)


LEARNING_CURVE_FILE = "learning_curve.png"
_CURVES = (("train/loss", "train loss"), ("val/reward", "validation reward"))


def plot_learning_curve(
    history: Sequence[Mapping[str, Any]] | pd.DataFrame,
    best_epoch: int | None = None,
    path: str | os.PathLike | None = None,
    title: str = "learning curve",
):
    """Train loss and validation reward per epoch (rows of ``history.csv``: ``epoch``,
    ``train/loss``, ``val/reward``), side by side; ``best_epoch`` (the selected checkpoint)
    as a dashed line. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    frame = pd.DataFrame(history)
    missing = [c for c in ["epoch", *(c for c, _ in _CURVES)] if c not in frame.columns]
    if missing or frame.empty:
        raise ValueError(
            f"history: expected columns {['epoch', *(c for c, _ in _CURVES)]} and at least one "
            f"epoch; got {len(frame)} rows, missing {missing}"
        )
    fig, axes = plt.subplots(1, len(_CURVES), figsize=(9.0, 3.4), squeeze=False)
    for ax, (col, label) in zip(axes.flat, _CURVES, strict=True):
        ax.plot(frame["epoch"], frame[col], marker="o" if len(frame) <= 40 else None, ms=3, c="C0")
        if best_epoch is not None and best_epoch >= 0:
            ax.axvline(best_epoch, ls="--", c="0.5", lw=1, label=f"best epoch ({best_epoch})")
            ax.legend(fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _saved(fig, path)


def write_learning_curve(
    run_dir: str | os.PathLike, history: Sequence[Mapping[str, Any]], best_epoch=None
) -> Path:
    """``learning_curve.png`` of a run (:func:`plot_learning_curve`) into ``run_dir``, drawn
    without a display (the Agg backend); the figure is closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(run_dir) / LEARNING_CURVE_FILE
    plt.close(plot_learning_curve(history, best_epoch, path, title=f"learning curve: {Path(run_dir).name}"))
    return path


RUN_PANELS = (("accuracy", "routing accuracy"), ("reward_ratio", "reward / oracle reward"))


def plot_run_per_user(
    gnn: pd.DataFrame,
    baseline: pd.DataFrame | None = None,
    baseline_name: str = "baseline",
    labels: Mapping[str, str] | None = None,
    title: str = "test split, per user",
    path: str | os.PathLike | None = None,
):
    """A run's ``per_user.png``: routing accuracy and reward / oracle reward per user, the
    GNN beside a baseline (rows of :func:`proute.evaluation.metrics.per_user_frame`), each
    axis zoomed to the data; users named by ``labels`` (e.g. ``"u3 (perf 0.8)"``,
    :func:`proute.evaluation.runs.user_labels`). Returns the figure."""
    import matplotlib.pyplot as plt

    users = gnn["user_id"].astype(str).tolist()
    other = None if baseline is None else baseline.assign(user_id=baseline["user_id"].astype(str))
    fig, axes = plt.subplots(1, len(RUN_PANELS), figsize=(per_user_width(len(users), 2), 4.2), squeeze=False)
    for ax, (col, ylabel) in zip(axes.flat, RUN_PANELS, strict=True):
        table = pd.DataFrame({"GNN": gnn[col].to_numpy(dtype=float)}, index=users)
        if other is not None:
            table[baseline_name] = other.set_index("user_id")[col].reindex(users).to_numpy(dtype=float)
        _user_dots(ax, table, labels)
        ax.set_ylabel(ylabel)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=9, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _saved(fig, path)
