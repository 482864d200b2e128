"""Package-level promises: a cheap, side-effect-free import and clear dependency errors."""

import subprocess
import sys

import pytest


def test_import_proute_is_cheap_and_offline():
    code = ("import sys, proute; heavy = [m for m in ('torch', 'dgl', 'wandb', 'transformers',"
            " 'socket_connected') if m in sys.modules]; print(heavy, proute.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("[]")


def test_dgl_torch_mismatch_names_both_versions_and_the_fix(monkeypatch):
    import importlib

    import torch

    from proute import _deps

    real = importlib.import_module

    def fake(name, *args, **kwargs):
        if name == "dgl":
            raise FileNotFoundError("Cannot find DGL C++ graphbolt library at .../"
                                    "libgraphbolt_pytorch_2.5.0.so")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(_deps, "_dgl", None)
    monkeypatch.setattr(_deps.importlib, "import_module", fake)
    with pytest.raises(ImportError) as err:
        _deps.import_dgl()
    msg = str(err.value)
    from importlib.metadata import version

    assert f"torch {torch.__version__}" in msg and f"dgl {version('dgl')}" in msg
    assert "make install" in msg and "torch==2.2.1" in msg
