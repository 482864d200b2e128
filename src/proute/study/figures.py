"""The study's cost-quality figure of a setting: cost vs quality per user of one run (the
GNN and every baseline but the upper bounds and ``random``), with its AIQ table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from proute.evaluation.analysis import (
    aiq_table,
    cost_quality_points,
    load_baseline_picks,
    load_picks,
    load_test_outcomes,
    load_user_labels,
    plot_cost_quality,
)

MAX_PANELS = 12  # users per cost-quality figure (beside the pooled panel)


def cost_quality(setting: str, run_dir: Path, out: Path, bounds: set[str]) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend is chosen

    outcomes = load_test_outcomes(run_dir)
    picks = {"gnn": load_picks(run_dir)}
    picks.update({n: p for n, p in load_baseline_picks(run_dir).items() if n not in bounds and n != "random"})
    points = pd.concat(
        [cost_quality_points(outcomes, picks, by=None), cost_quality_points(outcomes, picks)],
        ignore_index=True,
    )
    aiq_table(points).to_csv(out / f"{setting}_aiq.csv", float_format="%.6g")
    users = list(dict.fromkeys(points["user_id"]))
    shown = points[points["user_id"].isin(users[: MAX_PANELS + 1])]
    more = len(users) - 1 - MAX_PANELS
    title = f"{setting}, seed {run_dir.name.removeprefix('seed')}: cost vs quality (test), 'all' = pooled"
    if more > 0:
        title += f"; {MAX_PANELS} of {len(users) - 1} users shown"
    path, labels = out / f"{setting}_cost_quality.png", load_user_labels(run_dir)
    fig = plot_cost_quality(shown, title=title, ncols=4, path=path, labels=labels)
    plt.close(fig)
    return path
