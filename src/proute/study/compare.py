"""The GNN against the strongest baseline of a setting: a paired bootstrap of the per-pair
test reward difference over the pairs of every seed, and whether the difference exceeds
the spread over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from proute.evaluation.analysis import load_baseline_picks, load_picks, paired_bootstrap
from proute.study.tables import GNN, GNN_LIVE


def gnn_vs_strongest(
    setting: str, dirs: dict[int, Path], numeric: pd.DataFrame, bounds: set[str], n_boot: int = 10000
) -> dict[str, Any] | None:
    """The GNN (gold) against the non-oracle baseline of highest mean test reward: paired
    bootstrap of the per-pair reward difference, pairs of every seed pooled (key: seed,
    user, query), and whether the mean difference exceeds the spread over seeds."""
    candidates = [r for r in numeric.index if r not in (GNN, GNN_LIVE) and r not in bounds]
    if not candidates or GNN not in numeric.index:
        return None
    best = max(candidates, key=lambda r: numeric.loc[r, "reward_mean"])
    a: list[np.ndarray] = []
    b: list[np.ndarray] = []
    per_seed: dict = {}
    for seed, d in sorted(dirs.items()):
        gnn = load_picks(d)
        base = load_baseline_picks(d, [best]).get(best)
        if base is None:
            continue
        for frame, acc in ((gnn, a), (base, b)):
            acc.append(
                frame.assign(seed=seed, user_id=frame["user_id"].astype(str)).set_index(
                    ["seed", "user_id", "query_id"]
                )["reward"]
            )
        per_seed[seed] = float(gnn["reward"].mean() - base["reward"].mean())
    if not a:
        return None
    res = paired_bootstrap(pd.concat(a), pd.concat(b), n=n_boot, seed=0)
    g_std, b_std = numeric.loc[GNN, "reward_std"], numeric.loc[best, "reward_std"]
    spread = float(np.nanmax([g_std, b_std])) if np.isfinite([g_std, b_std]).any() else float("nan")
    diffs = np.array(list(per_seed.values()))
    return {
        "setting": setting,
        "baseline": best,
        "gnn_reward": float(numeric.loc[GNN, "reward_mean"]),
        "baseline_reward": float(numeric.loc[best, "reward_mean"]),
        "mean_diff": res.mean_diff,
        "ci_low": res.ci_low,
        "ci_high": res.ci_high,
        "p_diff_le_0": res.frac_le_zero,
        "n_pairs": res.n_pairs,
        "seeds": len(per_seed),
        "per_seed_diff": ", ".join(f"{s}: {d:+.4f}" for s, d in per_seed.items()),
        "per_seed_diff_std": float(diffs.std(ddof=1)) if len(diffs) > 1 else float("nan"),
        "seed_spread": spread,
        "exceeds_seed_spread": bool(abs(res.mean_diff) > spread) if np.isfinite(spread) else None,
        "ci_excludes_0": bool(res.ci_low > 0 or res.ci_high < 0),
    }


def verdict(bs: dict[str, Any]) -> str:
    sign = "above" if bs["mean_diff"] > 0 else "below"
    ci = "the CI excludes 0" if bs["ci_excludes_0"] else "the CI includes 0"
    if bs["exceeds_seed_spread"] is None:
        spread = "one seed: no seed spread"
    elif bs["exceeds_seed_spread"]:
        spread = f"larger than the seed spread ({bs['seed_spread']:.4f})"
    else:
        spread = f"within the seed spread ({bs['seed_spread']:.4f})"
    return (
        f"GNN (gold) − `{bs['baseline']}` = {bs['mean_diff']:+.4f} "
        f"[{bs['ci_low']:+.4f}, {bs['ci_high']:+.4f}] (95% paired bootstrap, {bs['n_pairs']} pairs "
        f"over {bs['seeds']} seeds): GNN {sign}, {ci}; {spread}"
    )
