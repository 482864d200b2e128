"""Write a Markdown report of training runs: the GNN against the baselines on test.

    python -m proute.study report outputs/study/default/seed42 [more run dirs] [--out report.md]
    python -m proute.study report --latest outputs/train/runs --out outputs/train/report.md

Reads each run's ``metrics.json`` (written by ``python -m proute.train``) and prints, per
run, the overall test metrics of the GNN and of every baseline, and per user the GNN's
reward against the best fixed LLM per user.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("reward", "reward_ratio", "accuracy", "performance", "macro_f1", "disagreement")


def _row(name: str, m: dict) -> str:
    return f"| {name} | " + " | ".join(f"{m.get(c, float('nan')):.4f}" for c in COLUMNS) + " |"


def report(run_dir: Path) -> str:
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; run `python -m proute.train` first")
    m = json.loads(path.read_text())
    test, base = m["test"], m["baselines"]["test"]
    lines = [
        f"## {run_dir}",
        "",
        "Test split (model selected on validation; test evaluated once).",
        "",
        "| router | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
        _row("GNN", test["overall"]),
    ]
    lines += [_row(name, b["overall"]) for name, b in base.items()]
    fixed = base.get("per_user")
    if fixed:
        gain = test["overall"]["reward"] - fixed["overall"]["reward"]
        users = sorted(test["per_user"], key=lambda u: (len(u), u))
        better = [u for u in users if test["per_user"][u]["reward"] > fixed["per_user"][u]["reward"]]
        lines += [
            "",
            f"GNN − best fixed LLM per user: {gain:+.4f} test reward "
            f"({gain / abs(fixed['overall']['reward']):+.1%}); the GNN is better for "
            f"{len(better)} of {len(users)} users.",
            "",
            "| user | GNN accuracy | GNN reward | fixed-LLM reward | oracle reward |",
            "|---|---|---|---|---|",
        ]
        for u in users:
            g, f = test["per_user"][u], fixed["per_user"][u]
            lines.append(
                f"| {u} | {g['accuracy']:.4f} | {g['reward']:.4f} | "
                f"{f['reward']:.4f} | {g['oracle_reward']:.4f} |"
            )
    t = m["timing"]
    lines += [
        "",
        f"Training: {t['epochs']} epochs (best {t['best_epoch']}), "
        f"{t['seconds_per_epoch']:.1f} s/epoch, {t['train_seconds']:.0f} s in all; "
        f"{m['parameters']} parameters.",
        "",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", type=Path, help="run directories")
    parser.add_argument("--latest", type=Path, help="a folder of runs: report the newest finished one in it")
    parser.add_argument("--out", type=Path, help="also write the report to this file")


def main(args: argparse.Namespace) -> int:
    if args.latest:
        finished = sorted(p.parent for p in args.latest.glob("*/metrics.json"))
        if not finished:
            raise SystemExit(f"{args.latest}: no finished run (no */metrics.json)")
        args.runs.append(finished[-1])
    if not args.runs:
        raise SystemExit("python -m proute.study report: give run directories or --latest FOLDER")
    text = "\n".join(report(r) for r in args.runs)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0
