"""Speed and size of a training run, for ``metrics.json``'s ``timing`` block."""

from __future__ import annotations

import resource
import sys


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def run_timing(history: list[dict], best_epoch: int, rg, data_seconds: float, train_seconds: float) -> dict:
    """Speed and size of a run, from its per-epoch history (a resumed run's too)."""
    epoch_s = [r["train/epoch_seconds"] + r["val/seconds"] for r in history]
    return {
        "data_seconds": data_seconds,
        "train_seconds": train_seconds,
        "epochs": len(history),
        "best_epoch": best_epoch,
        "seconds_per_epoch": float(sum(epoch_s) / max(1, len(history))),
        "train_pairs_per_second": sum(r["train/pairs"] for r in history)
        / max(1e-9, sum(r["train/epoch_seconds"] for r in history)),
        "time_to_best_seconds": float(
            sum(t for r, t in zip(history, epoch_s, strict=True) if r["epoch"] <= best_epoch)
        ),
        "peak_rss_mb": peak_rss_mb(),
        "num_users": rg.num_users,
        "num_query_nodes": rg.num_query_nodes,
        "num_train_edges": rg.num_outcome_edges,
    }
