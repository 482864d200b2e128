"""Where and how reproducibly a run computes: the device, the seeds, each epoch's seed."""

from __future__ import annotations

import contextlib
import random
from typing import Iterator

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


@contextlib.contextmanager
def single_threaded(enabled: bool = True) -> Iterator[None]:
    """torch and DGL on one thread for the whole block (restored after); a no-op when not
    ``enabled``. ``trainer.deterministic=true`` runs the *whole* run so, data to report:
    building the graph on two threads gave other numbers once scikit-learn was imported
    first (it loads its own OpenMP runtime; a cold embedding cache imports it with the text
    encoder), and the first epoch's loss moved in the 4th digit (2.0903 against 2.0971)."""
    if not enabled:
        yield
        return
    dgl_utils = import_dgl().utils
    threads, dgl_threads = torch.get_num_threads(), dgl_utils.get_num_threads()
    torch.set_num_threads(1)
    dgl_utils.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        dgl_utils.set_num_threads(dgl_threads)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's, torch's and DGL's generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    import_dgl().seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s draws in a run seeded ``seed`` (a resumed run repeats them)."""
    return (int(seed) * 1_000_003 + 7919 * (epoch + 1)) % (2**63 - 1)
