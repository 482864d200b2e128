"""What a researcher checks first about a routing dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from proute.data.pipeline import PreparedData
from proute.data.splits import split_sizes
from proute.data.table import USER_COLUMN, best_mask


def best_llm_distribution(table: pd.DataFrame) -> pd.DataFrame:
    """Per user, the share of their queries on which each LLM is the best.

    A (user, query) with k tied best LLMs gives 1/k to each, so every row sums to 1.
    """
    best = table[best_mask(table)]
    key = [USER_COLUMN, "query_id"]
    weight = 1.0 / best.groupby(key)["llm"].transform("size")
    dist = best.assign(w=weight).pivot_table(
        index=USER_COLUMN, columns="llm", values="w", aggfunc="sum", fill_value=0.0
    )
    n = table.groupby(USER_COLUMN)["query_id"].nunique()
    return dist.div(n, axis=0)


def summarize(prepared: PreparedData) -> dict[str, pd.DataFrame | dict]:
    table = prepared.table
    counts = {
        "rows": len(table),
        "users": table[USER_COLUMN].nunique(),
        "queries": table["query_id"].nunique(),
        "user_queries": len(table.drop_duplicates([USER_COLUMN, "query_id"])),
        "llms": table["llm"].nunique(),
        "tasks": table["task"].nunique(),
        "missing_observations": int(
            len(table.drop_duplicates([USER_COLUMN, "query_id"])) * table["llm"].nunique() - len(table)
        ),
    }
    best = best_mask(table)
    ties = table[best].groupby([USER_COLUMN, "query_id"]).size()
    counts["tied_best_share"] = float((ties > 1).mean())
    per_user = pd.DataFrame(
        {
            "queries": table.groupby(USER_COLUMN)["query_id"].nunique(),
            "oracle_reward": table[best]
            .drop_duplicates([USER_COLUMN, "query_id"])
            .groupby(USER_COLUMN)["reward"]
            .mean(),
            "mean_reward": table.groupby(USER_COLUMN)["reward"].mean(),
        }
    )
    out: dict[str, pd.DataFrame | dict] = {
        "counts": counts,
        "tasks": table.drop_duplicates("query_id").groupby("task").size().rename("queries").to_frame(),
        "per_user": per_user,
        "best_llm_share": best_llm_distribution(table),
    }
    if "split" in table.columns:
        out["splits"] = split_sizes(table)
    return out


def format_summary(summary: dict, name: str = "") -> str:
    lines = [f"== {name}" if name else "== dataset"]
    lines += [
        f"{k:>22}: {v:.3f}" if isinstance(v, float) else f"{k:>22}: {v}" for k, v in summary["counts"].items()
    ]
    with pd.option_context(
        "display.width", 200, "display.max_columns", 50, "display.float_format", "{:.3f}".format
    ):
        for key in ("splits", "tasks", "per_user", "best_llm_share"):
            if key in summary:
                lines += ["", f"-- {key}", str(summary[key])]
    return "\n".join(lines)


def plot_best_llm_share(share: pd.DataFrame, path: Path) -> Path:
    """Heat map of :func:`best_llm_distribution` (users × LLMs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * share.shape[1], 1.2 + 0.35 * share.shape[0]))
    im = ax.imshow(share.to_numpy(), cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(np.arange(share.shape[1]), share.columns, rotation=45, ha="right")
    ax.set_yticks(np.arange(share.shape[0]), [str(u) for u in share.index])
    ax.set_xlabel("LLM")
    ax.set_ylabel("user")
    ax.set_title("Share of each user's queries on which the LLM is best")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
