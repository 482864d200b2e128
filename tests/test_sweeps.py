"""Sweeps: conf/sweep/*.yaml (``python -m proute.train -m +sweep=NAME``), the local
(joblib) and Slurm (submitit) launchers under conf/hydra/launcher/, and
``python -m proute.study multirun`` (was scripts/aggregate.py), which summarises a multirun
as mean ± std over seeds.

Every sweep is composed cell by cell here; one tiny multirun (the conv sweep cut to two
seeds of one conv, on the local launcher with two workers) runs end to end and is
aggregated. The other sweeps' single tiny jobs are ``slow``.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from conftest import FIXTURES, ROOT

# conf/sweep/study.yaml is the study of `make reproduce` (its own sweep dir and launcher):
# tests/test_study.py tests it.
SWEEPS = sorted(p.stem for p in (ROOT / "conf" / "sweep").glob("*.yaml") if p.stem != "study")
SEEDS = ["42", "43", "44"]
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def compose_with_hydra(overrides: list[str]):
    """``conf/train.yaml`` composed with its ``hydra`` node (proute.config.compose drops it)."""
    return compose_many([overrides])[0]


def compose_many(overrides: list[list[str]]) -> list:
    """:func:`compose_with_hydra` of each list of overrides, in one Hydra context."""
    from hydra import compose, initialize_config_dir

    from proute.config import paths, register_resolvers
    from proute.training import lifecycle

    register_resolvers()
    lifecycle.register_resolvers()
    with initialize_config_dir(config_dir=str(paths.config_dir()), version_base="1.3"):
        return [compose("train", o, return_hydra_config=True) for o in overrides]


def sweep_params(name: str) -> dict[str, list[str]]:
    """``hydra.sweeper.params`` of a sweep: key -> its values, parsed as Hydra parses them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = compose_with_hydra([f"+sweep={name}"]).hydra.sweeper.params
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return {o.key_or_group: list(o.sweep_string_iterator()) for o in parsed}


def multirun(sweep_dir: Path, cache: Path, *overrides: str, env: dict | None = None, timeout: int = 300):
    """``python -m proute.train -m +sweep=... debug=default`` on the fixture data."""
    args = [
        sys.executable,
        "-m",
        "proute.train",
        "-m",
        *overrides,
        "debug=default",
        f"paths.data_dir={FIXTURES}",
        f"paths.cache_dir={cache}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=timeout, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def aggregate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "proute.study", "multirun", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


class ThreadProbe(Callback):
    """A Hydra callback (``+hydra.callbacks.probe._target_=test_sweeps.ThreadProbe``) that
    writes, in the job's process after the job, how many threads torch used."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        import torch

        probe = {"torch_threads": torch.get_num_threads(), "pid": os.getpid()}
        Path(config.hydra.runtime.output_dir, "threads.json").write_text(json.dumps(probe))


# ----------------------------------------------------------------------------- composition


def test_the_sweeps_are_there():
    assert {"conv", "masking", "graph", "embedding_dim", "loss", "seeds"} <= set(SWEEPS)


@pytest.mark.parametrize("name", SWEEPS)
def test_every_cell_of_every_sweep_composes_and_validates(name):
    """Each sweep names its task, includes seeds 42, 43, 44, and every cell (each
    combination of its other parameters) composes to a config that validates and that
    has the swept values."""
    from proute.config import validate_config

    params = sweep_params(name)
    assert params.pop("random_state") == SEEDS, f"{name}: every sweep runs seeds 42, 43, 44"
    base = compose_with_hydra([f"+sweep={name}"])
    assert base.task_name == f"sweep_{name}"
    assert f"/sweep_{name}/multiruns/" in base.hydra.sweep.dir
    groups = set(base.hydra.runtime.choices)
    keys, cells = list(params), list(itertools.product(*params.values()))
    overrides = [
        [f"+sweep={name}", *(f"{k}={v}" for k, v in zip(keys, c, strict=True)), "random_state=44"]
        for c in cells
    ]
    for cell, cfg in zip(cells, compose_many(overrides), strict=True):
        validate_config(cfg)
        for key, value in zip(keys, cell, strict=True):
            got = cfg.hydra.runtime.choices[key] if key in groups else str(OmegaConf.select(cfg, key))
            assert got == value, f"{name}: {key}={value} composed to {got}"
        assert cfg.random_state == 44


def test_masking_sweep_selects_the_full_graph_trainer_for_edge_maskings():
    for masking, trainer in [("query", "minibatch"), ("random", "fullgraph"), ("cold_start", "fullgraph")]:
        cfg = compose_with_hydra(["+sweep=masking", f"masking={masking}"])
        assert cfg.hydra.runtime.choices.trainer == trainer


def test_graph_sweep_makes_no_family_an_ablation():
    """proute's default graph has no family edges; the graph sweep adds them, so that its
    no_family cell differs from its default cell."""
    default = compose_with_hydra(["+sweep=graph", "graph=default"])
    ablated = compose_with_hydra(["+sweep=graph", "graph=no_family"])
    assert list(default.graph.llm_family) and list(ablated.graph.llm_family) == []


def test_local_launcher_composes():
    cfg = compose_with_hydra(["+sweep=conv", "hydra/launcher=local"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert launcher.n_jobs == 2 and launcher.prefer == "processes" and launcher.backend is None
    # No env_set: joblib's loky workers start with OMP/MKL_NUM_THREADS = cores // n_jobs
    # (or the shell's value), before anything is imported (test_local_sweep_... checks it).
    assert not cfg.hydra.job.env_set


def test_slurm_launcher_composes_and_writes_an_sbatch_script(tmp_path, monkeypatch):
    """The Slurm launcher's config composes, its target imports and takes the config, and
    submitit accepts every parameter and writes the sbatch script (submission stubbed)."""
    import submitit
    from hydra.plugins.launcher import Launcher
    from hydra.utils import get_class, instantiate

    cfg = compose_with_hydra(
        ["+sweep=conv", "hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}", "hydra.launcher.partition=gpu"]
    )
    assert issubclass(get_class(cfg.hydra.launcher._target_), Launcher)
    assert cfg.hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert dict(cfg.hydra.job.env_set) == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}

    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for srun
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    submitted = {}

    def map_array(executor, fn, *args):
        submitted.update(executor=executor, fn=fn, args=args)
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    assert launcher.launch([["model=gat", "random_state=42"], ["model=gat", "random_state=43"]], 0) == []
    assert submitted["fn"] is launcher and list(submitted["args"][0]) == [
        ["model=gat", "random_state=42"],
        ["model=gat", "random_state=43"],
    ]
    script = submitted["executor"]._executor._make_submission_file_text("python -m x", "uid")
    for line in ("--partition=gpu", "--cpus-per-task=4", "--time=120", "--mem=16GB"):
        assert f"#SBATCH {line}" in script, script
    assert "gpus" not in script  # gpus_per_node: null asks for none


# ----------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def conv_multirun(tmp_path_factory, cache_dir):
    """The conv sweep cut to one conv and two seeds: 2 tiny jobs on the local launcher (2
    workers). The thread variables are unset, so the workers' come from joblib."""
    sweep_dir = tmp_path_factory.mktemp("sweep_conv")
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    out = multirun(
        sweep_dir,
        cache_dir,
        "+sweep=conv",
        "hydra/launcher=local",
        "model=sage",
        "random_state=42,43",
        "+hydra.callbacks.probe._target_=test_sweeps.ThreadProbe",
        env=env,
    )
    return sweep_dir, out


def test_local_sweep_runs_two_jobs_in_parallel_with_one_thread_per_core(conv_multirun):
    import joblib

    sweep_dir, out = conv_multirun
    assert "Joblib.Parallel(n_jobs=2" in out.stdout + out.stderr
    jobs = job_dirs(sweep_dir)
    assert [p.name for p in jobs] == ["0", "1"]
    for job, seed in zip(jobs, (42, 43), strict=True):
        assert json.loads((job / "status.json").read_text())["state"] == "finished"
        assert OmegaConf.load(job / "config.yaml").random_state == seed
        assert list(OmegaConf.load(job / ".hydra" / "overrides.yaml"))[:2] == [
            "model=sage",
            f"random_state={seed}",
        ]
        probe = json.loads((job / "threads.json").read_text())
        assert probe["pid"] != os.getpid()
        # each worker gets cores // n_jobs threads (1 on a 2-core machine)
        assert probe["torch_threads"] == max(1, joblib.cpu_count() // 2)


def test_aggregate_a_multirun(conv_multirun, tmp_path):
    sweep_dir, _ = conv_multirun
    out = aggregate(sweep_dir, "--out", tmp_path)
    assert out.returncode == 0, out.stderr
    table = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    # no column varies between the two jobs but the seed: one row, two seeds
    assert table[0].startswith(
        "| config | test reward | reward / oracle | accuracy | cost | val reward | seeds |"
    )
    assert len(table) == 2 and table[1].startswith("| (as run) |") and "| 2 (42,43) | 0 | 0 | 0 |" in table[1]
    rewards = [
        json.loads((j / "metrics.json").read_text())["test"]["overall"]["reward"] for j in job_dirs(sweep_dir)
    ]
    assert f"{sum(rewards) / 2:.4f} ± " in table[1]
    assert "`+sweep=conv`" in out.stdout and "`model=sage`" in out.stdout
    for name in ("summary.md", "summary.csv", "summary.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "summary.md").read_text() == out.stdout


def _job(
    sweep_dir: Path, num: int, source: Path, overrides: list[str], status: str | None, metrics: str | None
):
    """A job directory made from a real job's files."""
    job = sweep_dir / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))
    if status is not None:
        (job / "status.json").write_text(json.dumps({"state": status}))
    if metrics == "copy":
        shutil.copy(source / "metrics.json", job / "metrics.json")
    elif metrics is not None:
        (job / "metrics.json").write_text(metrics)
    return job


def test_aggregate_groups_by_overrides_counts_failures_and_skips_corrupt_jobs(conv_multirun, tmp_path):
    real, _ = conv_multirun
    source = job_dirs(real)[0]
    sweep = tmp_path / "multirun"
    common = ["+sweep=conv", "debug=default"]
    _job(sweep, 0, source, ["model=sage", "random_state=42", *common], "finished", "copy")
    _job(sweep, 1, source, ["model=sage", "random_state=43", *common], None, "copy")  # before status.json
    no_baselines = _job(sweep, 2, source, ["model=gat", "random_state=42", *common], "finished", "copy")
    metrics = json.loads((no_baselines / "metrics.json").read_text())
    (no_baselines / "metrics.json").write_text(
        json.dumps({k: v for k, v in metrics.items() if k != "baselines"})
    )
    corrupt = _job(sweep, 3, source, ["model=gat", "random_state=43", *common], "finished", '{"val": {')
    _job(sweep, 4, source, ["model=gat", "random_state=44", *common], "failed", None)
    _job(sweep, 5, source, ["model=gatv2", "random_state=42", *common], "running", None)
    _job(sweep, 6, source, ["model=gatv2", "random_state=43", *common], "interrupted", "copy")
    (sweep / ".submitit" / "123").mkdir(parents=True)  # a launcher's folder, not a job
    (sweep / "multirun.yaml").write_text("hydra: {}\n")

    out = aggregate(sweep)
    assert out.returncode == 0, out.stderr
    rows = {line.split(" | ")[0][2:]: line for line in out.stdout.splitlines() if line.startswith("| ")}
    assert list(rows) == ["model", "sage", "gat", "gatv2"]
    # | seeds | failed | unfinished | unreadable |
    assert rows["sage"].endswith("| 2 (42,43) | 0 | 0 | 0 |")
    assert rows["gat"].endswith("| 1 (42) | 1 | 0 | 1 |")
    assert rows["gatv2"].endswith("| 0 | 0 | 2 | 0 |") and "| — | — |" in rows["gatv2"]
    reward = json.loads((source / "metrics.json").read_text())["test"]["overall"]["reward"]
    assert f"| sage | {reward:.4f} ± 0.0000 |" in rows["sage"] and f"| gat | {reward:.4f} |" in rows["gat"]
    # the corrupt job is named, with what is wrong, and left out
    assert f"`{corrupt}`: metrics.json is not valid JSON" in out.stdout
    assert "`+sweep=conv` `debug=default`" in out.stdout
    csv = (sweep / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("model,test_reward_mean,test_reward_std,")
    assert [line.split(",")[0] for line in csv[1:]] == ["sage", "gat", "gatv2"]


def test_aggregate_refuses_a_folder_without_jobs(tmp_path):
    out = aggregate(tmp_path)
    assert out.returncode != 0 and "no job directories" in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", [s for s in SWEEPS if s != "conv"])
def test_each_sweep_runs_one_tiny_job(name, tmp_path, cache_dir):
    """Each sweep's multirun, each parameter cut to its last value (the basic launcher)."""
    params = sweep_params(name)
    chosen = [f"{k}={v[-1]}" for k, v in params.items()]
    multirun(tmp_path / "sweep", cache_dir, f"+sweep={name}", *chosen)
    (job,) = job_dirs(tmp_path / "sweep")
    assert json.loads((job / "status.json").read_text())["state"] == "finished"
    assert list(OmegaConf.load(job / ".hydra" / "overrides.yaml"))[: len(chosen)] == chosen
    out = aggregate(tmp_path / "sweep")
    assert out.returncode == 0, out.stderr
    assert "| (as run) |" in out.stdout and "| 1 (44) | 0 | 0 | 0 |" in out.stdout
