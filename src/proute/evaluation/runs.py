"""A run directory's files for analysis: metrics, the GNN's and the baselines' test picks,
the test outcomes and query texts.

A run directory holds ``metrics.json``, ``test_picks.csv`` and ``config.yaml``, and (runs
since they were added) ``test_outcomes.parquet``, ``test_baseline_picks.csv`` and
``test_queries.parquet``. Without them :func:`load_table` rebuilds the run's routing table
from its resolved config (the data pipeline without the text encoder, about 2 s on the
bundled data) and :func:`load_test_outcomes` checks it against the run's own picks.
"""

from __future__ import annotations

import functools
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from proute.evaluation.outcomes import baseline_picks, check_picks_in_outcomes, refittable

OUTCOMES_FILE = "test_outcomes.parquet"
QUERIES_FILE = "test_queries.parquet"
BASELINE_PICKS_FILE = "test_baseline_picks.csv"
USERS_FILE = "user_profiles.json"  # the simulated users' profiles (preferences), when simulated
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


def _short(p: float) -> str:
    """0.8 -> "0.8", 1.0 -> "1.0", 0.5734 -> "0.57"."""
    text = f"{p:.2f}"
    return text[:-1] if text.endswith("0") else text


def user_label(profile: Mapping[str, Any]) -> str:
    """A user's name for figures from the simulator's profile
    (:meth:`proute.data.users.UserSimulator.user_profiles`): ``"u3 (perf 0.8)"`` for a
    cost-efficiency user (``preference``: the weight on performance against cost),
    ``"u5 (noisy, perf 0.43)"``, ``"u2 (loyal to qwen, perf 0.61)"``, ``"u0 (per-task)"``."""
    uid = profile["user_id"]
    name = f"u{uid}" if isinstance(uid, int) or str(uid).isdigit() else str(uid)
    kind = profile.get("archetype") or "cost_efficiency"
    pref = profile.get("preference")
    perf = f"perf {_short(float(pref))}" if pref is not None and kind != "task_specialist" else ""
    what = {
        "cost_efficiency": [perf],
        "noisy": ["noisy", perf],
        "family_loyal": [f"loyal to {profile.get('family', '?')}", perf],
        "task_specialist": ["per-task"],
    }.get(kind, [str(kind), perf])
    inner = ", ".join(w for w in what if w)
    return f"{name} ({inner})" if inner else name


def user_labels(profiles: Sequence[Mapping[str, Any]] | None) -> dict[str, str]:
    """``{user_id (text): label}`` (:func:`user_label`) for the profile records of a run's
    data (``RoutingData.meta["user_profiles"]``); ``{}`` when the data brought its own users."""
    return {str(p["user_id"]): user_label(p) for p in profiles or ()}


def load_user_labels(run_dir: str | os.PathLike) -> dict[str, str]:
    """:func:`user_labels` of the run's ``user_profiles.json`` (``{}`` when it has none: the
    data's own users, or a run from before the file)."""
    path = Path(run_dir) / USERS_FILE
    return user_labels(json.loads(path.read_text())) if path.is_file() else {}
