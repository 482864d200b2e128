"""``python -m proute.data [dataset=… users=… split=…]``: summarise a routing dataset.

Prints users, queries, LLMs, tasks, split sizes and, per user, the distribution of best
LLMs; writes ``summary.json``, ``best_llm_share.csv`` and ``best_llm_share.png`` to the
Hydra run directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from proute.config import register_resolvers
from proute.config.paths import config_dir

register_resolvers()


@hydra.main(config_path=str(config_dir()), config_name="data", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from proute.data.pipeline import prepare_from_config
    from proute.data.summary import format_summary, plot_best_llm_share, summarize

    prepared = prepare_from_config(cfg, encode=bool(cfg.encode))
    summary = summarize(prepared)
    print(format_summary(summary, prepared.data.name))
    out = Path(HydraConfig.get().runtime.output_dir)
    share = summary["best_llm_share"]
    assert isinstance(share, pd.DataFrame)
    share.to_csv(out / "best_llm_share.csv")
    plot_best_llm_share(share, out / "best_llm_share.png")
    record = {
        "counts": summary["counts"],
        "timings": prepared.timings,
        "meta": {k: v for k, v in prepared.data.meta.items() if k != "user_profiles"},
    }
    (out / "summary.json").write_text(json.dumps(record, indent=2, default=str))
    print(f"\nwrote {out}/summary.json, best_llm_share.csv, best_llm_share.png")
    return summary["counts"]


if __name__ == "__main__":
    main()
