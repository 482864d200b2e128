"""What produced a number: git revision, library versions, machine."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

from proute.config import paths

LIBRARIES = (
    "proute",
    "torch",
    "dgl",
    "numpy",
    "pandas",
    "transformers",
    "hydra-core",
    "omegaconf",
    "wandb",
    "safetensors",
    "scikit-learn",
)


def git_revision() -> dict[str, str | bool]:
    """The checkout's commit and whether it had uncommitted changes ("unknown" outside git)."""
    root = str(paths.project_root())
    try:
        rev = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            != ""
        )
        return {"commit": rev, "dirty": dirty}
    except Exception:
        return {"commit": "unknown", "dirty": False}


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def environment() -> dict:
    return {
        "git": git_revision(),
        "versions": library_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
