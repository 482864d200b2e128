"""Where proute finds its configs, its bundled data and its caches.

proute is a research framework used from a checkout (``make install`` installs it in
editable mode), so the top-level ``conf/`` and ``data/`` folders sit two levels above the
package (three above this module). ``PROUTE_ROOT`` points elsewhere (e.g. a copy of the
project for a sweep), and ``PROUTE_CACHE_DIR`` moves the embedding cache.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The project folder holding ``conf/`` and ``data/``."""
    env = os.environ.get("PROUTE_ROOT")
    root = Path(env).expanduser().resolve() if env else Path(__file__).resolve().parents[3]
    if not (root / "conf").is_dir():
        raise FileNotFoundError(
            f"proute cannot find its config folder at {root / 'conf'}. Install proute from a "
            "checkout with `make install` (editable), or set PROUTE_ROOT to the project folder."
        )
    return root


def config_dir() -> Path:
    """The top-level Hydra config folder ``conf/``."""
    return project_root() / "conf"


def data_dir() -> Path:
    """The bundled data folder ``data/``."""
    return project_root() / "data"


def cache_dir() -> Path:
    """Where embeddings are cached (``PROUTE_CACHE_DIR`` or ``<root>/.cache``)."""
    env = os.environ.get("PROUTE_CACHE_DIR")
    return Path(env).expanduser() if env else project_root() / ".cache"
