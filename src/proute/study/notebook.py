"""notebooks/per_user_analysis.ipynb executed on one run and written as HTML."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from proute.config.paths import project_root


def notebook_path() -> Path:
    return project_root() / "notebooks" / "per_user_analysis.ipynb"


def export_notebook(run_dir: Path, html: Path, timeout: int = 1200) -> None:
    """Execute the per-user notebook on ``run_dir`` (``PROUTE_RUN_DIR``) and write it as HTML."""
    # Heavy and optional (the notebook extra): imported only when a notebook is exported.
    import nbclient
    import nbformat
    from nbconvert import HTMLExporter

    notebook = notebook_path()
    nb = nbformat.read(notebook, as_version=4)
    saved = {k: os.environ.get(k) for k in ("PROUTE_RUN_DIR", "PROUTE_FIGURE_DIR", "OMP_NUM_THREADS")}
    with tempfile.TemporaryDirectory() as figures:
        os.environ.update(PROUTE_RUN_DIR=str(run_dir), PROUTE_FIGURE_DIR=figures, OMP_NUM_THREADS="1")
        try:
            client = nbclient.NotebookClient(
                nb,
                kernel_name="python3",
                timeout=timeout,
                resources={"metadata": {"path": str(notebook.parent)}},
            )
            client.execute()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    body, _ = HTMLExporter().from_notebook_node(nb)
    html.write_text(body, encoding="utf-8")
