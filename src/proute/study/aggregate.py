"""The study's tables from its finished runs: per setting, routers x metrics (mean ± std over
seeds), the GNN against the strongest baseline, the cost-quality figure; then the new-user
table over ``k``.

Writes into ``out``: ``<setting>.md`` / ``<setting>.csv``, ``<setting>_cost_quality.png`` and
``<setting>_aiq.csv``, ``bootstrap.csv``, ``new_users.md`` / ``new_users.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from proute.evaluation.analysis import load_metrics
from proute.study.compare import gnn_vs_strongest, verdict
from proute.study.figures import cost_quality
from proute.study.runs import StudyRun, finished_runs
from proute.study.tables import (
    COLUMNS,
    GNN,
    GNN_LIVE,
    TITLES,
    markdown,
    router_frame,
    seed_table,
    upper_bounds,
)

FIGURE_SEED = 42
NEW_USER_ROUTERS = ("best_llm", "per_user", "per_user_task", "knn", "mlp", "mf")
NEW_USERS_PREFIX = "new_users_k"  # settings new_users_k<k>: the held-out users with k queries


def aggregate(runs: list[StudyRun], out: Path, n_boot: int = 10000) -> dict[str, Any]:
    """Every setting's tables, ``bootstrap.csv`` and the new-user table; returns what
    :func:`proute.study.summary.write_summary` reads."""
    out.mkdir(parents=True, exist_ok=True)
    done = finished_runs(runs)
    result: dict[str, Any] = {"settings": {}, "bootstrap": [], "new_users": None}
    for setting in dict.fromkeys(r.setting for r in runs):
        planned = sorted(r.seed for r in runs if r.setting == setting)
        entry = aggregate_setting(setting, done.get(setting, {}), planned, out, n_boot)
        result["settings"][setting] = entry
        if entry.get("bootstrap"):
            result["bootstrap"].append(entry["bootstrap"])
    if result["bootstrap"]:
        pd.DataFrame(result["bootstrap"]).to_csv(out / "bootstrap.csv", index=False, float_format="%.6g")
    result["new_users"] = new_users_table(result["settings"], out)
    return result


def aggregate_setting(
    setting: str, dirs: dict[int, Path], planned: list[int], out: Path, n_boot: int
) -> dict[str, Any]:
    """One setting's ``.csv``, ``.md``, figure and bootstrap, from its finished runs."""
    entry: dict[str, Any] = {"planned": planned, "seeds": sorted(dirs)}
    if not dirs:
        return entry
    metrics = {s: load_metrics(d) for s, d in sorted(dirs.items())}
    bounds = set().union(*(upper_bounds(m) for m in metrics.values()))
    numeric, cells = seed_table({s: router_frame(m) for s, m in metrics.items()})
    numeric.to_csv(out / f"{setting}.csv", float_format="%.6g")
    entry["cells"], entry["numeric"] = cells, numeric
    entry["bootstrap"] = gnn_vs_strongest(setting, dirs, numeric, bounds, n_boot)
    fig_seed = FIGURE_SEED if FIGURE_SEED in dirs else min(dirs)
    try:
        entry["figure"] = cost_quality(setting, dirs[fig_seed], out, bounds)
    except Exception as exc:  # noqa: BLE001 - a figure must not lose the tables
        print(f"study: {setting}: cost-quality figure failed: {type(exc).__name__}: {exc}", flush=True)
        entry["figure"] = None
    (out / f"{setting}.md").write_text(setting_markdown(setting, entry, overrides_of(dirs[fig_seed])))
    nu = {s: router_frame(m, "new_users") for s, m in metrics.items() if "new_users" in m["test"]}
    if nu:
        entry["new_users"] = seed_table(nu)
    return entry


def overrides_of(run_dir: Path) -> list[str]:
    """The run's command-line overrides (``.hydra/overrides.yaml``) but the seed's."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(o) for o in OmegaConf.load(path) if not str(o).startswith("random_state=")]


def setting_markdown(setting: str, entry: dict[str, Any], overrides: list[str]) -> str:
    seeds, planned, bs = entry["seeds"], entry["planned"], entry.get("bootstrap")
    lines = [
        f"# {setting}",
        "",
        f"Test split, mean ± std over seeds {', '.join(map(str, seeds))}"
        + (f" (planned {planned})" if seeds != planned else "")
        + f". Overrides: `{' '.join(overrides) or '(none)'}`.",
        "",
        markdown(entry["cells"], TITLES),
        "",
        f"`{GNN}`: each query's task label given (the paper's protocol); `{GNN_LIVE}`: the "
        "exported router inferring the task from the query text; `oracle`: upper bound.",
    ]
    if bs:
        lines += ["", verdict(bs), "", f"Per seed (GNN − {bs['baseline']}): {bs['per_seed_diff']}."]
    if entry["figure"]:
        lines += ["", f"![cost vs quality]({entry['figure'].name}) (AIQ per user: `{setting}_aiq.csv`)"]
    return "\n".join(lines) + "\n"


def _new_user_rows(settings: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, dict[int, Any]]]:
    rows_num: list[dict[str, Any]] = []
    rows_cells: dict[str, dict[int, Any]] = {}
    for setting, entry in settings.items():
        if not setting.startswith(NEW_USERS_PREFIX) or "new_users" not in entry:
            continue
        k = int(setting.removeprefix(NEW_USERS_PREFIX))
        numeric, cells = entry["new_users"]
        routers = [r for r in (GNN, GNN_LIVE, *NEW_USER_ROUTERS) if r in numeric.index]
        for metric in ("reward", "reward_ratio"):
            rows_cells.setdefault(metric, {})[k] = cells.loc[routers, metric]
        for r in routers:
            stats = {f"{c}_{s}": numeric.loc[r, f"{c}_{s}"] for c, _, _ in COLUMNS for s in ("mean", "std")}
            rows_num.append({"k": k, "router": r, "seeds": int(numeric.loc[r, "seeds"]), **stats})
    return rows_num, rows_cells


def new_users_table(settings: dict[str, Any], out: Path) -> str | None:
    """Held-out users' reward and reward / oracle at each k (settings new_users_k<k>)."""
    rows_num, rows_cells = _new_user_rows(settings)
    if not rows_num:
        return None
    pd.DataFrame(rows_num).sort_values(["k"], kind="stable").to_csv(
        out / "new_users.csv", index=False, float_format="%.6g"
    )
    parts = [
        "# New users",
        "",
        "Held-out users (`experiment=new_users`: archetype users, 20% of them held out) with "
        "`k = split.support_queries` training queries each; test pairs of those users only, "
        "mean ± std over seeds.",
    ]
    for metric, title in (("reward", "test reward"), ("reward_ratio", "reward / oracle")):
        table = pd.DataFrame(rows_cells[metric]).T.sort_index()
        table.index = [f"k = {k}" for k in table.index]
        parts += ["", f"## {title}", "", markdown(table.fillna(""), {}, "support queries")]
    text = "\n".join(parts) + "\n"
    (out / "new_users.md").write_text(text)
    return text
