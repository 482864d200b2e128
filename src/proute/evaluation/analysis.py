"""Analysis of a training run: cost–quality points, AIQ, paired bootstrap, per-user views.

Pure numpy / pandas / matplotlib (no DGL, no torch): every function takes plain
DataFrames, so it works on any run directory and is testable on tiny frames. The notebook
``notebooks/per_user_analysis.ipynb`` uses it on a run of ``python -m proute.train``.

This module gathers the public names of the modules that hold them (import from here):

- :mod:`proute.evaluation.runs`: a run directory's files (metrics, picks, test outcomes);
- :mod:`proute.evaluation.outcomes`: the frames (outcomes, picks, points; described there),
  the oracle, refitted baselines' picks, cost–quality points, per-user tables;
- :mod:`proute.evaluation.aiq`: RouterBench's AIQ and its frontier;
- :mod:`proute.evaluation.stats`: the paired bootstrap, "mean ± std" over seeds;
- :mod:`proute.evaluation.figures`: the figures.
"""

from __future__ import annotations

from proute.evaluation.aiq import LLM_FRONTIER, aiq, aiq_table, frontier
from proute.evaluation.figures import plot_cost_quality, plot_heatmap, plot_per_user
from proute.evaluation.outcomes import (
    GNN,
    KEY,
    attach_outcomes,
    baseline_picks,
    check_picks_in_outcomes,
    choice_shares,
    cost_quality_points,
    disagreements,
    oracle_picks,
    per_user_headline,
    per_user_table,
    reference_baseline,
    refittable,
    router_points_from_metrics,
)
from proute.evaluation.runs import (
    BASELINE_PICKS_FILE,
    OUTCOMES_FILE,
    QUERIES_FILE,
    RUN_ROOTS,
    USERS_FILE,
    latest_run_dir,
    load_baseline_picks,
    load_metrics,
    load_picks,
    load_queries,
    load_table,
    load_test_outcomes,
    load_user_labels,
    resolve_run_dir,
    user_label,
    user_labels,
)
from proute.evaluation.stats import BootstrapResult, format_mean_std, mean_std_over_seeds, paired_bootstrap

__all__ = [
    "BASELINE_PICKS_FILE",
    "GNN",
    "KEY",
    "LLM_FRONTIER",
    "OUTCOMES_FILE",
    "QUERIES_FILE",
    "RUN_ROOTS",
    "USERS_FILE",
    "BootstrapResult",
    "aiq",
    "aiq_table",
    "attach_outcomes",
    "baseline_picks",
    "check_picks_in_outcomes",
    "choice_shares",
    "cost_quality_points",
    "disagreements",
    "format_mean_std",
    "frontier",
    "latest_run_dir",
    "load_baseline_picks",
    "load_metrics",
    "load_picks",
    "load_queries",
    "load_table",
    "load_test_outcomes",
    "load_user_labels",
    "mean_std_over_seeds",
    "oracle_picks",
    "paired_bootstrap",
    "per_user_headline",
    "per_user_table",
    "reference_baseline",
    "plot_cost_quality",
    "plot_heatmap",
    "plot_per_user",
    "refittable",
    "resolve_run_dir",
    "router_points_from_metrics",
    "user_label",
    "user_labels",
]
