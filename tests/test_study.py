"""The study (``make reproduce``): one Hydra multirun of ``python -m proute.train +sweep=study``
(conf/sweep/study.yaml, settings in conf/setting/), then ``python -m proute.study aggregate``.

Composed here on the Slurm launcher without submitting; a tiny study on the fixtures runs end
to end on the joblib launcher, is aggregated (numbers checked against the runs' metrics.json),
resumed (finished runs skipped) and reports a failing setting.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import FIXTURES, ROOT
from test_sweeps import compose_with_hydra

SETTINGS = sorted(p.stem for p in (ROOT / "conf" / "setting").glob("*.yaml"))
#: The settings as conf/study.yaml wrote them (before they were a config group).
OLD_OVERRIDES = {
    "default": [],
    "archetypes": ["experiment=archetypes"],
    "sparse_users": ["experiment=sparse_users"],
    **{f"new_users_k{k}": ["experiment=new_users", f"split.support_queries={k}"] for k in (0, 3, 5, 10)},
    "new_llms": ["split=new_llms"],
}


def train(*overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "proute.train", *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def study(runs, cache_dir, *overrides: str) -> subprocess.CompletedProcess:
    """The study's multirun, shrunk: ``debug=default`` on the fixtures, into ``runs``."""
    fixtures = [f"paths.data_dir={FIXTURES}", f"paths.cache_dir={cache_dir}", f"hydra.sweep.dir={runs}"]
    return train("+sweep=study", "debug=default", *fixtures, *overrides)


def aggregate(runs, out, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "proute.study",
        "aggregate",
        str(runs),
        "--out",
        str(out),
        "--bootstrap",
        "200",
    ]
    return subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


# ----------------------------------------------------------------------------- composition


def test_every_setting_is_the_old_study_setting():
    """conf/setting/<name>.yaml composes to the config conf/study.yaml's overrides gave."""
    assert SETTINGS == sorted(OLD_OVERRIDES)
    from proute.config import compose

    for name, old in OLD_OVERRIDES.items():
        new, before = compose("train", [f"setting={name}"]), compose("train", old)
        assert OmegaConf.to_container(new) == OmegaConf.to_container(before), name


def test_the_study_on_slurm_composes_one_array_into_outputs_study(tmp_path):
    """``python -m proute.train +sweep=study hydra/launcher=slurm``: the submitit launcher, one
    job array of settings x seeds, each job into <sweep dir>/<setting>/seed<k> (not submitted)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_class

    from proute.study.runs import plan_of_config

    default = compose_with_hydra(["+sweep=study"])
    assert default.hydra.sweep.dir == "outputs/study" and default.hydra.mode.name == "MULTIRUN"
    assert default.hydra.launcher._target_.endswith("JoblibLauncher") and default.hydra.launcher.n_jobs == 2
    cfg = compose_with_hydra(["+sweep=study", "hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert get_class(launcher._target_).__name__ == "SlurmLauncher"
    assert launcher.array_parallelism == 64 and launcher.cpus_per_task == 4 and launcher.timeout_min == 120
    assert cfg.hydra.sweep.dir == str(tmp_path)
    assert cfg.hydra.callbacks.study._target_ == "proute.study.callbacks.StudyProgress"
    runs = plan_of_config(cfg)
    assert (
        len(runs) == len(SETTINGS) * 3
        and runs[0].name == "default/seed42"
        and runs[2].name == "default/seed44"
    )
    assert {r.dir for r in runs} == {tmp_path / s / f"seed{k}" for s in SETTINGS for k in (42, 43, 44)}
    job = compose_with_hydra(
        ["+sweep=study", "hydra/launcher=slurm", "setting=new_users_k3", "random_state=43"]
    )
    HydraConfig.instance().set_config(job)
    assert OmegaConf.select(job, "hydra.sweep.subdir") == "new_users_k3/seed43"
    assert job.skip_finished is True and job.logger._target_.endswith("NullLogger") and job.quiet is True
    assert "oracle" in job.baselines and job.split.support_queries == 3


def test_the_resume_resolvers(tmp_path):
    from proute.study.callbacks import resumable, unreadable
    from proute.training.lifecycle import write_status

    run = tmp_path / "run"
    assert not resumable(str(run)) and not unreadable(str(run))
    (run / "checkpoint").mkdir(parents=True)
    write_status(run, state="interrupted")
    assert resumable(str(run)) and not unreadable(str(run))
    write_status(run, state="finished")
    assert not resumable(str(run))
    (run / "status.json").write_text("{not json")
    assert unreadable(str(run))


# ----------------------------------------------------------------------------- running


@pytest.mark.slow  # about 3 min: two tiny runs side by side, twice, and the aggregation
def test_a_tiny_study_runs_aggregates_resumes_and_reports_failures(tmp_path, cache_dir):
    runs, results = tmp_path / "runs", tmp_path / "results"
    first = study(runs, cache_dir, "setting=default,new_users_k3", "random_state=42")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "2 runs, 0 finished already (skipped), 2 to run (2 at a time)" in first.stdout
    assert (
        "embedding cache ready" in first.stdout and "Joblib.Parallel(n_jobs=2" in first.stdout + first.stderr
    )
    assert "done   default/seed42" in first.stdout and "[2/2 finished]" in first.stdout
    done = aggregate(runs, results, "--no-notebook")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in (
        "default.md",
        "default.csv",
        "new_users_k3.md",
        "new_users.md",
        "new_users.csv",
        "summary.md",
    ):
        assert (results / name).stat().st_size > 0, name
    assert (results / "default_cost_quality.png").stat().st_size > 1000
    table = (results / "default.md").read_text()
    for router in ("GNN (gold tasks)", "GNN (live, inferred tasks)", "per_user_task", "knn", "mf", "oracle"):
        assert f"| {router} |" in table, router
    assert "paired bootstrap" in table and "Overrides: `setting=default" in table
    summary = (results / "summary.md").read_text()
    assert "## Headline" in summary and "new_users_k3" in summary and "CPU cores" in summary
    assert "k = 3" in (results / "new_users.md").read_text()
    # the numbers are the runs' own
    metrics = json.loads((runs / "default" / "seed42" / "metrics.json").read_text())
    csv = pd.read_csv(results / "default.csv", index_col="router")
    assert csv.loc["GNN (gold tasks)", "reward_mean"] == pytest.approx(
        metrics["test"]["overall"]["reward"], 1e-5
    )
    assert csv.loc["knn", "accuracy_mean"] == pytest.approx(
        metrics["baselines"]["test"]["knn"]["overall"]["accuracy"], 1e-5
    )
    assert f"| GNN (gold tasks) | {metrics['test']['overall']['reward']:.4f} |" in table
    nu = json.loads((runs / "new_users_k3" / "seed42" / "metrics.json").read_text())["test"]["new_users"]
    assert f"| k = 3 | {nu['reward']:.4f} |" in (results / "new_users.md").read_text()

    # Again, with one more setting whose run fails: the finished runs are skipped, not
    # recomputed; the failure is reported, the study goes on and ends with a non-zero status.
    written = sorted(runs.glob("*/seed42/metrics.json"))
    assert len(written) == 2
    mtimes = [m.stat().st_mtime_ns for m in written]
    extra = tmp_path / "conf"
    (extra / "setting").mkdir(parents=True)
    (extra / "setting" / "broken.yaml").write_text("# @package _global_\nlearning_rate: -1\n")
    second = study(
        runs,
        cache_dir,
        "setting=default,new_users_k3,broken",
        "random_state=42",
        f"hydra.searchpath=[file://{extra}]",
    )
    assert second.returncode == 1, second.stdout[-3000:] + second.stderr[-3000:]
    assert "3 runs, 2 finished already (skipped), 1 to run" in second.stdout
    assert "skip  default/seed42: finished already" in second.stdout
    assert "FAILED broken/seed42" in second.stdout and "learning_rate=-1" in second.stdout
    assert [m.stat().st_mtime_ns for m in written] == mtimes
    again = aggregate(runs, results, "--no-notebook")
    assert again.returncode == 1 and "FAILED broken/seed42" in again.stderr
    summary = (results / "summary.md").read_text()
    assert "## Failed or missing runs" in summary and "broken/seed42" in summary
    assert "| broken | 0 of 1 | no finished run" in summary
    assert (results / "default.md").is_file()


@pytest.mark.slow
def test_the_study_exports_the_notebook(tmp_path, cache_dir):
    pytest.importorskip("nbconvert")
    runs = tmp_path / "runs"
    ran = study(runs, cache_dir, "setting=default", "random_state=42")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    done = aggregate(runs, tmp_path / "results")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    html = (tmp_path / "results" / "per_user_analysis.html").read_text()
    assert "<html" in html and "image/png" in html
    assert "per_user_analysis.html" in (tmp_path / "results" / "summary.md").read_text()


@pytest.mark.slow
def test_a_one_job_study_on_submitits_local_executor(tmp_path, cache_dir):
    """The same command on submitit's local executor (what a cluster run does, here)."""
    runs = tmp_path / "runs"
    ran = study(runs, cache_dir, "setting=default", "random_state=42", "hydra/launcher=submitit_local")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert json.loads((runs / "default" / "seed42" / "status.json").read_text())["state"] == "finished"
    assert (runs / ".submitit").is_dir()
