"""Hyperparameter search through Hydra's Optuna sweeper (conf/hpo/default.yaml): the
validation reward is the objective, every trial is kept in a SQLite study."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from omegaconf import OmegaConf

from conftest import FIXTURES, ROOT
from test_sweeps import compose_with_hydra


def test_the_search_composes_on_the_optuna_sweeper():
    import optuna
    from hydra.utils import get_class

    assert optuna.__version__ == "2.10.1"
    cfg = compose_with_hydra(["+hpo=default"])
    sweeper = cfg.hydra.sweeper
    assert get_class(sweeper._target_).__name__ == "OptunaSweeper"
    assert sweeper.direction == "maximize" and sweeper.sampler.seed == 42
    assert sweeper.storage == f"sqlite:///{cfg.hydra.sweep.dir}/optuna.db"
    assert cfg.hydra.sweep.dir == "outputs/hpo/default" and cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.optimized_metric == "val/reward" and cfg.logger._target_.endswith("NullLogger")
    assert set(sweeper.params) == {
        "learning_rate",
        "embedding_dim",
        "train_mask_rate",
        "trainer.listwise_temperature",
    }


def test_a_two_trial_search_stores_its_trials_and_picks_the_best_val_reward(tmp_path, cache_dir):
    import optuna

    sweep = tmp_path / "hpo"
    cmd = [
        sys.executable,
        "-m",
        "proute.train",
        "+hpo=default",
        "hydra.sweeper.n_trials=2",
        "debug=default",
        f"paths.data_dir={FIXTURES}",
        f"paths.cache_dir={cache_dir}",
        f"hydra.sweep.dir={sweep}",
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = optuna.load_study(study_name="default", storage=f"sqlite:///{sweep}/optuna.db")
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(math.isfinite(t.value) for t in trials)
    val = [
        json.loads((sweep / str(i) / "metrics.json").read_text())["val"]["overall"]["reward"] for i in (0, 1)
    ]
    assert sorted(t.value for t in trials) == sorted(val)
    assert study.best_value == max(val)
    best_run = OmegaConf.load(sweep / str(val.index(max(val))) / "config.yaml")
    assert best_run.learning_rate == study.best_params["learning_rate"]
    assert best_run.embedding_dim == study.best_params["embedding_dim"]
    assert OmegaConf.load(sweep / "optimization_results.yaml").best_value == study.best_value
