"""``python -m proute.study COMMAND``: what is made of training runs.

    python -m proute.study aggregate outputs/study --out experiments/results   # the study
    python -m proute.study multirun outputs/sweep_conv/multiruns/<time>        # any multirun
    python -m proute.study report outputs/train/runs/<time> [--out report.md]  # one run
    python -m proute.study adapt experiment=adapt_new_users [--out DIR]       # without retraining

The study's runs come from ``python -m proute.train +sweep=study`` (``make reproduce``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from proute.study import adaptation, multirun, report
from proute.study.aggregate import FIGURE_SEED, aggregate
from proute.study.notebook import export_notebook
from proute.study.runs import finished_runs, plan_of_dir
from proute.study.summary import HEADLINE, write_summary


def aggregate_study(runs_root: Path, out: Path, n_boot: int = 10000, notebook: bool = True) -> int:
    """Tables, figures, ``summary.md`` and (``notebook``) the per-user notebook as HTML from a
    study's sweep directory; 1 when a planned run has not finished or the notebook failed."""
    if not runs_root.is_dir():
        raise SystemExit(f"{runs_root}: not a directory (run `python -m proute.train +sweep=study` first)")
    runs = plan_of_dir(runs_root)
    print(f"study: aggregating {sum(r.state == 'finished' for r in runs)} finished of {len(runs)} runs")
    out.mkdir(parents=True, exist_ok=True)
    nb_run = finished_runs(runs).get(HEADLINE, {}).get(FIGURE_SEED)
    html: str | bool | None = None
    if notebook and nb_run is not None:
        print(f"study: executing the per-user notebook on {nb_run}", flush=True)
        try:
            export_notebook(nb_run, out / "per_user_analysis.html")
            html = "per_user_analysis.html"
        except Exception as exc:  # noqa: BLE001 - reported, and the exit status says so
            print(f"study: the notebook failed: {type(exc).__name__}: {str(exc)[-2000:]}", flush=True)
            html = False
    agg = aggregate(runs, out, n_boot)
    command = f"python -m proute.study aggregate {runs_root} --out {out}"
    summary = write_summary(agg, runs, out, command, html if isinstance(html, str) else None, n_boot)
    print(summary.read_text())
    failed = [r for r in runs if r.state != "finished"]
    for r in failed:
        print(f"study: FAILED {r.name}: {r.error or r.state} (log: {r.dir / 'train.log'})", file=sys.stderr)
    if html is False:
        print("study: FAILED the notebook export", file=sys.stderr)
    return 1 if failed or html is False else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m proute.study", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("aggregate", help="the study's tables, figures, summary.md and notebook")
    p.add_argument("runs", type=Path, help="the study's sweep directory (outputs/study)")
    p.add_argument("--out", type=Path, default=Path("experiments/results"), help="where they go")
    p.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples")
    p.add_argument("--no-notebook", action="store_true", help="do not execute and export the notebook")
    multirun.add_arguments(sub.add_parser("multirun", help=multirun.__doc__.split("\n")[0]))
    report.add_arguments(sub.add_parser("report", help=report.__doc__.split("\n")[0]))
    adaptation.add_arguments(sub.add_parser("adapt", help=adaptation.__doc__.split("\n")[0]))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "aggregate":
        return aggregate_study(args.runs.resolve(), args.out.resolve(), args.bootstrap, not args.no_notebook)
    return {"multirun": multirun.main, "report": report.main, "adapt": adaptation.main}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
