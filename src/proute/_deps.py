"""Guarded imports of the compiled dependencies, with errors that say what to do."""

from __future__ import annotations

import importlib
from types import ModuleType

_dgl: ModuleType | None = None


def import_dgl() -> ModuleType:
    """Import DGL, turning the torch/GraphBolt version mismatch into a clear error.

    DGL 2.1-2.4 loads a compiled GraphBolt library built for the exact installed torch
    version; with any other torch ``import dgl`` fails with a missing-file error.
    """
    global _dgl
    if _dgl is not None:
        return _dgl
    import torch

    try:
        _dgl = importlib.import_module("dgl")
    except Exception as exc:  # FileNotFoundError, ImportError, OSError depending on version
        try:
            from importlib.metadata import version

            dgl_version = version("dgl")
        except Exception:
            dgl_version = "not installed"
        raise ImportError(
            f"proute cannot import DGL (dgl {dgl_version}) with torch {torch.__version__}: "
            f"{type(exc).__name__}: {exc}\n"
            "DGL ships its compiled GraphBolt library only for specific torch versions "
            "(dgl 2.1.0 on PyPI: torch 2.0.0-2.2.1). Install the tested set with "
            "`make install` (torch==2.2.1 dgl==2.1.0 torchdata==0.7.1, see "
            "requirements/constraints.txt), or a DGL CUDA build matching your torch from "
            "DGL's own wheel index."
        ) from exc
    return _dgl
