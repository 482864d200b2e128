"""Where and how reproducibly a run computes: the device, the seeds, each epoch's seed."""

from __future__ import annotations

import random

import numpy as np
import torch

from proute._deps import import_dgl


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when usable by both torch and DGL, else CPU; ``cuda`` must work."""
    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device={device!r}; expected auto, cpu, cuda or cuda:N")
    if device == "cpu":
        return torch.device("cpu")
    cuda_ok = torch.cuda.is_available()
    dgl_cuda = False
    if cuda_ok:
        dgl = import_dgl()
        try:
            dgl.graph(([0], [0])).to("cuda")
            dgl_cuda = True
        except Exception:  # DGL built without CUDA raises DGLError
            dgl_cuda = False
    if device == "auto":
        return torch.device("cuda" if cuda_ok and dgl_cuda else "cpu")
    if not cuda_ok:
        raise RuntimeError(
            f"device={device} was asked for, but torch {torch.__version__} sees no CUDA device "
            "(torch.cuda.is_available() is False). Use device=cpu or device=auto."
        )
    if not dgl_cuda:
        raise RuntimeError(
            f"device={device} was asked for, but the installed DGL {dgl.__version__} has no "
            "CUDA support (the DGL wheels on PyPI are CPU-only). Install a CUDA build of DGL "
            "matching your torch and CUDA versions from DGL's own wheel index (see "
            "https://www.dgl.ai/pages/start.html; e.g. DGL 2.4 for torch 2.4 + CUDA 12.4), "
            "or use device=cpu."
        )
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's, torch's and DGL's generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    import_dgl().seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s draws in a run seeded ``seed`` (a resumed run repeats them)."""
    return (int(seed) * 1_000_003 + 7919 * (epoch + 1)) % (2**63 - 1)
