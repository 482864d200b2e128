"""Analysis of a training run: cost–quality points, AIQ, paired bootstrap, per-user views.

Pure numpy / pandas / matplotlib (no DGL, no torch): every function takes plain
DataFrames, so it works on any run directory and is testable on tiny frames. The notebook
``notebooks/per_user_analysis.ipynb`` uses it on a run of ``python -m proute.train``.

Frames used here:

- **outcomes**: one row per observed (user, query, LLM) of the evaluated split, columns
  ``user_id``, ``query_id``, ``llm``, ``performance``, ``cost``, ``reward`` (``task`` and
  ``query`` optional): the routing table of docs/DESIGN.md §5 restricted to the test split.
- **picks**: one row per (user, query) with the ``llm`` a router chose (``test_picks.csv``
  of a run holds the GNN's, with the chosen LLM's ``reward``/``performance``/``cost``).
- **points**: one row per (user, point) with ``kind`` (``router``, ``llm`` or
  ``oracle``), ``name``, ``cost``, ``performance``, ``reward``, ``n``.

A run directory holds ``metrics.json``, ``test_picks.csv`` and ``config.yaml`` but not yet
the per-LLM outcomes of the test pairs: until it does (a ``test_outcomes.parquet``),
:func:`load_table` rebuilds the run's routing table from its resolved config (the data
pipeline without the text encoder, about 2 s on the bundled data) and
:func:`load_test_outcomes` checks it against the run's own picks.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

KEY = ["user_id", "query_id"]
GNN = "gnn"
OUTCOMES_FILE = "test_outcomes.parquet"
QUERIES_FILE = "test_queries.parquet"
BASELINE_PICKS_FILE = "test_baseline_picks.csv"
# make reproduce (scripts/study.py) writes <setting>/seed<k>; python -m proute.train writes runs/<time>
RUN_ROOTS = ("outputs/study/default", "outputs/reproduce/runs", "outputs/train/runs")


# --------------------------------------------------------------------------- run directories
def latest_run_dir(root: str | os.PathLike | None = None, roots: Sequence[str] = RUN_ROOTS) -> Path:
    """The most recent finished run under ``<root>/<r>/*`` for ``r`` in ``roots`` (the study's
    default setting, then ``outputs/{reproduce,train}/runs``).

    "Most recent" is the newest ``metrics.json``; unfinished runs are skipped.
    ``root`` defaults to the project folder (:func:`proute.config.paths.project_root`).
    """
    from proute.training.lifecycle import is_finished

    if root is None:
        from proute.config.paths import project_root

        root = project_root()
    found = [
        d
        for sub in roots
        for d in (Path(root) / sub).glob("*")
        if d.is_dir() and (d / "metrics.json").is_file() and is_finished(d)
    ]
    if not found:
        raise FileNotFoundError(
            f"no finished run under {[str(Path(root) / r) for r in roots]}; train one "
            "(`make reproduce` or `python -m proute.train`) or set PROUTE_RUN_DIR"
        )
    return max(found, key=lambda d: (d / "metrics.json").stat().st_mtime)


def resolve_run_dir(run_dir: str | os.PathLike | None = None, env: str = "PROUTE_RUN_DIR") -> Path:
    """``run_dir``, else the environment variable ``env``, else :func:`latest_run_dir`."""
    run_dir = run_dir or os.environ.get(env) or None
    path = Path(run_dir).expanduser() if run_dir else latest_run_dir()
    if not (path / "metrics.json").is_file():
        raise FileNotFoundError(f"{path} holds no metrics.json: not a finished proute.train run")
    return path


def load_metrics(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's ``metrics.json``."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def load_picks(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The GNN's test picks (``test_picks.csv``): ``user_id``, ``query_id``, ``task``,
    ``llm``, ``correct``, ``reward``, ``performance``, ``cost``, ``oracle_reward``."""
    return pd.read_csv(Path(run_dir) / "test_picks.csv", dtype={"query_id": str, "llm": str})


def load_table(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The run's whole routing table (all splits, with query texts), rebuilt from its
    ``config.yaml`` by the data pipeline without the text encoder (once per run directory
    and process; do not modify the returned frame).

    It matches the run as long as the data files it names are unchanged;
    :func:`load_test_outcomes` checks that against the run's picks.
    """
    config = (Path(run_dir) / "config.yaml").resolve()
    return _table(str(config), config.stat().st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _table(config: str, mtime_ns: int) -> pd.DataFrame:
    from omegaconf import OmegaConf

    from proute.data.pipeline import prepare_from_config

    return prepare_from_config(OmegaConf.load(config), encode=False).table


def load_queries(run_dir: str | os.PathLike) -> pd.Series:
    """Query texts by ``query_id``: ``test_queries.parquet`` (``query_id``, ``task``,
    ``query``) when the run wrote one, else from :func:`load_table`."""
    path = Path(run_dir) / QUERIES_FILE
    frame = pd.read_parquet(path) if path.is_file() else load_table(run_dir)
    return frame.drop_duplicates("query_id").set_index("query_id")["query"].astype(str)


def load_baseline_picks(
    run_dir: str | os.PathLike, names: Sequence[str] | None = None
) -> dict[str, pd.DataFrame]:
    """The baselines' per-pair test picks, ``{name: picks}`` (columns of ``test_picks.csv``).

    Reads ``test_baseline_picks.csv`` (those columns plus ``router``) when the run wrote
    one; otherwise refits the baselines of ``metrics.json`` (or ``names``) on the train
    rows of :func:`load_table` (:func:`baseline_picks`), with the run's LLM order from
    ``router/router.json``; a baseline that cannot be refitted (:func:`refittable`) or
    whose refitted mean test reward differs from ``metrics.json`` is left out with a
    warning.
    """
    run_dir = Path(run_dir)
    metrics = load_metrics(run_dir)
    names = list(metrics.get("baselines", {}).get("test", {})) if names is None else list(names)
    path = run_dir / BASELINE_PICKS_FILE
    if path.is_file():
        frame = pd.read_csv(path, dtype={"query_id": str, "llm": str})
        return {
            n: g.drop(columns="router").reset_index(drop=True)
            for n, g in frame.groupby("router")
            if n in names
        }
    if not names:
        return {}
    refit = refittable(names)
    if len(refit) < len(names):
        warnings.warn(
            f"{run_dir}: baselines {[n for n in names if n not in refit]} cannot be refitted here "
            f"(they need query embeddings, hyperparameter selection or the test rewards); the run "
            f"has no {BASELINE_PICKS_FILE} with their picks",
            stacklevel=2,
        )
    llms = json.loads((run_dir / "router" / "router.json").read_text())["llms"]
    out = baseline_picks(load_table(run_dir), load_picks(run_dir), llms, refit)
    for name in list(out):
        recorded = metrics["baselines"]["test"].get(name, {}).get("overall", {}).get("reward")
        got = float(out[name]["reward"].mean())
        if recorded is not None and not math.isclose(got, recorded, abs_tol=1e-6):
            warnings.warn(
                f"{run_dir}: the refitted {name} baseline has test reward {got:.6f}, metrics.json "
                f"says {recorded:.6f} (the data or the baseline changed since the run); left out",
                stacklevel=2,
            )
            del out[name]
    return out


def load_test_outcomes(run_dir: str | os.PathLike, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every observed (user, query, LLM) outcome of the run's test pairs.

    Reads ``test_outcomes.parquet`` when the run wrote one; otherwise takes the test rows of
    ``table`` (default: :func:`load_table`) and checks that the run's picks are among them
    with the same reward (a ``ValueError`` says when the data changed since the run).
    """
    path = Path(run_dir) / OUTCOMES_FILE
    if path.is_file():
        return pd.read_parquet(path)
    table = load_table(run_dir) if table is None else table
    out = table.loc[table["split"] == "test"].reset_index(drop=True)
    check_picks_in_outcomes(load_picks(run_dir), out, where=str(run_dir))
    return out


def check_picks_in_outcomes(picks: pd.DataFrame, outcomes: pd.DataFrame, where: str = "picks") -> None:
    """Raise ``ValueError`` unless every pick is an outcome row with the same reward."""
    merged = _merge_keys(picks[KEY + ["llm", "reward"]], outcomes[KEY + ["llm", "reward"]], KEY + ["llm"])
    missing = merged["reward_y"].isna()
    off = ~np.isclose(merged["reward_x"], merged["reward_y"], atol=1e-6) & ~missing
    if missing.any() or off.any():
        raise ValueError(
            f"{where}: {int(missing.sum())} of {len(picks)} picks are not in the outcomes and "
            f"{int(off.sum())} have another reward; the data changed since the run (retrain it)"
        )


def _merge_keys(left: pd.DataFrame, right: pd.DataFrame, on: list[str], how: str = "left") -> pd.DataFrame:
    """Merge on ``on`` with ``user_id`` compared as text (CSV and JSON give ints or strings)."""
    left, right = left.copy(), right.copy()
    for frame in (left, right):
        for col in on:
            frame[col] = frame[col].astype(str)
    return left.merge(right, on=on, how=how)


def _natural(values: Iterable) -> list:
    """Sort labels naturally: "2" before "10"."""
    return sorted(values, key=lambda v: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(v))])


# --------------------------------------------------------------------------- baselines
def baseline_picks(
    table: pd.DataFrame,
    pairs: pd.DataFrame,
    llms: Sequence[str],
    names: Sequence[str] = ("random", "best_llm", "per_user", "per_user_task"),
) -> dict[str, pd.DataFrame]:
    """Per-pair picks of the baselines of :mod:`proute.baselines`, refitted on the train rows.

    ``pairs`` are the evaluated (user, query) pairs in the run's order (the rows of
    ``test_picks.csv``, which keep the evaluation order, so the seeded ``random`` baseline
    gives the run's picks too); ``llms`` the LLM order of the run (the router's
    ``router.llms``). Each baseline picks its best-scored LLM among those observed for the
    pair, as :func:`proute.evaluation.metrics.picks` does. Returns ``{name: picks}`` with ``llm``,
    ``reward``, ``performance``, ``cost``.
    """
    from proute.baselines import BASELINES

    bad = [n for n in names if n not in refittable([n])]
    if bad:
        raise ValueError(f"baselines {bad} cannot be refitted from the routing table alone")
    llms = list(llms)
    test = table.loc[table["split"] == "test"]
    pairs = pairs[KEY + ["task"]].reset_index(drop=True)
    observed = _dense(test, pairs, llms, "reward")
    out = {}
    for name in names:
        scores = BASELINES[name](llms).fit(table.loc[table["split"] == "train"]).score(pairs)
        choice = np.where(~np.isnan(observed), scores, -np.inf).argmax(axis=1)
        chosen = pairs.copy()
        chosen["llm"] = np.asarray(llms, dtype=object)[choice]
        out[name] = attach_outcomes(chosen, test)
    return out


def refittable(names: Sequence[str]) -> list[str]:
    """The baselines among ``names`` that :func:`baseline_picks` can refit from the routing
    table alone: known ones that need no query embeddings, select no hyperparameters on
    validation and do not read the evaluated rewards (the oracle)."""
    from proute.baselines import BASELINES

    def ok(cls) -> bool:
        return not (
            getattr(cls, "needs_query_emb", False)
            or getattr(cls, "uses_eval_rewards", False)
            or getattr(cls, "grid", None)
        )

    return [n for n in names if n in BASELINES and ok(BASELINES[n])]


def _dense(outcomes: pd.DataFrame, pairs: pd.DataFrame, llms: list[str], col: str) -> np.ndarray:
    """``[len(pairs), len(llms)]`` matrix of ``col``, NaN where not observed."""
    wide = outcomes.assign(**{k: outcomes[k].astype(str) for k in KEY}).pivot_table(
        index=KEY, columns="llm", values=col, aggfunc="first", observed=True
    )
    index = pd.MultiIndex.from_arrays([pairs[k].astype(str) for k in KEY])
    return wide.reindex(index=index, columns=llms).to_numpy(dtype=float)


def attach_outcomes(picks: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """``picks`` (``user_id``, ``query_id``, ``llm``) with the chosen LLM's ``reward``,
    ``performance`` and ``cost`` taken from ``outcomes`` (replacing any already there)."""
    keep = [c for c in picks.columns if c not in ("reward", "performance", "cost")]
    merged = _merge_keys(picks[keep], outcomes[KEY + ["llm", "reward", "performance", "cost"]], KEY + ["llm"])
    if merged["reward"].isna().any():
        bad = merged.loc[merged["reward"].isna(), KEY + ["llm"]].head(3).to_dict("records")
        raise ValueError(f"picks of unobserved (user, query, LLM), e.g. {bad}")
    for col in KEY:  # a left merge keeps the rows of picks in order: restore their key types
        merged[col] = picks[col].to_numpy()
    return merged


# --------------------------------------------------------------------------- cost–quality
def oracle_picks(outcomes: pd.DataFrame, atol: float = 1e-9) -> pd.DataFrame:
    """Per (user, query) the best-reward LLM; among tied best LLMs (docs/DESIGN.md §3, item
    5) the cheapest, then the best-performing, so the oracle point is the cheapest way to the
    oracle reward."""
    o = outcomes[KEY + ["llm", "reward", "performance", "cost"]].copy()
    best = o.groupby(KEY, sort=False, observed=True)["reward"].transform("max")
    o = o.loc[o["reward"] >= best - atol]
    o = o.sort_values(KEY + ["cost", "performance"], ascending=[True, True, True, False], kind="stable")
    return o.drop_duplicates(KEY).reset_index(drop=True)


def cost_quality_points(
    outcomes: pd.DataFrame,
    picks: Mapping[str, pd.DataFrame] | None = None,
    router_points: pd.DataFrame | None = None,
    by: str = "user_id",
) -> pd.DataFrame:
    """Mean cost and performance per user of each router, each single LLM and the oracle.

    - ``llm`` points: "always LLM *l*", the mean over the user's test pairs on which *l* was
      observed (all of them on the bundled data; nothing is imputed, docs/DESIGN.md §5);
    - ``oracle``: the best-reward LLM per pair (:func:`oracle_picks`);
    - ``router`` points: for each ``picks[name]`` (``user_id``, ``query_id``, ``llm``), the
      chosen LLM's outcome looked up in ``outcomes`` (only the pairs in ``outcomes``);
      ``router_points`` (e.g. :func:`router_points_from_metrics`) are appended as they are.

    Returns columns ``user_id`` (as text), ``kind``, ``name``, ``cost``, ``performance``,
    ``reward``, ``n``; ``by=None`` gives one group ``"all"`` over every pair.
    """
    o = outcomes.copy()
    o["_group"] = "all" if by is None else o[by].astype(str)
    frames = []

    def summarise(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        return (
            frame.groupby(keys, sort=False, observed=True)
            .agg(
                cost=("cost", "mean"),
                performance=("performance", "mean"),
                reward=("reward", "mean"),
                n=("cost", "size"),
            )
            .reset_index()
        )

    llm = summarise(o, ["_group", "llm"]).rename(columns={"llm": "name"})
    frames.append(llm.assign(kind="llm"))
    oracle = oracle_picks(o).merge(o[KEY + ["_group"]].drop_duplicates(KEY), on=KEY)
    frames.append(summarise(oracle, ["_group"]).assign(kind="oracle", name="oracle"))
    pairs = o[KEY + ["_group"]].drop_duplicates(KEY)
    for name, p in (picks or {}).items():
        chosen = attach_outcomes(_merge_keys(p[KEY + ["llm"]], pairs, KEY, how="inner"), o)
        frames.append(summarise(chosen, ["_group"]).assign(kind="router", name=name))
    out = pd.concat(frames, ignore_index=True).rename(columns={"_group": "user_id"})
    if router_points is not None and len(router_points):
        extra = router_points.assign(user_id=router_points["user_id"].astype(str))
        out = pd.concat([out, extra[out.columns.intersection(extra.columns)]], ignore_index=True)
    order = {u: i for i, u in enumerate(_natural(out["user_id"].unique()))}
    kinds = {"router": 0, "oracle": 1, "llm": 2}
    out = out.assign(_u=out["user_id"].map(order), _k=out["kind"].map(kinds))
    out = out.sort_values(["_u", "_k"], kind="stable").drop(columns=["_u", "_k"])
    return out[["user_id", "kind", "name", "cost", "performance", "reward", "n"]].reset_index(drop=True)


def _router_blocks(metrics: Mapping[str, Any], split: str, upper_bounds: bool) -> dict[str, Any]:
    """``{"gnn": ..., baseline: ...}`` metric blocks of ``split``; upper bounds (the
    ``oracle`` baseline, ``"upper_bound": true``) only when asked for."""
    blocks = {GNN: metrics[split], **metrics.get("baselines", {}).get(split, {})}
    return {n: b for n, b in blocks.items() if upper_bounds or not b.get("upper_bound", False)}


def router_points_from_metrics(
    metrics: Mapping[str, Any], split: str = "test", names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per-user (cost, performance, reward) of the GNN (``name="gnn"``) and the baselines
    of ``metrics.json`` (upper bounds left out: :func:`cost_quality_points` has the oracle),
    in the points layout of :func:`cost_quality_points`."""
    rows = [
        {
            "user_id": str(u),
            "kind": "router",
            "name": name,
            **{k: m[k] for k in ("cost", "performance", "reward", "n")},
        }
        for name, block in _router_blocks(metrics, split, upper_bounds=False).items()
        if names is None or name in names
        for u, m in block["per_user"].items()
    ]
    return pd.DataFrame(rows, columns=["user_id", "kind", "name", "cost", "performance", "reward", "n"])


def per_user_table(
    metrics: Mapping[str, Any], metric: str = "reward", split: str = "test", upper_bounds: bool = False
) -> pd.DataFrame:
    """User × router table of one per-user metric (``reward``, ``accuracy``,
    ``reward_ratio``, …): the GNN and every baseline of ``metrics.json``; upper bounds
    (the ``oracle`` baseline) only with ``upper_bounds=True``."""
    blocks = _router_blocks(metrics, split, upper_bounds)
    table = pd.DataFrame(
        {name: {u: m[metric] for u, m in b["per_user"].items()} for name, b in blocks.items()}
    )
    table = table.reindex(_natural(table.index))
    table.index.name = "user_id"
    return table


# --------------------------------------------------------------------------- AIQ
def frontier(points) -> np.ndarray:
    """Vertices ``[k, 2]`` (cost, performance) of the non-decreasing convex hull of
    ``points``, by increasing cost; see :func:`aiq`."""
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    if len(p) == 0 or not np.isfinite(p).all():
        raise ValueError("frontier needs at least one finite (cost, performance) point")
    p = p[np.lexsort((-p[:, 1], p[:, 0]))]  # by cost, then best performance first
    pareto: list[tuple[float, float]] = []  # strictly increasing in both cost and performance
    for c, q in p:
        if not pareto or q > pareto[-1][1]:
            pareto.append((c, q))
    hull: list[tuple[float, float]] = []  # upper hull: keep only right turns
    for pt in pareto:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (pt[1] - y1) - (y2 - y1) * (pt[0] - x1) >= 0:  # hull[-1] on or below
                hull.pop()
            else:
                break
        hull.append(pt)
    return np.asarray(hull)


def aiq(points, cost_range: tuple[float, float] | None = None) -> float:
    """RouterBench's Average Improvement in Quality (Hu et al., 2024, arXiv:2403.12031).

    For (cost, performance) points, the *non-decreasing convex hull* is
    ``R(c) = max{λ·p_i + (1 − λ)·p_j : λ·c_i + (1 − λ)·c_j ≤ c, λ ∈ [0, 1]}``, the best
    performance reachable at a cost of at most ``c`` by routing each query to point *i*
    with probability λ and to point *j* otherwise: the upper concave envelope of the
    points that are not dominated (no cheaper-or-equal point performs as well), flat after
    the best-performing point. ``R(c)`` is 0 below the cheapest point (nothing is
    affordable). Then::

        AIQ = 1 / (c_max − c_min) · ∫_{c_min}^{c_max} R(c) dc

    with ``(c_min, c_max) = cost_range``, by default the points' own cost range; compare
    AIQs computed over the same range. When ``c_min == c_max`` (a single point) the AIQ is
    ``R(c_min)``, the limit of the average.

    Two LLMs, (0, 0.5) and (1, 1): the hull is the line between them, AIQ = (0.5 + 1) / 2.
    The point (0.5, 0.6) lies below it and changes nothing:

    >>> aiq([(0.0, 0.5), (1.0, 1.0), (0.5, 0.6)])
    0.75

    A better middle point, (0.5, 1.0), lifts the hull to 1 from cost 0.5 on; the expensive
    point adds nothing: AIQ = 0.5 · (0.5 + 1) / 2 + 0.5 · 1 = 0.875.

    >>> aiq([(0.0, 0.5), (0.5, 1.0), (1.0, 1.0)])
    0.875
    """
    hull = frontier(points)
    lo, hi = (hull[0, 0], float(np.asarray(points, dtype=float).reshape(-1, 2)[:, 0].max()))
    if cost_range is not None:
        lo, hi = map(float, cost_range)
    if hi < lo or not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"cost_range must be finite with c_min <= c_max; got {(lo, hi)}")
    xs, ys = hull[:, 0], hull[:, 1]

    def value(c: float, right: bool) -> float:  # R(c+) when right, else R(c-)
        if c < xs[0] or (c == xs[0] and not right):
            return 0.0
        return float(np.interp(c, xs, ys))  # np.interp is flat after the last vertex

    if hi == lo:
        return value(lo, right=True)
    grid = np.unique(np.concatenate([[lo, hi], xs[(xs > lo) & (xs < hi)]]))
    area = sum(
        (b - a) * (value(a, True) + value(b, False)) / 2 for a, b in zip(grid[:-1], grid[1:], strict=True)
    )
    return float(round(area / (hi - lo), 12))


LLM_FRONTIER = "single LLMs"


def _panel_aiqs(pts: pd.DataFrame) -> dict[str, float]:
    """AIQs of one user's points over their common cost range (see :func:`aiq_table`)."""
    llm = pts.loc[pts["kind"] == "llm", ["cost", "performance"]].to_numpy(dtype=float)
    span = (float(pts["cost"].min()), float(pts["cost"].max()))
    out = {LLM_FRONTIER: aiq(llm, span)} if len(llm) else {}
    for _, r in pts[pts["kind"] == "router"].iterrows():
        out[r["name"]] = aiq(np.vstack([llm, [[r["cost"], r["performance"]]]]), span)
    return out


def aiq_table(points: pd.DataFrame) -> pd.DataFrame:
    """User × (``"single LLMs"``, routers…) table of AIQs (:func:`aiq`), each over the
    user's cost range (the cheapest to the dearest of all the user's points, oracle
    included): the frontier of the single LLMs, and for each router the frontier of the
    single LLMs plus the router's point, i.e. how far the router lifts what mixing fixed
    LLMs reaches. A router below that frontier leaves the LLMs' AIQ unchanged."""
    rows = {u: _panel_aiqs(pts) for u, pts in points.groupby("user_id", sort=False)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "user_id"
    return table


# --------------------------------------------------------------------------- plots
def plot_cost_quality(
    points: pd.DataFrame,
    title: str = "test split: cost vs quality per user",
    ncols: int = 3,
    path: str | os.PathLike | None = None,
    log_cost: bool = False,
):
    """One figure, a panel per user: routers as markers, the single LLMs as grey dots with
    their non-decreasing convex hull frontier as a line, the oracle as a star.

    The legend gives the AIQs of :func:`aiq_table`: the single LLMs' frontier, and for each
    router the frontier of the LLMs plus that router. Saves to ``path`` when given.
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    users = list(dict.fromkeys(points["user_id"]))
    ncols = max(1, min(ncols, len(users)))
    nrows = math.ceil(len(users) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    routers = list(dict.fromkeys(points.loc[points["kind"] == "router", "name"]))
    markers = dict(zip(routers, "os^Dvp<>hX" * 3, strict=False))
    colors = {r: f"C{i}" for i, r in enumerate(routers)}
    for ax, user in zip(axes.flat, users, strict=False):
        pts = points[points["user_id"] == user]
        llm = pts[pts["kind"] == "llm"]
        aiqs = _panel_aiqs(pts)
        if len(llm):
            hull = frontier(llm[["cost", "performance"]])
            xs = np.append(hull[:, 0], pts["cost"].max())
            ys = np.append(hull[:, 1], hull[-1, 1])
            ax.scatter(llm["cost"], llm["performance"], c="0.6", s=18, zorder=2)
            ax.plot(xs, ys, c="0.4", lw=1.2, label=f"{LLM_FRONTIER} (AIQ {aiqs[LLM_FRONTIER]:.3f})")
        for _, r in pts[pts["kind"] == "router"].iterrows():
            ax.scatter(
                r["cost"],
                r["performance"],
                marker=markers[r["name"]],
                color=colors[r["name"]],
                s=46,
                zorder=3,
                label=f"{r['name']} (AIQ {aiqs[r['name']]:.3f})",
            )
        for _, r in pts[pts["kind"] == "oracle"].iterrows():
            ax.scatter(
                r["cost"],
                r["performance"],
                marker="*",
                c="gold",
                edgecolors="k",
                s=140,
                zorder=4,
                label="oracle",
            )
        if log_cost:
            ax.set_xscale("log")
        ax.set_title(f"user {user}", fontsize=10)
        ax.set_xlabel("mean cost per query")
        ax.set_ylabel("mean performance")
        ax.legend(fontsize=6.5, loc="lower right")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(users) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def choice_shares(picks: pd.DataFrame, llms: Sequence[str] | None = None) -> pd.DataFrame:
    """User × LLM share of the user's pairs routed to each LLM (rows sum to 1); ``llms``
    fixes the columns (LLMs never chosen get 0)."""
    shares = pd.crosstab(picks["user_id"].astype(str), picks["llm"], normalize="index")
    shares = shares.reindex(index=_natural(shares.index), columns=llms, fill_value=0.0)
    shares.index.name, shares.columns.name = "user_id", "llm"
    return shares


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
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def plot_per_user(table: pd.DataFrame, ylabel: str, title: str, path: str | os.PathLike | None = None):
    """Grouped bars of a user × router table (:func:`per_user_table`)."""
    import matplotlib.pyplot as plt

    n_users, n_routers = table.shape
    x = np.arange(n_users)
    width = 0.8 / max(1, n_routers)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * n_users * max(1, n_routers) / 3 + 3), 3.6))
    for i, name in enumerate(table.columns):
        ax.bar(
            x + (i - (n_routers - 1) / 2) * width, table[name].to_numpy(dtype=float), width, label=str(name)
        )
    ax.set_xticks(x, [str(u) for u in table.index])
    ax.set_xlabel("user")
    ax.set_ylabel(ylabel)
    ax.axhline(0, c="k", lw=0.6)
    ax.legend(fontsize=8, ncol=min(5, n_routers), loc="upper left", bbox_to_anchor=(0, -0.18), frameon=False)
    ax.set_title(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def disagreements(picks: pd.DataFrame, limit: int | None = 5) -> pd.DataFrame:
    """Query texts asked by several users who got different LLMs: one row per (query,
    user) with the chosen ``llm``, the queries with the most distinct LLMs first."""
    spread = picks.groupby("query_id")["llm"].agg(["size", "nunique"])
    spread = spread[(spread["size"] > 1) & (spread["nunique"] > 1)]
    spread = spread.sort_values(["nunique", "size"], ascending=False, kind="stable")
    ids = spread.index[:limit] if limit is not None else spread.index
    rows = picks[picks["query_id"].isin(ids)].copy()
    rows["_order"] = rows["query_id"].map({q: i for i, q in enumerate(ids)})
    return (
        rows.sort_values(["_order", "user_id"], kind="stable").drop(columns="_order").reset_index(drop=True)
    )


# --------------------------------------------------------------------------- statistics
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
