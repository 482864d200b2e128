"""The study behind ``make reproduce``: every setting x seed trained, aggregated, reported.

    python scripts/study.py                       # the whole study (conf/study.yaml)
    python scripts/study.py --settings default,new_llms --seeds 42 --jobs 2
    python scripts/study.py --aggregate-only      # tables and summary from the runs there

Each (setting, seed) is one ``python -m proute.train`` subprocess (one thread,
``OMP_NUM_THREADS=1``; ``--jobs`` of them side by side) into the fixed run directory
``<runs>/<setting>/seed<k>``, with every baseline, ``logger=none quiet=true``, the
setting's overrides and then ``--override``'s. Its output goes to
``<runs>/<setting>/seed<k>.log``.

Resumable: a run whose ``status.json`` says ``finished`` (proute.training.lifecycle) is skipped; a
failed or interrupted one is run again, with ``resume=true`` when it left a
``checkpoint/``. A failed run is reported and the study goes on; the exit status is 1 when
any run failed (the tables are still written from the finished ones).

Then, into ``--out`` (default ``experiments/results``):

- ``<setting>.md`` / ``<setting>.csv``: routers (the GNN with gold task labels, the GNN live
  without them, every baseline) x test reward, reward / oracle, accuracy, mean cost (and
  the live router's task accuracy), mean ± std over the seeds; in the Markdown, the GNN
  against the strongest non-oracle baseline (paired bootstrap over the test pairs of all
  seeds, ``proute.evaluation.analysis.paired_bootstrap``);
- ``<setting>_cost_quality.png`` and ``<setting>_aiq.csv``: cost vs quality per user of the
  seed-42 run (``proute.evaluation.analysis.plot_cost_quality``), AIQ per router;
- ``new_users.md`` / ``new_users.csv``: the held-out users' reward at every ``k``;
- ``bootstrap.csv``, ``summary.md``; and, unless ``--no-notebook``,
  ``per_user_analysis.html``: notebooks/per_user_analysis.ipynb executed on the default
  setting's seed-42 run.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "conf" / "study.yaml"
NOTEBOOK = ROOT / "notebooks" / "per_user_analysis.ipynb"
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
FIGURE_SEED = 42
MAX_PANELS = 12  # users per cost-quality figure (beside the pooled panel)
NEW_USER_ROUTERS = ("best_llm", "per_user", "per_user_task", "knn", "mlp", "mf")


# ----------------------------------------------------------------------------- plan
@dataclass
class Run:
    setting: str
    seed: int
    overrides: list[str]
    dir: Path
    state: str = "new"  # new | finished | failed | interrupted | running | unreadable
    resume: bool = False
    seconds: float | None = None
    returncode: int | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.setting}/seed{self.seed}"

    @property
    def log(self) -> Path:
        return self.dir.with_name(f"{self.dir.name}.log")


@dataclass
class Study:
    settings: dict[str, dict[str, Any]]
    seeds: list[int]
    baselines: list[str]
    overrides: list[str]
    expected_run_seconds: float = 240.0
    runs: list[Run] = field(default_factory=list)


def load_study(path: Path, settings: list[str] | None, seeds: list[int] | None) -> Study:
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    known = raw["settings"]
    chosen = settings or list(known)
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise SystemExit(f"study: unknown settings {unknown}; {path} defines {list(known)}")
    return Study(
        settings={s: known[s] or {} for s in chosen},
        seeds=[int(s) for s in (seeds or raw["seeds"])],
        baselines=list(raw["baselines"]),
        overrides=list(raw.get("overrides") or []),
        expected_run_seconds=float(raw.get("expected_run_seconds", 240)),
    )


def plan(study: Study, runs_root: Path, extra: list[str], seeds_given: bool) -> list[Run]:
    """Every (setting, seed) run: the first setting (the headline) for every seed, then the
    others seed-major, so that a study cut short has the headline's spread over seeds and
    then one seed of every setting."""
    from proute.training.lifecycle import RunStateError, read_status

    seeds_of = {
        s: study.seeds if seeds_given else [int(k) for k in cfg.get("seeds", study.seeds)]
        for s, cfg in study.settings.items()
    }
    out = []
    for seed in sorted({k for ks in seeds_of.values() for k in ks}):
        for setting, cfg in study.settings.items():
            if seed not in seeds_of[setting]:
                continue
            run = Run(setting, seed, list(cfg.get("overrides") or []), runs_root / setting / f"seed{seed}")
            try:
                status = read_status(run.dir)
            except RunStateError as exc:
                status, run.state, run.error = None, "unreadable", str(exc)
            if status is not None:
                run.state = status["state"]
                run.resume = run.state != "finished" and (run.dir / "checkpoint").is_dir()
            out.append(run)
    first = next(iter(study.settings), None)
    return sorted(out, key=lambda r: r.setting != first)  # stable: seed-major otherwise


def command(study: Study, run: Run, extra: list[str]) -> list[str]:
    baselines = "[" + ",".join(study.baselines) + "]"
    cmd = [sys.executable, "-m", "proute.train", *study.overrides, f"baselines={baselines}"]
    cmd += [f"random_state={run.seed}", f"hydra.run.dir={run.dir}", *run.overrides, *extra]
    if run.resume:
        cmd.append("resume=true")
    if run.state == "unreadable":  # a corrupt status.json: start that directory over
        cmd.append("overwrite=true")
    return cmd


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        DGLBACKEND="pytorch",
        PYTHONUNBUFFERED="1",
    )
    env.setdefault("WANDB_MODE", "offline")
    return env


# ----------------------------------------------------------------------------- running
def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _last_error(run: Run) -> str:
    from proute.training.lifecycle import RunStateError, read_status

    try:
        status = read_status(run.dir) or {}
    except RunStateError as exc:
        return str(exc)
    if status.get("error"):
        return str(status["error"])
    try:
        lines = [ln for ln in run.log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    lines = [ln for ln in lines if "HYDRA_FULL_ERROR" not in ln]
    errors = [i for i, ln in enumerate(lines) if re.search(r"\w(Error|Exception|Interrupted)\b", ln)]
    if not errors:
        return lines[-1].strip()[:300] if lines else "no output"
    first = errors[-1]  # the last error line and the indented lines under it (a multi-line message)
    end = next((j for j in range(first + 1, len(lines)) if not lines[j][:1].isspace()), len(lines))
    return " ".join(ln.strip() for ln in lines[first:end])[:500]


WARM_UP = """
import sys
from proute.config import compose
from proute.data.pipeline import prepare_from_config
prepare_from_config(compose("train", sys.argv[1:]))
"""


def warm_up(study: Study, runs: list[Run], extra: list[str], out=sys.stdout) -> None:
    """Encode the query, task and LLM texts into the embedding cache once, with every core,
    before the one-thread runs start (on a fresh clone, each run would encode them itself, on
    one thread). The settings share the bundled texts, so the first unfinished run's config
    stands for all; a failure here is reported and left to the runs."""
    first = next((r for r in runs if r.state != "finished"), None)
    if first is None:
        return
    t = time.perf_counter()
    env = child_env()
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(key, None)
    overrides = [o for o in study.overrides + first.overrides + extra if not o.startswith("hydra.")]
    proc = subprocess.run(
        [sys.executable, "-c", WARM_UP, *overrides], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if proc.returncode == 0:
        print(f"study: embedding cache ready ({_fmt_seconds(time.perf_counter() - t)})", file=out, flush=True)
    else:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        print(f"study: warming the embedding cache failed ({tail[0][:300]}); the runs encode", file=out)


def execute(study: Study, runs: list[Run], extra: list[str], jobs: int, out=sys.stdout) -> None:
    """Run the unfinished runs, ``jobs`` at a time, printing progress and an ETA."""
    todo = [r for r in runs if r.state != "finished"]
    done_before = len(runs) - len(todo)
    print(
        f"study: {len(runs)} runs, {done_before} finished already (skipped), {len(todo)} to run, "
        f"{jobs} at a time",
        file=out,
        flush=True,
    )
    if not todo:
        return
    warm_up(study, runs, extra, out)
    lock = threading.Lock()
    t0 = time.perf_counter()
    started: dict[str, float] = {}
    durations: list[float] = []
    env = child_env()

    def eta() -> str:
        per_run = float(np.mean(durations)) if durations else study.expected_run_seconds
        now = time.perf_counter()
        waiting = len(todo) - len(durations) - len(started)
        in_flight = sum(max(0.0, per_run - (now - s)) for s in started.values())
        return _fmt_seconds((in_flight + waiting * per_run) / max(1, jobs))

    def one(run: Run) -> Run:
        from proute.training.lifecycle import is_finished

        if is_finished(run.dir):  # another study into the same runs finished it meanwhile
            run.state = "finished"
            with lock:
                print(f"  skip  {run.name}: finished meanwhile", file=out, flush=True)
            return run
        cmd = command(study, run, extra)
        run.dir.parent.mkdir(parents=True, exist_ok=True)
        with lock:
            started[run.name] = time.perf_counter()
            how = " (resume)" if run.resume else (" (rerun)" if run.state != "new" else "")
            print(f"  start {run.name}{how}", file=out, flush=True)
        t = time.perf_counter()
        with open(run.log, "w") as log:
            log.write("$ " + shlex.join(cmd) + "\n")
            log.flush()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        run.seconds, run.returncode = time.perf_counter() - t, proc.returncode
        run.state = "finished" if proc.returncode == 0 else "failed"
        if proc.returncode != 0:
            run.error = _last_error(run)
        with lock:
            started.pop(run.name, None)
            if run.state == "finished":
                durations.append(run.seconds)
            n = done_before + sum(r.returncode is not None for r in todo)
            word = "done  " if run.state == "finished" else "FAILED"
            msg = f"  {word} {run.name} in {_fmt_seconds(run.seconds)} [{n}/{len(runs)}]"
            msg += f"; elapsed {_fmt_seconds(time.perf_counter() - t0)}, ETA {eta()}"
            if run.error:
                msg += f"\n         {run.error} (log: {run.log})"
            print(msg, file=out, flush=True)
        return run

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for fut in as_completed([pool.submit(one, r) for r in todo]):
            fut.result()


# ----------------------------------------------------------------------------- reading runs
def finished_runs(runs: list[Run]) -> dict[str, dict[int, Path]]:
    from proute.training.lifecycle import is_finished

    out: dict[str, dict[int, Path]] = {}
    for r in runs:
        if is_finished(r.dir) and (r.dir / "metrics.json").is_file():
            out.setdefault(r.setting, {})[r.seed] = r.dir
    return out


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
    return {n for n, m in metrics.get("baselines", {}).get("test", {}).items() if m.get("upper_bound")}


def seed_table(frames: dict[int, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric: mean and std per column, Markdown cells ``mean ± std``) over the seeds."""
    from proute.evaluation.analysis import mean_std_over_seeds

    index = list(dict.fromkeys(i for f in frames.values() for i in f.index))
    aligned = [f.reindex(index) for _, f in sorted(frames.items())]
    stack = np.stack([f.to_numpy(dtype=float) for f in aligned])
    cols = list(aligned[0].columns)
    numeric = pd.DataFrame(index=pd.Index(index, name="router"))
    with np.errstate(all="ignore"), _quiet():
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


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def markdown(cells: pd.DataFrame, titles: dict[str, str], index_title: str = "router") -> str:
    cols = [c for c in cells.columns if (cells[c] != "").any()]
    head = "| " + " | ".join([index_title] + [titles.get(c, c) for c in cols]) + " |"
    sep = "|" + "---|" * (len(cols) + 1)
    body = ["| " + " | ".join([str(i)] + [str(cells.loc[i, c]) for c in cols]) + " |" for i in cells.index]
    return "\n".join([head, sep, *body])


TITLES = {c: t for c, t, _ in COLUMNS} | {"task_accuracy": "task accuracy (live)"}


# ----------------------------------------------------------------------------- statistics
def gnn_vs_strongest(
    setting: str, dirs: dict[int, Path], numeric: pd.DataFrame, bounds: set[str], n_boot: int = 10000
) -> dict[str, Any] | None:
    """The GNN (gold) against the non-oracle baseline of highest mean test reward: paired
    bootstrap of the per-pair reward difference, pairs of every seed pooled (key: seed,
    user, query), and whether the mean difference exceeds the spread over seeds."""
    from proute.evaluation.analysis import load_baseline_picks, load_picks, paired_bootstrap

    candidates = [r for r in numeric.index if r not in (GNN, GNN_LIVE) and r not in bounds]
    if not candidates or GNN not in numeric.index:
        return None
    best = max(candidates, key=lambda r: numeric.loc[r, "reward_mean"])
    a, b, per_seed = [], [], {}
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


# ----------------------------------------------------------------------------- figures
def cost_quality(setting: str, run_dir: Path, out: Path, bounds: set[str]) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from proute.evaluation.analysis import (
        aiq_table,
        cost_quality_points,
        load_baseline_picks,
        load_picks,
        load_test_outcomes,
    )

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
    fig = plot_cost_quality_safe(shown, title, out / f"{setting}_cost_quality.png")
    plt.close(fig)
    return out / f"{setting}_cost_quality.png"


def plot_cost_quality_safe(points: pd.DataFrame, title: str, path: Path):
    from proute.evaluation.analysis import plot_cost_quality

    return plot_cost_quality(points, title=title, ncols=4, path=path)


# ----------------------------------------------------------------------------- aggregation
def aggregate(runs: list[Run], out: Path, n_boot: int = 10000) -> dict[str, Any]:
    from proute.evaluation.analysis import load_metrics

    out.mkdir(parents=True, exist_ok=True)
    done = finished_runs(runs)
    settings = list(dict.fromkeys(r.setting for r in runs))
    setting_overrides = {r.setting: r.overrides for r in runs}
    result: dict[str, Any] = {"settings": {}, "bootstrap": [], "new_users": None}
    for setting in settings:
        dirs = done.get(setting, {})
        planned = sorted(r.seed for r in runs if r.setting == setting)
        entry: dict[str, Any] = {"planned": planned, "seeds": sorted(dirs)}
        result["settings"][setting] = entry
        if not dirs:
            continue
        metrics = {s: load_metrics(d) for s, d in sorted(dirs.items())}
        bounds = set().union(*(upper_bounds(m) for m in metrics.values()))
        numeric, cells = seed_table({s: router_frame(m) for s, m in metrics.items()})
        numeric.to_csv(out / f"{setting}.csv", float_format="%.6g")
        entry["cells"], entry["numeric"] = cells, numeric
        bs = gnn_vs_strongest(setting, dirs, numeric, bounds, n_boot)
        entry["bootstrap"] = bs
        if bs:
            result["bootstrap"].append(bs)
        fig_seed = FIGURE_SEED if FIGURE_SEED in dirs else min(dirs)
        try:
            entry["figure"] = cost_quality(setting, dirs[fig_seed], out, bounds)
        except Exception as exc:  # noqa: BLE001 - a figure must not lose the tables
            print(f"study: {setting}: cost-quality figure failed: {type(exc).__name__}: {exc}", flush=True)
            entry["figure"] = None
        lines = [
            f"# {setting}",
            "",
            f"Test split, mean ± std over seeds {', '.join(map(str, sorted(dirs)))}"
            + (f" (planned {planned})" if sorted(dirs) != planned else "")
            + f". Overrides: `{' '.join(setting_overrides[setting]) or '(none)'}`.",
            "",
            markdown(cells, TITLES),
            "",
            f"`{GNN}`: each query's task label given (the paper's protocol); `{GNN_LIVE}`: the "
            "exported router inferring the task from the query text; `oracle`: upper bound.",
        ]
        if bs:
            lines += ["", verdict(bs), "", f"Per seed (GNN − {bs['baseline']}): {bs['per_seed_diff']}."]
        if entry["figure"]:
            lines += ["", f"![cost vs quality]({entry['figure'].name}) (AIQ per user: `{setting}_aiq.csv`)"]
        (out / f"{setting}.md").write_text("\n".join(lines) + "\n")

        nu = {s: router_frame(m, "new_users") for s, m in metrics.items() if "new_users" in m["test"]}
        if nu:
            entry["new_users"] = seed_table(nu)
    if result["bootstrap"]:
        pd.DataFrame(result["bootstrap"]).to_csv(out / "bootstrap.csv", index=False, float_format="%.6g")
    result["new_users"] = new_users_table(result["settings"], out)
    return result


def new_users_table(settings: dict[str, Any], out: Path) -> str | None:
    """Held-out users' reward and reward / oracle at each k (settings new_users_k<k>)."""
    rows_num, rows_cells = [], {}
    for setting, entry in settings.items():
        if not setting.startswith("new_users_k") or "new_users" not in entry:
            continue
        k = int(setting.removeprefix("new_users_k"))
        numeric, cells = entry["new_users"]
        routers = [r for r in (GNN, GNN_LIVE, *NEW_USER_ROUTERS) if r in numeric.index]
        for metric in ("reward", "reward_ratio"):
            rows_cells.setdefault(metric, {})[k] = cells.loc[routers, metric]
        for r in routers:
            rows_num.append(
                {
                    "k": k,
                    "router": r,
                    "seeds": int(numeric.loc[r, "seeds"]),
                    **{
                        f"{c}_{s}": numeric.loc[r, f"{c}_{s}"] for c, _, _ in COLUMNS for s in ("mean", "std")
                    },
                }
            )
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


# ----------------------------------------------------------------------------- notebook
def export_notebook(run_dir: Path, html: Path, timeout: int = 1200) -> None:
    """Execute notebooks/per_user_analysis.ipynb on ``run_dir`` and write it as HTML."""
    import tempfile

    import nbclient
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(NOTEBOOK, as_version=4)
    saved = {k: os.environ.get(k) for k in ("PROUTE_RUN_DIR", "PROUTE_FIGURE_DIR", "OMP_NUM_THREADS")}
    with tempfile.TemporaryDirectory() as figures:
        os.environ.update(PROUTE_RUN_DIR=str(run_dir), PROUTE_FIGURE_DIR=figures, OMP_NUM_THREADS="1")
        try:
            client = nbclient.NotebookClient(
                nb,
                kernel_name="python3",
                timeout=timeout,
                resources={"metadata": {"path": str(NOTEBOOK.parent)}},
            )
            client.execute()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    body, _ = HTMLExporter().from_notebook_node(nb)
    html.write_text(body, encoding="utf-8")


# ----------------------------------------------------------------------------- summary
def write_summary(
    agg: dict[str, Any],
    runs: list[Run],
    out: Path,
    argv: list[str],
    wall: float,
    notebook: str | None,
    n_boot: int = 10000,
) -> Path:
    settings = agg["settings"]
    failed = [r for r in runs if r.state != "finished"]
    lines = [
        "# proute study: results",
        "",
        f"Made by `{' '.join(argv)}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}; "
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"each run one thread (`OMP_NUM_THREADS=1`). Wall time of this invocation: "
        f"{_fmt_seconds(wall)} ({sum(r.returncode is not None for r in runs)} runs computed, "
        f"{sum(r.returncode is None and r.state == 'finished' for r in runs)} already finished, "
        f"{len(failed)} failed).",
        "",
        "Every table: test split, model and hyperparameters chosen on validation, mean ± std "
        "over the seeds (sample std). Routers: the GNN with each query's task label given "
        "(the paper's protocol), the GNN live (the exported router, task inferred from the query "
        "text), and every baseline of `proute.baselines` (`oracle` is the upper bound).",
    ]
    default = settings.get("default", {})
    if "cells" in default:
        lines += [
            "",
            f"## Headline: the paper's nine cost-efficiency users (`default`, seeds {default['seeds']})",
            "",
            markdown(default["cells"], TITLES),
        ]
        if default.get("bootstrap"):
            lines += ["", verdict(default["bootstrap"])]
    lines += ["", "## Settings", ""]
    lines += [
        "| setting | seeds | GNN (gold) reward | GNN (live) reward | strongest baseline | its reward "
        "| GNN − baseline [95% CI] | beyond seed spread? | table | figure |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for setting, e in settings.items():
        if "cells" not in e:
            lines.append(f"| {setting} | 0 of {len(e['planned'])} | no finished run | | | | | | | |")
            continue
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
        lines.append(
            f"| {setting} | {seeds} | {c.loc[GNN, 'reward']} | {live} | {base} | {base_r} | {diff} "
            f"| {spread} "
            f"| [md]({setting}.md), [csv]({setting}.csv) | {fig} |"
        )
    lines += [
        "",
        '"Beyond seed spread": |mean GNN − baseline difference| larger than the larger of the '
        "two routers' std of test reward over seeds. The CI resamples the (seed, user, query) "
        f"test pairs of all seeds (`proute.evaluation.analysis.paired_bootstrap`, {n_boot:,} resamples); "
        "`bootstrap.csv` has every number.",
    ]
    if agg.get("new_users"):
        lines += ["", "## New users", "", agg["new_users"].split("\n", 2)[2].replace("\n## ", "\n### ")]
    if notebook:
        lines += ["", f"Per-user analysis of the `default` seed-42 run: [{notebook}]({notebook})."]
    if failed:
        lines += ["", "## Failed or missing runs", ""]
        lines += [f"- `{r.name}`: {r.error or r.state} (log `{r.log}`)" for r in failed]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out", type=Path, default=ROOT / "experiments" / "results", help="tables, figures, summary.md"
    )
    p.add_argument("--runs", type=Path, default=ROOT / "outputs" / "study", help="run directories")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    p.add_argument("--seeds", help="comma-separated seeds for every setting (default: conf/study.yaml)")
    p.add_argument("--settings", help="comma-separated settings (default: all of the config)")
    p.add_argument(
        "--config", type=Path, default=CONFIG, help="the study's settings (default: conf/study.yaml)"
    )
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Hydra override for every run (repeatable)",
    )
    p.add_argument("--no-notebook", action="store_true", help="do not execute and export the notebook")
    p.add_argument("--aggregate-only", action="store_true", help="run nothing; aggregate the finished runs")
    p.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    settings = [s.strip() for s in args.settings.split(",") if s.strip()] if args.settings else None
    study = load_study(args.config, settings, seeds)
    runs_root, out = args.runs.resolve(), args.out.resolve()
    runs = plan(study, runs_root, args.override, seeds is not None)
    if not args.aggregate_only:
        execute(study, runs, args.override, args.jobs)
    else:
        print(f"study: aggregating {sum(r.state == 'finished' for r in runs)} finished of {len(runs)} runs")

    notebook = None
    done = finished_runs(runs)
    nb_run = done.get("default", {}).get(FIGURE_SEED)
    if not args.no_notebook and nb_run is not None:
        print(f"study: executing {NOTEBOOK.relative_to(ROOT)} on {nb_run}", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        try:
            export_notebook(nb_run, out / "per_user_analysis.html")
            notebook = "per_user_analysis.html"
        except Exception as exc:  # noqa: BLE001 - reported, and the exit status says so
            print(f"study: the notebook failed: {type(exc).__name__}: {str(exc)[-2000:]}", flush=True)
            notebook = False

    print("study: aggregating", flush=True)
    agg = aggregate(runs, out, args.bootstrap)
    shown = ["scripts/study.py", *argv]
    summary = write_summary(agg, runs, out, shown, time.perf_counter() - t0, notebook or None, args.bootstrap)
    print(summary.read_text())
    failed = [r for r in runs if r.state != "finished"]
    for r in failed:
        print(f"study: FAILED {r.name}: {r.error or r.state} (log: {r.log})", file=sys.stderr)
    if notebook is False:
        print("study: FAILED the notebook export", file=sys.stderr)
    return 1 if failed or notebook is False else 0


if __name__ == "__main__":
    sys.exit(main())
