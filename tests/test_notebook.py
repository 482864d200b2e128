"""notebooks/per_user_analysis.ipynb: stored without outputs, and it runs on a tiny trained run."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "per_user_analysis.ipynb"
FIGURES = ("choice_heatmap", "per_user_reward", "per_user_accuracy", "cost_quality")


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code
    for cell in code:
        assert cell["outputs"] == [], "".join(cell["source"])[:80]
        assert cell["execution_count"] is None, "".join(cell["source"])[:80]
    assert "kernelspec" in nb["metadata"]
    first = "".join(code[0]["source"])
    assert "RUN_DIR" in first and "PROUTE_RUN_DIR" in first
    assert "parameters" in code[0]["metadata"].get("tags", [])


def test_notebook_runs_on_a_trained_run(train_cfg, tmp_path, monkeypatch):
    """Train one epoch on the fixtures, point the notebook at it and execute every cell."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from proute.train import run

    run_dir, figures = tmp_path / "run", tmp_path / "figures"
    run(train_cfg("train_epoch=1"), run_dir)
    monkeypatch.setenv("PROUTE_RUN_DIR", str(run_dir))
    monkeypatch.setenv("PROUTE_FIGURE_DIR", str(figures))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # kernel "python3" with argv[0] "python" runs sys.executable, this venv's interpreter
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= len(FIGURES)
    for name in FIGURES:
        assert (figures / f"{name}.png").stat().st_size > 1000, name
    text = "".join(o.get("text", "") for o in outputs)
    assert f"run: {run_dir}" in text
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "TqdmWarning" not in stderr and "IProgress" not in stderr, stderr[:400]
    # the example queries were routed again, and the exported router agrees with the run
    assert any("routed" in o.get("data", {}).get("text/html", "") for o in outputs)
    agree = [line for line in text.splitlines() if line.startswith("the exported router agrees")]
    assert len(agree) == 1
    n_agree, n_total = (int(w) for w in agree[0].split() if w.isdigit())
    assert n_agree == n_total > 0, agree[0]
