"""Per-pair routing outcomes: the pair key, picks with their outcomes, the oracle, the
refitted baselines' picks, cost–quality points and per-user tables of a run's metrics.

Frames used here:

- **outcomes**: one row per observed (user, query, LLM) of the evaluated split, columns
  ``user_id``, ``query_id``, ``llm``, ``performance``, ``cost``, ``reward`` (``task`` and
  ``query`` optional): the routing table of docs/DESIGN.md §5 restricted to the test split.
- **picks**: one row per (user, query) with the ``llm`` a router chose (``test_picks.csv``
  of a run holds the GNN's, with the chosen LLM's ``reward``/``performance``/``cost``).
- **points**: one row per (user, point) with ``kind`` (``router``, ``llm`` or
  ``oracle``), ``name``, ``cost``, ``performance``, ``reward``, ``n``.

Pure numpy / pandas (no DGL, no torch).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from proute.evaluation.scoring import outcome_matrix

KEY = ["user_id", "query_id"]
GNN = "gnn"


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
    observed = outcome_matrix(test, pairs, llms, "reward")
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
    by: str | None = "user_id",
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


def choice_shares(picks: pd.DataFrame, llms: Sequence[str] | None = None) -> pd.DataFrame:
    """User × LLM share of the user's pairs routed to each LLM (rows sum to 1); ``llms``
    fixes the columns (LLMs never chosen get 0)."""
    shares = pd.crosstab(picks["user_id"].astype(str), picks["llm"], normalize="index")
    shares = shares.reindex(index=_natural(shares.index), columns=llms, fill_value=0.0)
    shares.index.name, shares.columns.name = "user_id", "llm"
    return shares


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


REFERENCE_BASELINE = "per_user_task"


def reference_baseline(metrics: Mapping[str, Any], split: str = "test") -> str | None:
    """The baseline a figure shows the GNN against: ``per_user_task`` (the best LLM per
    (user, task) on train, the level a well-built router reaches on the paper's users,
    docs/DESIGN.md) when the run evaluated it, else the baseline with the best overall
    ``split`` reward (upper bounds left out); ``None`` without baselines."""
    blocks = {n: b for n, b in _router_blocks(metrics, split, upper_bounds=False).items() if n != GNN}
    if REFERENCE_BASELINE in blocks:
        return REFERENCE_BASELINE
    if not blocks:
        return None
    return max(blocks, key=lambda n: float(blocks[n]["overall"]["reward"]))


def per_user_headline(
    metrics: Mapping[str, Any], metric: str = "reward", split: str = "test"
) -> pd.DataFrame:
    """User × [``gnn``, the reference baseline (:func:`reference_baseline`), ``oracle``] of
    one per-user metric: the three numbers to read per user. ``oracle`` (the best reward
    of each pair, the GNN block's ``oracle_reward``) only for ``metric="reward"``."""
    table = per_user_table(metrics, metric, split)
    name = reference_baseline(metrics, split)
    out = table[[GNN] + ([name] if name else [])].copy()
    if metric == "reward":
        oracle = {u: m["oracle_reward"] for u, m in metrics[split]["per_user"].items()}
        out["oracle"] = pd.Series(oracle, dtype=float).reindex(out.index)
    return out
