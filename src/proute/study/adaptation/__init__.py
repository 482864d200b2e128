"""New users, feedback and new LLMs without retraining: the experiments.

    python -m proute.study adapt experiment=adapt_new_users --out experiments/new_users
    python -m proute.study adapt experiment=adapt_feedback --out experiments/new_users
    python -m proute.study adapt experiment=adapt_new_llms --out experiments/new_users
    python -m proute.study adapt experiment=adapt_new_users random_state=43 adapt.ks=[0,5]

An experiment is a train config (``conf/experiment/adapt_*.yaml``) with an ``adapt:`` block.
Its routers are trained by :func:`proute.train.run` into ``<out>/runs/`` (a finished run of
the same config is reused): *without* the held-out users or LLMs (the split's
``held_out_rows: none``: no row of theirs, not even a node), and the *reference* trained
with them (``adapt.reference``: overrides on top, ``held_out_rows=all``; null to skip). The
evaluation data is the same split under ``adapt.evaluation``'s overrides (the held-out
users' support queries, the held-out LLMs' val/test rows); every number is
:func:`proute.evaluation.scoring.evaluate` of a router on it.

Protocols: :mod:`~proute.study.adaptation.new_users` (``adapt.part: new_users``) with
:mod:`~proute.study.adaptation.feedback` (when ``adapt.feedback_modes`` or
``adapt.feedback_imputations`` is not empty), and :mod:`~proute.study.adaptation.new_llms`
(``adapt.part: new_llms``). Writes ``<out>/<adapt.name>_s<seed>.json`` / ``.md`` / ``.png``.

The defaults of :class:`~proute.router.PersonalizedRouter`'s adaptation (new-user method,
prior strength, mixture sharpness, feedback imputation: :mod:`proute.router.state`) were
chosen with these experiments on the held-out users' validation pairs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence, cast

from omegaconf import DictConfig, OmegaConf, open_dict

__all__ = ["add_arguments", "main", "run"]

log = logging.getLogger(__name__)
PARTS = ("new_users", "new_llms")


def _compose(overrides: Sequence[str]) -> DictConfig:
    from proute.config import compose

    return compose("train", list(overrides))


def _train_cfg(cfg: DictConfig) -> DictConfig:
    """``cfg`` for :func:`proute.train.run`: its router exported, without the ``adapt`` block
    (so the experiments of one part share their runs), into a directory it may replace."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.adapt, cfg.export_router, cfg.overwrite = None, True, True
    return cfg


def options(cfg: DictConfig) -> dict[str, Any]:
    """The ``adapt`` block of ``cfg`` as a dict (a clear error when there is none)."""
    if cfg.get("adapt") is None:
        raise ValueError(
            "this config has no `adapt:` block; run an adaptation experiment: "
            "experiment=adapt_new_users | adapt_feedback | adapt_new_llms"
        )
    opts = cast(dict, OmegaConf.to_container(cfg.adapt, resolve=True))
    if opts.get("part") not in PARTS:
        raise ValueError(f"adapt.part is {opts.get('part')!r}; expected one of {list(PARTS)}")
    return opts


def run(overrides: Sequence[str], out: str | Path) -> dict[str, Any]:
    """Train (or reuse) the experiment's routers, evaluate, write the results; returns them."""
    from proute.study.adaptation.data import held_out, prepare, train_router  # torch, DGL: on use

    out = Path(out)
    cfg = _compose(overrides)
    opts, seed = options(cfg), int(cfg.random_state)
    part = opts["part"]
    runs = out / "runs"
    router_dir = train_router(_train_cfg(cfg), runs / f"{part}_without_s{seed}")
    data = prepare(_compose([*overrides, *opts.get("evaluation", [])]))
    reference_dir, pool = None, data
    if opts.get("reference") is not None:
        ref_cfg = _compose([*overrides, *opts["reference"]])
        reference_dir = train_router(_train_cfg(ref_cfg), runs / f"{part}_reference_s{seed}")
        pool = prepare(ref_cfg)
    args = (router_dir, data, held_out(data, part), pool, reference_dir, seed)
    results: dict[str, Any] = {"name": opts["name"], "seed": seed, "overrides": list(overrides)}
    results[part] = _evaluate(part, args, opts)
    return write(results, out)


def _evaluate(part: str, args: tuple, opts: dict) -> dict[str, Any]:
    if part == "new_llms":
        from proute.study.adaptation.new_llms import NewLLMInputs, evaluate_new_llms

        return evaluate_new_llms(NewLLMInputs(*args), opts)
    from proute.study.adaptation.feedback import feedback_curves, feedback_variants
    from proute.study.adaptation.new_users import NewUserInputs, evaluate_new_users

    inputs = NewUserInputs(*args)
    res = evaluate_new_users(inputs, opts)
    setting = (res["method"], res["setting"])
    res["feedback"] = feedback_curves(inputs, setting, opts)
    res["feedback_variants"] = feedback_variants(inputs, setting, opts)
    return res


def write(results: dict[str, Any], out: Path) -> dict[str, Any]:
    """``<name>_s<seed>.json`` / ``.md`` / ``.png`` of ``results`` under ``out``."""
    from proute.study.adaptation.report import plot, report

    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{results['name']}_s{results['seed']}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    text = report(results)
    stem.with_suffix(".md").write_text(text)
    plot(results, stem.with_suffix(".png"))
    print(text)
    return results


def add_arguments(parser) -> None:
    parser.add_argument("overrides", nargs="*", help="train overrides, e.g. experiment=adapt_new_users")
    parser.add_argument("--out", type=Path, default=Path("experiments/new_users"), help="results go here")


def main(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run(list(args.overrides), args.out)
    return 0
