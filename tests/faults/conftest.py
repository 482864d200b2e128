"""Shared tools of the fault-matrix suite (docs/DESIGN.md §13).

Every case feeds one bad input or fault and asserts three things: the error type, that the
message names the file / row / field or config key, and that nothing already on disk
changed. :func:`tree_hashes` is the "before and after" of the last check.

Fixture ``trained``: the router directory of one tiny training run, per test module.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest); {} if it is missing."""
    root = Path(root)
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def unchanged():
    """``with unchanged(dir): ...`` asserts no file under ``dir`` was added, removed or edited."""
    import contextlib

    @contextlib.contextmanager
    def check(root: Path):
        before = tree_hashes(root)
        yield
        after = tree_hashes(root)
        assert after == before, f"files under {root} changed: " + ", ".join(
            sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        )

    return check


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir) -> Path:
    """The router directory of one tiny training run (``debug=default`` on the fixtures,
    real MiniLM), once per test module. Read-only: copy it to edit it."""
    from conftest import train_tiny_router

    return train_tiny_router(tmp_path_factory.mktemp("run"), cache_dir)
