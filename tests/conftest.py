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
    return [f"paths.data_dir={FIXTURES}", f"paths.cache_dir={cache_dir}",
            "encoder.show_progress=false"]
