"""``summary.md``: the study's headline table, one line per setting, the new-user table, and
the runs that failed or are missing."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from proute.study.compare import verdict
from proute.study.runs import StudyRun
from proute.study.tables import GNN, GNN_LIVE, TITLES, markdown

HEADLINE = "default"


def write_summary(
    agg: dict[str, Any], runs: list[StudyRun], out: Path, command: str, notebook: str | None, n_boot: int
) -> Path:
    """Write ``out/summary.md`` from :func:`proute.study.aggregate.aggregate`'s result."""
    failed = [r for r in runs if r.state != "finished"]
    lines = [
        "# proute study: results",
        "",
        f"Made by `{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}; "
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"{len(runs) - len(failed)} of {len(runs)} runs finished.",
        "",
        "Every table: test split, model and hyperparameters chosen on validation, mean ± std "
        "over the seeds (sample std). Routers: the GNN with each query's task label given "
        "(the paper's protocol), the GNN live (the exported router, task inferred from the query "
        "text), and every baseline of `proute.baselines` (`oracle` is the upper bound).",
    ]
    lines += _headline(agg["settings"].get(HEADLINE, {}))
    lines += _settings(agg["settings"], n_boot)
    if agg.get("new_users"):
        lines += ["", "## New users", "", agg["new_users"].split("\n", 2)[2].replace("\n## ", "\n### ")]
    if notebook:
        lines += ["", f"Per-user analysis of the `{HEADLINE}` seed-42 run: [{notebook}]({notebook})."]
    if failed:
        lines += ["", "## Failed or missing runs", ""]
        lines += [f"- `{r.name}`: {r.error or r.state} (log `{r.dir / 'train.log'}`)" for r in failed]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _headline(entry: dict[str, Any]) -> list[str]:
    if "cells" not in entry:
        return []
    lines = [
        "",
        f"## Headline: the paper's nine cost-efficiency users (`{HEADLINE}`, seeds {entry['seeds']})",
        "",
        markdown(entry["cells"], TITLES),
    ]
    if entry.get("bootstrap"):
        lines += ["", verdict(entry["bootstrap"])]
    return lines


def _settings(settings: dict[str, Any], n_boot: int) -> list[str]:
    lines = [
        "",
        "## Settings",
        "",
        "| setting | seeds | GNN (gold) reward | GNN (live) reward | strongest baseline | its reward "
        "| GNN − baseline [95% CI] | beyond seed spread? | table | figure |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_setting_row(setting, e) for setting, e in settings.items()]
    return lines + [
        "",
        '"Beyond seed spread": |mean GNN − baseline difference| larger than the larger of the '
        "two routers' std of test reward over seeds. The CI resamples the (seed, user, query) "
        f"test pairs of all seeds (`proute.evaluation.analysis.paired_bootstrap`, {n_boot:,} resamples); "
        "`bootstrap.csv` has every number.",
    ]


def _setting_row(setting: str, e: dict[str, Any]) -> str:
    if "cells" not in e:
        return f"| {setting} | 0 of {len(e['planned'])} | no finished run | | | | | | | |"
    c, bs = e["cells"], e.get("bootstrap")
    live = c.loc[GNN_LIVE, "reward"] if GNN_LIVE in c.index else ""
    fig = f"[png]({e['figure'].name})" if e.get("figure") else ""
    if bs:
        diff = f"{bs['mean_diff']:+.4f} [{bs['ci_low']:+.4f}, {bs['ci_high']:+.4f}]"
        spread = {None: "n/a (1 seed)", True: "yes", False: "no"}[bs["exceeds_seed_spread"]]
        base, base_r = f"`{bs['baseline']}`", c.loc[bs["baseline"], "reward"]
    else:
        diff = spread = base = base_r = ""
    seeds = f"{len(e['seeds'])}" + (
        f" of {len(e['planned'])}" if len(e["seeds"]) != len(e["planned"]) else ""
    )
    return (
        f"| {setting} | {seeds} | {c.loc[GNN, 'reward']} | {live} | {base} | {base_r} | {diff} | {spread} "
        f"| [md]({setting}.md), [csv]({setting}.csv) | {fig} |"
    )
