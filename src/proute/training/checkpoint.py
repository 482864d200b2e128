"""Training checkpoints: the whole trainer state after an epoch, written atomically.

``<run_dir>/checkpoint/`` holds ``state.safetensors`` (model, best-validation weights and
optimizer tensors) and ``trainer.json`` (epoch, history, early-stopping counters, the
optimizer's non-tensor state). Nothing is pickled (docs/DESIGN.md §8: ``torch.load`` of a
crafted file can run code on torch < 2.6).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for idx, per_param in state["state"].items():
        for name, v in per_param.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{name}"] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for key, v in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


class Checkpoint:
    """The trainer's state after an epoch, in ``<dir>/checkpoint/`` (``state.safetensors``:
    model, best-validation weights and optimizer tensors; ``trainer.json``: epoch, history,
    early-stopping counters). Written to a temporary folder and renamed into place, so a
    run killed while writing keeps the previous checkpoint."""

    NAME = "checkpoint"

    def __init__(self, run_dir: str | os.PathLike):
        self.dir = Path(run_dir) / self.NAME

    def exists(self) -> bool:
        return (self.dir / "trainer.json").is_file() and (self.dir / "state.safetensors").is_file()

    def save(self, model, opt, best_state, trainer_state: dict) -> None:
        from safetensors.torch import save_file

        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        if best_state is not None:
            tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best_state.items()})
        opt_tensors, opt_meta = _flatten_optimizer(opt.state_dict())
        tensors.update(opt_tensors)
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.dir.with_name(f".{self.NAME}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "trainer.json").write_text(json.dumps({**trainer_state, "optimizer": opt_meta}, indent=1))
        old = self.dir.with_name(f".{self.NAME}.old")
        shutil.rmtree(old, ignore_errors=True)
        if self.dir.exists():
            self.dir.rename(old)
        tmp.rename(self.dir)
        shutil.rmtree(old, ignore_errors=True)

    def load(self, model, opt) -> tuple[dict | None, dict]:
        """Restore ``model`` and ``opt``; return ``(best_state, trainer_state)`` (the dict given
        to :meth:`save`)."""
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(self.dir / "state.safetensors"))
            meta = json.loads((self.dir / "trainer.json").read_text())
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem
            raise ValueError(f"{self.dir}: unreadable checkpoint ({exc}); delete it to start over") from exc
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
        opt.load_state_dict(_unflatten_optimizer(tensors, meta.pop("optimizer")))
        return best, meta
