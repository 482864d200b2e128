"""Run outputs: metrics.json, per-user tables and plots, the learning curve, and their W&B counterparts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from proute.evaluation.figures import plot_run_per_user, write_learning_curve
from proute.evaluation.metrics import per_user_frame
from proute.evaluation.outcomes import reference_baseline
from proute.evaluation.runs import USERS_FILE, user_labels


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "picks"}


def plot_per_user(
    frame: pd.DataFrame,
    baseline: pd.DataFrame | None,
    path: Path,
    title: str,
    baseline_name: str = "baseline",
    labels: Mapping[str, str] | None = None,
) -> Path:
    """``per_user.png``: per-user test accuracy and reward/oracle of the GNN beside a
    baseline (:func:`proute.evaluation.figures.plot_run_per_user`), drawn without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close(plot_run_per_user(frame, baseline, baseline_name, labels, title, path))
    return path


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_history(run_dir: Path, history: list[dict]) -> Path:
    """``history.csv``, one row per epoch so far; rewritten atomically after every epoch, so
    a failed or interrupted run keeps the epochs it trained."""
    path = Path(run_dir) / "history.csv"
    _atomic_text(path, pd.DataFrame(history).to_csv(index=False))
    return path


def write_run_report(
    run_dir: Path,
    val: dict,
    test: dict,
    baselines: dict,
    history: list,
    timing: dict,
    n_params: int,
    logger,
    live: dict | None = None,
    users: Sequence[Mapping[str, Any]] | None = None,
) -> dict:
    """``metrics.json`` and the per-user outputs. ``val``/``test``: the gold-task protocol
    (each query's task label given, as in the paper); ``live``: the exported router without
    task labels (``{"mode", "val", "test"}``, proute.train.live_protocol); ``users``: the
    simulated users' profiles (``RoutingData.meta["user_profiles"]``), written to
    ``user_profiles.json`` and naming the users of ``per_user.png``."""
    report: dict[str, Any] = {
        "val": _jsonable(val),
        "test": _jsonable(test),
        "baselines": {
            split: {name: _jsonable(m) for name, m in res.items()} for split, res in baselines.items()
        },
        "timing": timing,
        "parameters": n_params,
    }
    if live is not None:
        report["live"] = {
            "mode": live["mode"],
            **{
                split: {**_jsonable(live[split]), "task_accuracy": live[split]["task_accuracy"]}
                for split in ("val", "test")
            },
        }
        if "embedding_only" in live:  # the fallback for requests given only as an embedding
            report["live"]["embedding_only"] = {
                split: {"overall": m["overall"], "task_accuracy": m["task_accuracy"]}
                for split, m in live["embedding_only"].items()
            }
    _atomic_text(run_dir / "metrics.json", json.dumps(report, indent=2, default=float))
    write_history(run_dir, history)
    write_learning_curve(run_dir, history, timing.get("best_epoch"))
    per_user = per_user_frame(test)
    per_user.to_csv(run_dir / "per_user.csv", index=False)
    test["picks"].to_csv(run_dir / "test_picks.csv", index=False)
    _write_per_user_figure(run_dir, per_user, report, users)

    per_user["user_id"] = per_user["user_id"].astype(str)
    logger.log_table("test/per_user", per_user, bars=[("user_id", "accuracy"), ("user_id", "reward")])
    summary = {f"test/{k}": v for k, v in test["overall"].items()}
    summary.update({f"val/{k}": v for k, v in val["overall"].items()})
    if live is not None:
        summary.update({f"test_live/{k}": v for k, v in live["test"]["overall"].items()})
        summary["test_live/task_accuracy"] = live["test"]["task_accuracy"]
    for name, m in baselines.get("test", {}).items():
        summary.update({f"baseline/{name}/test_{k}": v for k, v in m["overall"].items()})
    summary.update(timing)
    summary["parameters"] = n_params
    logger.log_summary(summary)
    return report


def _write_per_user_figure(run_dir: Path, per_user: pd.DataFrame, report: dict, users) -> None:
    """``per_user.png`` against the reference baseline (:func:`reference_baseline`: the
    per-(user, task) table), and ``user_profiles.json`` when the users were simulated."""
    if users:
        _atomic_text(run_dir / USERS_FILE, json.dumps(list(users), indent=1, default=str))
    name = reference_baseline(report)
    other = per_user_frame(report["baselines"]["test"][name]) if name else None
    title = "test split, per user" + (f": GNN vs the {name} baseline" if name else "")
    plot_per_user(per_user, other, run_dir / "per_user.png", title, name or "", user_labels(users))


def write_test_outcomes(run_dir: Path, table: pd.DataFrame, baselines: dict) -> None:
    """What per-pair analysis needs beside ``test_picks.csv`` (proute.evaluation.analysis, the notebook):

    - ``test_outcomes.parquet``: every observed (user, query, LLM) of the test split with
      its performance, cost and reward (the single-LLM and oracle points);
    - ``test_baseline_picks.csv``: each baseline's pick per test pair (columns of
      ``test_picks.csv`` plus ``router``);
    - ``test_queries.parquet``: the text and task of each test query id.
    """
    test = table[table["split"] == "test"]
    cols = ["user_id", "query_id", "task", "llm", "performance", "cost", "reward"]
    out = test[cols].copy()
    for col in ("user_id", "query_id", "task", "llm"):
        out[col] = out[col].astype(str)
    out.to_parquet(run_dir / "test_outcomes.parquet", index=False)
    picks = [m["picks"].assign(router=name) for name, m in baselines.get("test", {}).items() if "picks" in m]
    if picks:
        pd.concat(picks, ignore_index=True).to_csv(run_dir / "test_baseline_picks.csv", index=False)
    queries = test.drop_duplicates("query_id")[["query_id", "task", "query"]].copy()
    queries["query"] = queries["query"].astype(str)
    queries.astype({"query_id": str, "task": str}).to_parquet(run_dir / "test_queries.parquet", index=False)


def _share(reward: float, oracle: float) -> str:
    return f"{reward / oracle:.1%}" if oracle > 0 else "n/a"


def run_summary(report: dict, run_dir: str | os.PathLike, seconds: float | None = None) -> str:
    """The end-of-run table: test reward of the GNN (gold task labels, and live: the exported
    router inferring tasks), of the strongest baseline (chosen on *validation* reward) and of
    the oracle, each also as a share of the oracle's reward; then where the files are."""
    test = report["test"]["overall"]
    oracle = float(test["oracle_reward"])
    rows = [("GNN, gold task labels", test["reward"])]
    if report.get("live"):
        live = report["live"]
        rows.append((f"GNN, live (tasks inferred, {live['mode']})", live["test"]["overall"]["reward"]))
    val_b, test_b = report["baselines"].get("val", {}), report["baselines"].get("test", {})
    methods = [n for n in val_b if n in test_b and not val_b[n].get("upper_bound")]  # not the oracle
    if methods:
        best = max(methods, key=lambda name: val_b[name]["overall"]["reward"])
        rows.append((f"strongest baseline on val: {best}", test_b[best]["overall"]["reward"]))
    rows.append(("oracle (each pair's best LLM)", oracle))
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    lines = [
        f"proute train: finished{took}. Test split, {int(test['n'])} (user, query) pairs:",
        f"  {'':<44}{'reward':>9}{'of oracle':>11}",
        *(f"  {label:<44}{float(r):>#9.4g}{_share(float(r), oracle):>11}" for label, r in rows),
        f"run directory: {run_dir} (metrics.json, per_user.png, history.csv)",
    ]
    return "\n".join(lines)
