"""Summarise a Hydra multirun of ``python -m proute.train -m``: mean ± std over seeds.

    python -m proute.study multirun outputs/sweep_conv/multiruns/2026-11-27_15-00-00
    python -m proute.study multirun MULTIRUN_DIR --out reports/conv

Reads every job directory of the multirun (``<dir>/<job number>/``: ``.hydra/overrides.yaml``,
``status.json``, ``metrics.json``, ``config.yaml``), groups the jobs by their overrides
without the seed (``random_state``) and writes, into ``--out`` (default: the multirun
directory), ``summary.md`` and ``summary.csv`` (per group: mean and std over seeds of the
test reward, reward / oracle, accuracy and cost, the validation reward, the number of seeds
and of failed, unfinished and unreadable jobs) and ``summary.png`` (test reward with the
std as error bars). Prints the Markdown table.

Only finished jobs count (``status.json`` says ``finished``; a run from before status.json
counts when it has ``metrics.json``). A job that failed or has not finished is counted in its
row; a job whose files cannot be read (corrupt ``metrics.json``, say) is named under
"Skipped jobs" and left out, never a crash. The table's columns are the overrides that
differ between jobs; those every job shares are listed above it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from proute.evaluation.analysis import format_mean_std
from proute.training import lifecycle

SEED_KEY = "random_state"
#: (column, title, path in metrics.json, Markdown format)
METRICS = (
    ("test_reward", "test reward", ("test", "overall", "reward"), ".4f"),
    ("test_reward_ratio", "reward / oracle", ("test", "overall", "reward_ratio"), ".3f"),
    ("test_accuracy", "accuracy", ("test", "overall", "accuracy"), ".3f"),
    ("test_cost", "cost", ("test", "overall", "cost"), ".3g"),
    ("val_reward", "val reward", ("val", "overall", "reward"), ".4f"),
)
#: Baselines shown under the table (mean test reward over the finished jobs).
BASELINES = {
    "per_user_task": "best LLM per (user, task) on train",
    "per_user": "best fixed LLM per user",
    "best_llm": "best single LLM",
    "random": "random",
}


@dataclass
class Job:
    """One job directory of the multirun."""

    path: Path
    overrides: dict[str, str] = field(default_factory=dict)  # key (no +/~) -> value
    raw: dict[str, str] = field(default_factory=dict)  # key -> the override as written
    state: str = "unknown"  # finished | failed | running | interrupted | missing | unreadable
    seed: Any = None
    values: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    problem: str | None = None  # why the job was skipped


# ----------------------------------------------------------------------------- reading


def _key(override: str) -> tuple[str, str]:
    """``+sweep=conv`` -> ``("sweep", "conv")``; ``~key`` -> ``("key", "<deleted>")``."""
    key, sep, value = override.partition("=")
    key = key.lstrip("+")
    if key.startswith("~"):
        return key[1:], "<deleted>"
    return key, value if sep else ""


def _dig(tree: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            raise KeyError(".".join(path))
        tree = tree[part]
    return tree


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} is {value!r}, not a number")
    return float(value)


def _read_overrides(path: Path) -> list[str]:
    """The job's ``.hydra/overrides.yaml``: a YAML list of strings (read with OmegaConf)."""
    overrides = OmegaConf.load(path)
    if not isinstance(overrides, ListConfig):
        raise ValueError("not a list of overrides")
    return [str(x) for x in overrides]


def read_job(path: Path) -> Job:
    """A job directory, read without raising: a problem is kept in ``job.problem``."""
    job = Job(path)
    try:
        for override in _read_overrides(path / ".hydra" / "overrides.yaml"):
            key, value = _key(override)
            job.overrides[key], job.raw[key] = value, override
    except FileNotFoundError:
        job.problem = ".hydra/overrides.yaml is missing (the job's overrides are unknown)"
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not raised
        job.problem = f".hydra/overrides.yaml: {type(exc).__name__}: {exc}"
    job.seed = job.overrides.pop(SEED_KEY, None)
    if job.seed is None:  # the seed was not swept: take it from the resolved config
        try:
            saved = OmegaConf.load(path / "config.yaml")
            job.seed = saved.get(SEED_KEY) if isinstance(saved, DictConfig) else None
        except Exception:  # noqa: BLE001
            pass
    if job.problem:
        job.state = "unreadable"
        return job
    try:  # proute.training.lifecycle: a run from before status.json counts when it has metrics.json
        status = lifecycle.read_status(path)
    except lifecycle.RunStateError as exc:
        job.state, job.problem = "unreadable", f"status.json: {exc}"
        return job
    job.state = "missing" if status is None else str(status["state"])
    if job.state == "finished":
        _read_values(job)
    return job


def _read_values(job: Job) -> None:
    """The finished job's metrics and baselines (``metrics.json``)."""
    try:
        data = json.loads((job.path / "metrics.json").read_text())
        for column, _, where, _ in METRICS:
            job.values[column] = _number(_dig(data, where), "/".join(where))
        for name in BASELINES:  # optional (baselines=[] runs none)
            try:
                job.baselines[name] = _number(
                    _dig(data, ("baselines", "test", name, "overall", "reward")), name
                )
            except (KeyError, ValueError):
                pass
    except FileNotFoundError:
        job.state, job.problem = "unreadable", "status.json says finished but metrics.json is missing"
    except json.JSONDecodeError as exc:
        job.state, job.problem = "unreadable", f"metrics.json is not valid JSON ({exc})"
    except Exception as exc:  # noqa: BLE001 - a key missing, a value of the wrong type
        job.state, job.problem = "unreadable", f"metrics.json: {type(exc).__name__}: {exc}"


def job_dirs(multirun: Path) -> list[Path]:
    """The job directories (``0``, ``1``, ...; anything with a ``.hydra`` folder or a run's
    files), in job order; ``.submitit`` and other folders are left out."""

    def is_job(p: Path) -> bool:
        if not p.is_dir() or p.name.startswith("."):
            return False
        return any((p / name).exists() for name in (".hydra", "status.json", "metrics.json", "config.yaml"))

    def order(p: Path) -> tuple:
        return (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name)

    return sorted((p for p in multirun.iterdir() if is_job(p)), key=order)


# ----------------------------------------------------------------------------- summary


@dataclass
class Row:
    """One cell of the sweep: the jobs that differ only by seed."""

    label: dict[str, str]
    jobs: list[Job] = field(default_factory=list)

    @property
    def finished(self) -> list[Job]:
        return [j for j in self.jobs if j.state == "finished" and not j.problem]

    def count(self, *states: str) -> int:
        return sum(j.state in states for j in self.jobs)

    def stats(self, column: str) -> tuple[float, float]:
        """Mean and sample std over the finished seeds (std nan for a single seed)."""
        xs = [j.values[column] for j in self.finished]
        if not xs:
            return math.nan, math.nan
        return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else math.nan


def summarise(jobs: list[Job]) -> tuple[list[str], dict[str, str], list[Row]]:
    """(the override keys that differ between jobs, the overrides every job shares, rows)."""
    readable = [j for j in jobs if j.state != "unreadable" or j.overrides]
    keys: list[str] = []
    for job in readable:
        keys += [k for k in job.overrides if k not in keys]
    varying = [k for k in keys if len({j.overrides.get(k) for j in readable}) > 1]
    common = {k: readable[0].raw[k] for k in keys if k not in varying} if readable else {}
    rows: dict[tuple, Row] = {}
    for job in readable:
        label = {k: job.overrides.get(k, "") for k in varying}
        rows.setdefault(tuple(label.items()), Row(label)).jobs.append(job)
    return varying, common, list(rows.values())


def _cell(mean: float, std: float, fmt: str) -> str:
    if math.isnan(mean):
        return "—"
    if fmt.endswith("f"):  # proute.evaluation.analysis's "mean ± std"
        return format_mean_std(mean, std, int(fmt[1:-1]))
    return f"{mean:{fmt}}" if math.isnan(std) else f"{mean:{fmt}} ± {std:{fmt}}"


def _seeds(row: Row) -> str:
    return ",".join(str(j.seed) for j in row.finished)


def markdown(multirun: Path, jobs: list[Job], varying, common, rows: list[Row]) -> str:
    label_cols = varying or ["config"]
    lines = [f"## {multirun}", ""]
    lines.append(
        f"{len(jobs)} jobs; mean ± std over the finished seeds (sample std; one seed: no ±). "
        "Test split, model selected on validation."
    )
    if common:
        lines += ["", "Every job: " + " ".join(f"`{v}`" for v in common.values())]
    header = (
        label_cols + [title for _, title, _, _ in METRICS] + ["seeds", "failed", "unfinished", "unreadable"]
    )
    lines += ["", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in rows:
        cells = [row.label.get(k, "(default)") or "(default)" for k in varying] or ["(as run)"]
        cells += [_cell(*row.stats(col), fmt) for col, _, _, fmt in METRICS]
        cells += [
            f"{len(row.finished)} ({_seeds(row)})" if row.finished else "0",
            str(row.count("failed")),
            str(row.count("running", "interrupted", "missing")),
            str(row.count("unreadable")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    finished = [j for r in rows for j in r.finished]
    base = [
        f"{title} {statistics.fmean(xs):.4f}"
        for name, title in BASELINES.items()
        if (xs := [j.baselines[name] for j in finished if name in j.baselines])
    ]
    if base:
        lines += ["", "Baselines, test reward (mean over the finished jobs): " + "; ".join(base) + "."]
    skipped = [j for j in jobs if j.problem]
    if skipped:
        lines += ["", "Skipped jobs:", ""]
        lines += [f"- `{j.path}`: {j.problem}" for j in skipped]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, varying, rows: list[Row]) -> None:
    header = list(varying) + [f"{c}_{s}" for c, *_ in METRICS for s in ("mean", "std")]
    header += ["n_seeds", "seeds", "failed", "unfinished", "unreadable"]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            values: list[object] = [row.label.get(k, "") for k in varying]
            for column, *_ in METRICS:
                values += ["" if math.isnan(x) else repr(x) for x in row.stats(column)]
            values += [
                len(row.finished),
                _seeds(row),
                row.count("failed"),
                row.count("running", "interrupted", "missing"),
                row.count("unreadable"),
            ]
            writer.writerow(values)


def plot(path: Path, varying, rows: list[Row], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend is chosen

    labels = [
        "\n".join([f"{k}={row.label[k]}" for k in varying] or ["(as run)"]) + f"\nn={len(row.finished)}"
        for row in rows
    ]
    stats = [row.stats("test_reward") for row in rows]
    means = [0.0 if math.isnan(m) else m for m, _ in stats]
    errs = [0.0 if math.isnan(s) else s for _, s in stats]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 1.5), 3.8))
    ax.bar(range(len(rows)), means, yerr=errs, capsize=4, color="tab:blue")
    fixed = [j.baselines["per_user"] for r in rows for j in r.finished if "per_user" in j.baselines]
    if fixed:
        ax.axhline(statistics.fmean(fixed), color="tab:gray", ls="--", lw=1, label=BASELINES["per_user"])
        ax.legend(fontsize=7, loc="lower right")
    ax.axhline(0.0, color="black", lw=0.5)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("test reward (mean ± std over seeds)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarise_multirun(multirun: Path, out: Path | None = None) -> str:
    """Read, summarise and write; returns the Markdown text."""
    if not multirun.is_dir():
        raise SystemExit(f"{multirun}: not a directory")
    dirs = job_dirs(multirun)
    if not dirs:
        raise SystemExit(f"{multirun}: no job directories (0/, 1/, ...) found; is it a multirun's sweep dir?")
    jobs = [read_job(d) for d in dirs]
    varying, common, rows = summarise(jobs)
    out = out or multirun
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(multirun, jobs, varying, common, rows)
    (out / "summary.md").write_text(text)
    write_csv(out / "summary.csv", varying, rows)
    plot(out / "summary.png", varying, rows, str(multirun))
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("multirun", type=Path, help="a multirun's sweep directory (holds 0/, 1/, ...)")
    parser.add_argument("--out", type=Path, help="where summary.{md,csv,png} go (default: the multirun dir)")


def main(args: argparse.Namespace) -> int:
    text = summarise_multirun(args.multirun, args.out)
    print(text, end="")
    out = args.out or args.multirun
    print(f"\nwrote {out / 'summary.md'}, {out / 'summary.csv'}, {out / 'summary.png'}", file=sys.stderr)
    return 0
