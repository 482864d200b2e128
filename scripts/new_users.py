"""New users and new LLMs without retraining (issue 10, items 1-3): the evaluation.

    python scripts/new_users.py train      # train the four routers (minutes each)
    python scripts/new_users.py evaluate   # add users / LLMs, score, write the report

Protocol (seed 42, ``trainer=minibatch`` defaults):

* **New users** (``experiment=new_users``: 12 archetype users, 20% held out). The router
  ``nu_without`` is trained on the data *without any row of the held-out users* (not their
  support queries, not their val/test rows: nothing about them reaches training or model
  selection). Each held-out user is then placed with :meth:`PersonalizedRouter.add_user`
  from its first k support queries (k = 0, 3, 5, 10), each support query with the outcome
  of every LLM (what ``NewUserSplit`` keeps in the graph), rewards as the user's own
  ``reward`` column. Compared on the held-out users' test pairs with ``nu_full`` (trained
  with those users' full training data, ``users=archetypes``, the same query split), the
  best single LLM of the known users' training rows, and the oracle. The prior strength
  of ``add_user`` is chosen on the held-out users' *validation* pairs.
* **Feedback**: a held-out user starts at k = 0; each event routes one of the user's
  training queries (greedy: to the router's top LLM; exploring: to an LLM drawn from the
  softmax of its scores) and reports the reward of the routed LLM only (bandit feedback),
  or every LLM's (full information), with :meth:`PersonalizedRouter.feedback`; val and
  (greedy) test reward after 0, 5, 10, 20 events. ``--parts feedback_variants`` compares
  the imputations of ``adapt.feedback_imputation``.
* **New LLM** (``split=new_llms`` on the default users): ``nl_without`` is trained without
  any row of the held-out LLM (no node either); it is added with
  :meth:`PersonalizedRouter.add_llm` from its description and prices (and a few outcomes)
  and compared with ``nl_full`` (trained with it) on the test pairs of all users.

Writes ``experiments/new_users/`` (``results.json``, ``results.md``, ``new_users.png``);
trained weights go to ``outputs/new_users/<variant>/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "new_users"
RUNS = ROOT / "outputs" / "new_users"
log = logging.getLogger("new_users")

SUPPORT_MAX = 10
KS = (0, 3, 5, 10)
FEEDBACK_EVENTS = (0, 5, 10, 20)

VARIANTS = {
    # name: (overrides, what to drop)
    "nu_without": (["experiment=new_users", f"split.support_queries={SUPPORT_MAX}"], "new_users"),
    "nu_full": (["users=archetypes"], None),
    "nl_without": (["split=new_llms"], "new_llms"),
    "nl_full": ([], None),
}


def compose(overrides: list[str], seed: int):
    from proute.config import compose as _compose

    base = ["logger=none", "quiet=true", f"random_state={seed}", "export_router=false"]
    return _compose("train", base + overrides)


def prepare(variant: str, seed: int):
    """The prepared data of ``variant`` (held-out users / LLMs dropped for ``*_without``)
    and the full prepared data it came from."""
    from proute.data.pipeline import prepare_from_config
    from proute.data.table import RoutingData

    overrides, drop = VARIANTS[variant]
    cfg = compose(overrides, seed)
    full = prepare_from_config(cfg)
    meta = full.data.meta.get("split", {})
    table = full.table
    prepared = full
    if drop == "new_users":
        held = [u for u in table["user_id"].unique() if str(u) in set(meta["new_users"])]
        keep = ~table["user_id"].isin(held)
        prepared = _replace(
            full,
            RoutingData(
                table[keep].reset_index(drop=True),
                full.data.llms,
                full.data.tasks,
                full.data.name,
                full.data.meta,
            ),
        )
    elif drop == "new_llms":
        held = list(meta["new_llms"])
        keep = ~table["llm"].isin(held)
        llms = full.data.llms[~full.data.llms.index.isin(held)]
        data = RoutingData(
            table[keep].reset_index(drop=True), llms, full.data.tasks, full.data.name, full.data.meta
        )
        prepared = _replace(full, data, llm_rows=~full.data.llms.index.isin(held))
    return cfg, prepared, full


def _replace(prepared, data, llm_rows=None):
    from proute.data.pipeline import PreparedData

    llm_emb = prepared.llm_emb if llm_rows is None else prepared.llm_emb[np.asarray(llm_rows)]
    return PreparedData(
        data, prepared.query_ids, prepared.query_emb, prepared.task_emb, llm_emb, dict(prepared.timings)
    )


def train(variant: str, seed: int) -> None:
    from hydra.utils import instantiate
    from safetensors.torch import save_file

    from proute.train import build_graph_from
    from proute.training.trainer import seed_everything

    cfg, prepared, _ = prepare(variant, seed)
    seed_everything(seed)
    rg = build_graph_from(prepared, cfg.graph)
    model = instantiate(cfg.model)(rg)
    trainer = instantiate(cfg.trainer)
    masking = instantiate(cfg.masking)
    run_dir = RUNS / f"{variant}_s{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    trainer.fit(
        model, rg, masking, torch.Generator().manual_seed(seed), quiet=True, run_dir=run_dir, seed=seed
    )
    seconds = time.perf_counter() - t0
    val = trainer.evaluate(model, rg, "val")
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(run_dir / "weights.safetensors")
    )
    info = {
        "variant": variant,
        "seed": seed,
        "best_epoch": trainer.best_epoch,
        "train_seconds": seconds,
        "val_reward": val["overall"]["reward"],
        "graph": repr(rg),
    }
    (run_dir / "info.json").write_text(json.dumps(info, indent=2))
    log.info("%s: %s", variant, info)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["train", "evaluate"])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--parts",
        nargs="*",
        default=["new_users", "new_llms"],
        help="also: feedback_variants (bandit feedback)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.stage == "train":
        for v in args.variants:
            train(v, args.seed)
    else:
        evaluate(args.seed, args.parts)


SHARPNESS_GRID = (3.0, 10.0, 30.0, 100.0)  # new_user_method="mixture"
PRIOR_GRID = (1.0, 10.0)  # new_user_method="fit"


def trained_router(variant: str, seed: int):
    """``(router, cfg, prepared, full)``: the variant's weights exported as a router."""
    from hydra.utils import instantiate
    from safetensors.torch import load_file

    from proute.train import build_graph_from
    from proute.training.export import export_router

    cfg, prepared, full = prepare(variant, seed)
    rg = build_graph_from(prepared, cfg.graph)
    model = instantiate(cfg.model)(rg)
    model.load_state_dict(load_file(str(RUNS / f"{variant}_s{seed}" / "weights.safetensors")))
    router = export_router(model, rg, prepared, cfg, {})
    return router, cfg, prepared, full


def block(full, cfg, split: str, users=None):
    """``(pairs, dense, query_emb)`` of ``split`` (only ``users`` when given), LLM columns in
    the full data's order."""
    from proute.train import build_graph_from

    rg = build_graph_from(full, cfg.graph)
    pairs, dense = rg.split_block(split)
    if users is not None:
        sel = pairs["user_id"].isin(users).to_numpy()
        pairs, dense = pairs[sel].reset_index(drop=True), {k: v[sel] for k, v in dense.items()}
    emb = full.query_embedding_dict()
    return pairs, dense, np.stack([emb[str(q)] for q in pairs["query_id"]]), list(rg.llms)


def metrics_of(scores, pairs, dense, llms):
    from proute.evaluation.metrics import routing_metrics

    m = routing_metrics(
        scores, dense["reward"], dense["performance"], dense["cost"], dense["observed"], pairs, llms
    )
    return {
        "reward": m["overall"]["reward"],
        "oracle": m["overall"]["oracle_reward"],
        "per_user": {u: v["reward"] for u, v in m["per_user"].items()},
        "picks": m["picks"]["llm"].value_counts().to_dict(),
    }


def router_scores(router, pairs, emb, llms):
    """The router's scores of the pairs (tasks given), columns in ``llms`` order (an LLM it
    does not know: -inf)."""
    s, _ = router.score(None, list(pairs["user_id"]), list(pairs["task"].astype(str)), query_emb=emb)
    out = np.full((len(pairs), len(llms)), -np.inf)
    for j, m in enumerate(llms):
        if m in router.llms:
            out[:, j] = s[:, router.llms.index(m)]
    return out


def best_single(train_rows, llms):
    mean = train_rows.groupby("llm", observed=True)["reward"].mean()
    return str(mean.idxmax())


def one_hot(n, llms, name):
    s = np.full((n, len(llms)), -1.0)
    s[:, llms.index(name)] = 1.0
    return s


def support_of(full, user, seed: int) -> list[tuple[str, str, list[dict]]]:
    """The user's support queries in a seeded order: ``(query_id, task, [interactions])``."""
    t = full.table
    rows = t[(t["user_id"] == user) & (t["split"] == "train")]
    emb = full.query_embedding_dict()
    qids = sorted(rows["query_id"].astype(str).unique())
    qids = [qids[i] for i in np.random.default_rng(seed).permutation(len(qids))]
    out = []
    for q in qids:
        r = rows[rows["query_id"].astype(str) == q]
        task = str(r["task"].iloc[0])
        out.append(
            (
                q,
                task,
                [
                    {"query_emb": emb[q], "task": task, "llm": str(m), "reward": float(w)}
                    for m, w in zip(r["llm"], r["reward"], strict=True)
                ],
            )
        )
    return out


def new_users(seed: int) -> dict:
    import tempfile

    from proute.router import PersonalizedRouter

    router, cfg, prepared, full = trained_router("nu_without", seed)
    held = [u for u in full.table["user_id"].unique() if str(u) in set(full.data.meta["split"]["new_users"])]
    tmp = Path(tempfile.mkdtemp(prefix="new_users_"))
    router.save(tmp / "router")
    val = block(full, cfg, "val", held)
    test = block(full, cfg, "test", held)
    support = {u: support_of(full, u, seed) for u in held}
    res: dict = {"held_out_users": [str(u) for u in held], "test_pairs": len(test[0])}

    def placed(k: int, method: str, value: float):
        r = PersonalizedRouter.load(tmp / "router")
        r.new_user_method = method
        if method == "fit":
            r.prior_strength = value
        else:
            r.meta["adapt"]["mixture_sharpness"] = value
        t0 = time.perf_counter()
        for u in held:
            r.add_user(u, [it for _, _, its in support[u][:k] for it in its])
        return r, (time.perf_counter() - t0) / len(held)

    grid = {}
    settings = [("mixture", b) for b in SHARPNESS_GRID] + [("fit", c) for c in PRIOR_GRID]
    for method, value in settings:
        for k in KS:
            r, sec = placed(k, method, value)
            g = grid[(method, value, k)] = {
                "val": metrics_of(router_scores(r, val[0], val[2], val[3]), val[0], val[1], val[3])["reward"],
                "test": metrics_of(router_scores(r, test[0], test[2], test[3]), test[0], test[1], test[3]),
                "seconds_per_user": sec,
            }
            log.info(
                "%s %.1f k=%d: val %.4f test %.4f (%.2fs/user)",
                method,
                value,
                k,
                g["val"],
                g["test"]["reward"],
                sec,
            )
    method, value = max(settings, key=lambda mv: np.mean([grid[(*mv, k)]["val"] for k in KS]))
    res["method"], res["setting"] = method, value
    res["grid"] = [
        {
            "method": m,
            "setting": v,
            "k": k,
            "val_reward": g["val"],
            "test_reward": g["test"]["reward"],
            "seconds_per_user": g["seconds_per_user"],
        }
        for (m, v, k), g in grid.items()
    ]
    full_router, fcfg, fprep, ffull = trained_router("nu_full", seed)
    pairs, dense, emb, llms = test
    trained_m = metrics_of(router_scores(full_router, pairs, emb, llms), pairs, dense, llms)
    best = best_single(prepared.table[prepared.table["split"] == "train"], llms)
    best_m = metrics_of(one_hot(len(pairs), llms, best), pairs, dense, llms)
    oracle = trained_m["oracle"]
    res["trained_with_them"] = trained_m["reward"]
    res["best_single_llm"] = {"llm": best, "reward": best_m["reward"]}
    res["oracle"] = oracle
    res["k"] = []
    for k in KS:
        g = grid[(method, value, k)]
        res["k"].append(
            {
                "k": k,
                "reward": g["test"]["reward"],
                "of_trained": g["test"]["reward"] / trained_m["reward"],
                "of_oracle": g["test"]["reward"] / oracle,
                "per_user": g["test"]["per_user"],
                "seconds_per_user": g["seconds_per_user"],
                "picks": g["test"]["picks"],
            }
        )
    # unknown_user="average" (no add_user): the same as k = 0 by construction; check
    r, _ = placed(0, method, value)
    r.unknown_user = "average"
    unknown = pairs.assign(user_id=[f"unknown-{u}" for u in pairs["user_id"]])
    res["average_policy_reward"] = metrics_of(router_scores(r, unknown, emb, llms), pairs, dense, llms)[
        "reward"
    ]
    # feedback: start from nothing, route the user's training queries and report the routed
    # LLM's reward (bandit) or every LLM's (full information, as a support query)
    pool = {u: support_of(ffull, u, seed + 7) for u in held}
    for mode, key, explore in (
        ("bandit", "feedback", False),
        ("bandit", "feedback_explore", True),
        ("full", "feedback_full", False),
    ):
        curve, sec = feedback_curve(
            lambda: placed(0, method, value)[0], held, pool, val, test, mode, explore, seed
        )
        res[key] = curve
        res[f"{key}_seconds_per_call"] = sec
    res["feedback_bandit_seconds_per_call"] = res["feedback_seconds_per_call"]
    res["feedback_seconds_per_event"] = res["feedback_bandit_seconds_per_call"]
    return res


def feedback_curve(make, held, pool, val, test, mode: str, explore: bool = False, seed: int = 0):
    """Val and test reward of the held-out users after 0, 5, 10, 20 feedback events each
    (a router from ``make()``, the users added with no interactions). Each event is the
    user's next query of ``pool``, routed by the router's scores (greedy, or with
    ``explore`` an LLM drawn from the softmax of its scores), and reports that LLM's reward
    (``bandit``) or every LLM's (``full``). ``(curve, seconds per feedback call)``."""
    r = make()
    rng = np.random.default_rng(seed)
    curve, done, t_fb, calls = [], 0, 0.0, 0
    for n in FEEDBACK_EVENTS:
        while done < n:
            for u in held:
                _, task, its = pool[u][done]
                emb_q = its[0]["query_emb"]
                observed = {it["llm"]: it["reward"] for it in its}
                if mode == "bandit":
                    s, _ = r.score(None, [u], [task], query_emb=emb_q[None])
                    cand = [j for j, m in enumerate(r.llms) if m in observed]
                    if explore:
                        p = np.exp(s[0, cand] - s[0, cand].max())
                        chosen = [r.llms[cand[rng.choice(len(cand), p=p / p.sum())]]]
                    else:
                        chosen = [r.llms[max(cand, key=lambda j: s[0, j])]]
                else:
                    chosen = list(observed)
                for llm in chosen:
                    t1 = time.perf_counter()
                    r.feedback(u, emb_q, llm, {"reward": observed[llm], "task": task})
                    t_fb += time.perf_counter() - t1
                    calls += 1
            done += 1
        v = metrics_of(router_scores(r, val[0], val[2], val[3]), val[0], val[1], val[3])["reward"]
        m = metrics_of(router_scores(r, test[0], test[2], test[3]), test[0], test[1], test[3])
        curve.append({"events": n, "val_reward": v, "reward": m["reward"], "per_user": m["per_user"]})
        log.info(
            "feedback (%s%s) %d: val %.4f test %.4f", mode, "+explore" if explore else "", n, v, m["reward"]
        )
    return curve, t_fb / max(1, calls)


FEEDBACK_VARIANTS = {
    # name: (router meta adapt.feedback_imputation, explore)
    "own": ("own", False),
    "population": ("population", False),
    "own+explore": ("own", True),
    "population+explore": ("population", True),
}


def feedback_variants(seed: int, names=None) -> dict:
    """Bandit feedback under each way of treating the LLMs an event did not observe
    (``adapt.feedback_imputation``), greedy or exploring event routing, with the new-user
    method chosen in results_s<seed>.json and with ``fit``."""
    import tempfile

    from proute.router import PersonalizedRouter

    chosen = json.loads((OUT / f"results_s{seed}.json").read_text())["new_users"]
    method, value = chosen["method"], chosen["setting"]
    router, cfg, prepared, full = trained_router("nu_without", seed)
    _, _, _, ffull = trained_router("nu_full", seed)
    held = [u for u in full.table["user_id"].unique() if str(u) in set(full.data.meta["split"]["new_users"])]
    tmp = Path(tempfile.mkdtemp(prefix="feedback_"))
    router.save(tmp / "router")
    val, test = block(full, cfg, "val", held), block(full, cfg, "test", held)
    pool = {u: support_of(ffull, u, seed + 7) for u in held}
    out = {"method": method, "setting": value}
    for name in names or FEEDBACK_VARIANTS:
        imputation, explore = FEEDBACK_VARIANTS[name]
        for m in dict.fromkeys([method, "fit"]):

            def make(m=m, imputation=imputation):
                r = PersonalizedRouter.load(tmp / "router")
                r.new_user_method = m
                if m == "fit":
                    r.prior_strength = value if method == "fit" else 1.0
                else:
                    r.meta["adapt"]["mixture_sharpness"] = value
                r.meta["adapt"]["feedback_imputation"] = imputation
                for u in held:
                    r.add_user(u, [])
                return r

            curve, sec = feedback_curve(make, held, pool, val, test, "bandit", explore, seed)
            out[f"{name} ({m})"] = {"curve": curve, "seconds_per_call": sec}
            path = OUT / f"feedback_variants_s{seed}.json"
            path.write_text(json.dumps(out, indent=2, default=str))
    return out


def new_llms(seed: int, n_outcome_queries: int = 10) -> dict:
    import tempfile

    from proute.router import PersonalizedRouter

    router, cfg, prepared, full = trained_router("nl_without", seed)
    tmp = Path(tempfile.mkdtemp(prefix="new_llms_"))
    router.save(tmp / "router")
    held = list(full.data.meta["split"]["new_llms"])
    full_router, fcfg, fprep, ffull = trained_router("nl_full", seed)
    pairs, dense, emb, llms = block(ffull, fcfg, "test")
    oracle_m = metrics_of(np.where(dense["observed"], dense["reward"], -np.inf), pairs, dense, llms)
    trained_m = metrics_of(router_scores(full_router, pairs, emb, llms), pairs, dense, llms)
    without_m = metrics_of(router_scores(router, pairs, emb, llms), pairs, dense, llms)
    res = {
        "held_out_llms": held,
        "trained_with_it": trained_m["reward"],
        "without_it": without_m["reward"],
        "oracle": oracle_m["reward"],
        "trained_picks": trained_m["picks"],
    }
    llm_table = ffull.data.llms
    t = ffull.table
    qemb = ffull.query_embedding_dict()
    for label, n_q in (("description", 0), (f"description+{n_outcome_queries}_queries", n_outcome_queries)):
        r = PersonalizedRouter.load(tmp / "router")
        for name in held:
            rows = t[(t["llm"] == name) & (t["split"] == "train")]
            qids = sorted(rows["query_id"].astype(str).unique())
            pick = (
                set(np.random.default_rng(seed).choice(qids, size=min(n_q, len(qids)), replace=False))
                if n_q
                else set()
            )
            sel = rows[rows["query_id"].astype(str).isin(pick)]
            outcomes = [
                {"query_emb": qemb[str(q)], "task": str(tk), "user_id": u, "reward": float(w)}
                for q, tk, u, w in zip(
                    sel["query_id"], sel["task"], sel["user_id"], sel["reward"], strict=True
                )
            ]
            info = llm_table.loc[name]
            r.add_llm(
                name,
                str(info["description"]),
                float(info["input_price"]),
                float(info["output_price"]),
                family=str(info["family"]),
                outcomes=outcomes,
            )
        m = metrics_of(router_scores(r, pairs, emb, llms), pairs, dense, llms)
        res[label] = {
            "reward": m["reward"],
            "of_trained": m["reward"] / trained_m["reward"],
            "of_oracle": m["reward"] / oracle_m["reward"],
            "picks": m["picks"],
            "outcomes": len(outcomes),
        }
        log.info(
            "new LLM %s: %.4f (trained %.4f, without %.4f)",
            label,
            m["reward"],
            trained_m["reward"],
            without_m["reward"],
        )
    return res


def evaluate(seed: int, parts=("new_users", "new_llms")) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"results_s{seed}.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    res["seed"] = seed
    for part in parts:  # one part at a time keeps the other's last results
        res[part] = {"new_users": new_users, "new_llms": new_llms, "feedback_variants": feedback_variants}[
            part
        ](seed)
        path.write_text(json.dumps(res, indent=2, default=str))
    res["train_info"] = {
        v: json.loads((RUNS / f"{v}_s{seed}" / "info.json").read_text())
        for v in VARIANTS
        if (RUNS / f"{v}_s{seed}" / "info.json").exists()
    }
    path.write_text(json.dumps(res, indent=2, default=str))
    md = report(res)
    (OUT / f"results_s{seed}.md").write_text(md)
    plot(res)
    print(md)


def _pct(a: float, b: float) -> str:
    return f"{100 * a / b:.1f}%"


def report(res: dict) -> str:
    nu, nl = res["new_users"], res.get("new_llms", {})
    tw, oracle, best = nu["trained_with_them"], nu["oracle"], nu["best_single_llm"]
    lines = [
        f"# New users and new LLMs without retraining (seed {res['seed']})",
        "",
        f"Held-out users {nu['held_out_users']} ({nu['test_pairs']} test pairs); the router was "
        f"trained without any of their rows; `add_user` method {nu['method']!r}, setting "
        f"{nu['setting']} (chosen on their val pairs among the grid in results.json).",
        "",
        "| k support queries | test reward | % of trained with them | % of oracle | add_user s/user |",
        "|---|---|---|---|---|",
    ]
    for r in nu["k"]:
        lines.append(
            f"| {r['k']} | {r['reward']:.4f} | {_pct(r['reward'], tw)} | {_pct(r['reward'], oracle)} "
            f"| {r['seconds_per_user']:.2f} |"
        )
    lines += [
        f"| router trained with them | {tw:.4f} | 100% | {_pct(tw, oracle)} | |",
        f"| best single LLM ({best['llm']}) | {best['reward']:.4f} | {_pct(best['reward'], tw)} "
        f"| {_pct(best['reward'], oracle)} | |",
        f"| oracle | {oracle:.4f} | | 100% | |",
        "",
        f'`unknown_user="average"` (no add_user): {nu["average_policy_reward"]:.4f}.',
        "",
        "Feedback from k = 0: each event is one of the user's training queries; bandit: the "
        "routed LLM's reward only; full information: every LLM's reward (as a support query):",
        "",
        "| feedback events per user | test reward | % of trained |",
        "|---|---|---|",
    ]
    curves = {
        "bandit, greedy": nu["feedback"],
        "bandit, exploring": nu.get("feedback_explore", []),
        "full information": nu.get("feedback_full", []),
    }
    curves = {k: {r["events"]: r for r in v} for k, v in curves.items() if v}
    lines[-2:] = [
        "| events per user | " + " | ".join(f"{k}: val / test (% of trained)" for k in curves) + " |",
        "|---|" + "---|" * len(curves),
    ]
    for n in [r["events"] for r in nu["feedback"]]:
        cells = []
        for c in curves.values():
            r = c.get(n)
            v = "" if r is None or "val_reward" not in r else f"{r['val_reward']:.4f} / "
            cells.append("" if r is None else f"{v}{r['reward']:.4f} ({_pct(r['reward'], tw)})")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    fv = res.get("feedback_variants")
    if fv:
        lines += [
            "",
            "Bandit feedback variants (`adapt.feedback_imputation`; val / test reward after n events):",
            "",
            "| variant (method) | " + " | ".join(str(n) for n in FEEDBACK_EVENTS) + " |",
            "|---|" + "---|" * len(FEEDBACK_EVENTS),
        ]
        for name, v in fv.items():
            if isinstance(v, dict) and "curve" in v:
                cells = [f"{c['val_reward']:.4f} / {c['reward']:.4f}" for c in v["curve"]]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"feedback: {nu['feedback_seconds_per_event']:.3f} s per event.", ""]
    if "new_llms" not in res:
        return "\n".join(lines)
    lines += [
        f"New LLMs {nl['held_out_llms']} (`split=new_llms`, default users), test reward over all users:",
        "",
        "| router | test reward | % of trained with it | % of oracle |",
        "|---|---|---|---|",
    ]
    tl, ol = nl["trained_with_it"], nl["oracle"]
    for key, v in nl.items():
        if isinstance(v, dict) and "of_trained" in v:
            lines.append(
                f"| add_llm from {key} | {v['reward']:.4f} | {_pct(v['reward'], tl)} "
                f"| {_pct(v['reward'], ol)} |"
            )
    lines += [
        f"| trained with it | {tl:.4f} | 100% | {_pct(tl, ol)} |",
        f"| trained without it (not a candidate) | {nl['without_it']:.4f} | {_pct(nl['without_it'], tl)} "
        f"| {_pct(nl['without_it'], ol)} |",
        f"| oracle | {ol:.4f} | | 100% |",
        "",
    ]
    return "\n".join(lines)


def plot(res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nu = res["new_users"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ks = [r["k"] for r in nu["k"]]
    ax[0].plot(ks, [r["reward"] for r in nu["k"]], "o-", label="add_user (k support queries)")
    for y, name, style in (
        (nu["trained_with_them"], "trained with them", "--"),
        (nu["best_single_llm"]["reward"], "best single LLM", ":"),
        (nu["oracle"], "oracle", "-."),
    ):
        ax[0].axhline(y, ls=style, color="gray", label=name)
    ax[0].set_xlabel("k"), ax[0].set_ylabel("held-out users' test reward"), ax[0].legend(fontsize=8)
    for key, label in (
        ("feedback", "bandit, greedy"),
        ("feedback_explore", "bandit, exploring"),
        ("feedback_full", "full information"),
    ):
        if nu.get(key):
            ax[1].plot([r["events"] for r in nu[key]], [r["reward"] for r in nu[key]], "o-", label=label)
    ax[1].axhline(nu["trained_with_them"], ls="--", color="gray", label="trained with them")
    ax[1].axhline(nu["best_single_llm"]["reward"], ls=":", color="gray", label="best single LLM")
    ax[1].set_xlabel("feedback events per user"), ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / f"new_users_s{res['seed']}.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main())
