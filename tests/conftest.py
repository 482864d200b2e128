"""Shared fixtures: offline everything, caches and W&B runs under tmp paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data"

# Nothing in the tests may reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("DGLBACKEND", "pytorch")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One embedding cache for the session (MiniLM encodes each fixture text once)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def fixture_overrides(cache_dir) -> list[str]:
    """Overrides that point the default config at the small fixtures under tests/data."""
    return [f"paths.data_dir={FIXTURES}", f"paths.cache_dir={cache_dir}", "text_encoder.show_progress=false"]


def train_overrides(tmp_path: Path, cache: Path) -> list[str]:
    """The real train config shrunk by ``debug=default`` (conf/debug/default.yaml: 2 epochs
    of one step, batch size 2, CPU, quiet, no W&B run) on the fixture data, writing into
    ``tmp_path``. A test that checks W&B passes ``logger=wandb`` (offline, see above)."""
    return [
        "debug=default",
        f"paths.data_dir={FIXTURES}",
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={tmp_path}",
    ]


def train_tiny_router(run_dir: Path, cache: Path) -> Path:
    """One tiny training run (``debug=default`` on the fixtures, one epoch, real MiniLM)
    into ``run_dir``; its exported router directory. Seconds."""
    from proute.config import compose
    from proute.train import run

    run(compose("train", train_overrides(run_dir, cache) + ["train_epoch=1"]), run_dir)
    return run_dir / "router"


@pytest.fixture
def train_cfg(tmp_path, cache_dir):
    """``train_cfg(*overrides)`` composes conf/train.yaml shrunk for tests."""
    from proute.config import compose

    def make(*overrides: str):
        return compose("train", train_overrides(tmp_path, cache_dir) + list(overrides))

    return make
