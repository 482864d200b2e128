"""The Markdown report and the figure of an adaptation experiment's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FEEDBACK_LABELS = {
    "bandit": "bandit, greedy",
    "bandit_explore": "bandit, exploring",
    "full": "full information",
}


def _pct(a: float | None, b: float | None) -> str:
    return "" if a is None or not b else f"{100 * a / b:.1f}%"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def report(res: dict[str, Any]) -> str:
    """The report of ``results.json``'s content (either part)."""
    head = [
        f"# {res['name']}: without retraining (seed {res['seed']})",
        "",
        f"`python -m proute.study adapt {' '.join(res['overrides'])}`",
        "",
    ]
    body = new_users_report(res["new_users"]) if "new_users" in res else new_llms_report(res["new_llms"])
    return "\n".join(head + body) + "\n"


def new_users_report(nu: dict[str, Any]) -> list[str]:
    tw, oracle, best = nu["trained_with_them"], nu["oracle"], nu["best_single_llm"]
    lines = [
        f"Held-out users {nu['held_out_users']} ({nu['test_pairs']} test pairs); the router was "
        f"trained without any of their rows; `add_user` method {nu['method']!r}, setting "
        f"{nu['setting']} (chosen on their val pairs among the grid in the JSON).",
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
        f"| router trained with them | {_num(tw)} | 100% | {_pct(tw, oracle)} | |",
        f"| best single LLM ({best['llm']}) | {best['reward']:.4f} | {_pct(best['reward'], tw)} "
        f"| {_pct(best['reward'], oracle)} | |",
        f"| oracle | {oracle:.4f} | | 100% | |",
        "",
        f'`unknown_user="average"` (no add_user): {nu["average_policy_reward"]:.4f}.',
        "",
    ]
    return (
        lines + feedback_report(nu.get("feedback") or {}, tw) + variants_report(nu.get("feedback_variants"))
    )


def feedback_report(fb: dict[str, Any], trained: float | None) -> list[str]:
    curves = {m: {r["events"]: r for r in fb[m]} for m in FEEDBACK_LABELS if fb.get(m)}
    if not curves:
        return []
    events = sorted({n for c in curves.values() for n in c})
    lines = [
        "Feedback from k = 0 (each event one of the user's training queries; bandit: the routed "
        "LLM's reward only; full information: every LLM's):",
        "",
        "| events per user | "
        + " | ".join(f"{FEEDBACK_LABELS[m]}: val / test (% of trained)" for m in curves)
        + " |",
        "|---|" + "---|" * len(curves),
    ]
    for n in events:
        cells = []
        for c in curves.values():
            r = c.get(n)
            cells.append(
                ""
                if r is None
                else f"{r['val_reward']:.4f} / {r['reward']:.4f} ({_pct(r['reward'], trained)})"
            )
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    per_call = [f"{FEEDBACK_LABELS[m]} {fb[f'{m}_seconds_per_call']:.3f} s" for m in curves]
    return lines + ["", "feedback per call: " + ", ".join(per_call) + ".", ""]


def variants_report(fv: dict[str, Any] | None) -> list[str]:
    if not fv:
        return []
    events = [c["events"] for c in next(iter(fv.values()))["curve"]]
    lines = [
        "Bandit feedback variants (`adapt.feedback_imputation`; val / test reward after n events):",
        "",
        "| variant (method) | " + " | ".join(str(n) for n in events) + " |",
        "|---|" + "---|" * len(events),
    ]
    for name, v in fv.items():
        cells = [f"{c['val_reward']:.4f} / {c['reward']:.4f}" for c in v["curve"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def new_llms_report(nl: dict[str, Any]) -> list[str]:
    tl, ol, wo = nl["trained_with_it"], nl["oracle"], nl["without_it"]
    lines = [
        f"New LLMs {nl['held_out_llms']} (trained without any row of theirs), test reward over all users:",
        "",
        "| router | test reward | % of trained with it | % of oracle |",
        "|---|---|---|---|",
    ]
    for v in nl["added"]:
        how = "description" + (f" + {v['outcome_queries']} outcome queries" if v["outcome_queries"] else "")
        lines.append(
            f"| add_llm from {how} | {v['reward']:.4f} | {_pct(v['reward'], tl)} | {_pct(v['reward'], ol)} |"
        )
    return lines + [
        f"| trained with it | {_num(tl)} | 100% | {_pct(tl, ol)} |",
        f"| trained without it (not a candidate) | {wo:.4f} | {_pct(wo, tl)} | {_pct(wo, ol)} |",
        f"| oracle | {ol:.4f} | | 100% |",
        "",
    ]


def plot(res: dict[str, Any], path: Path) -> None:
    """``path``: the new-user rewards by k and the feedback curves (new_users only)."""
    if "new_users" not in res:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nu = res["new_users"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot([r["k"] for r in nu["k"]], [r["reward"] for r in nu["k"]], "o-", label="add_user (k queries)")
    refs = (
        (nu["trained_with_them"], "trained with them", "--"),
        (nu["best_single_llm"]["reward"], "best single LLM", ":"),
        (nu["oracle"], "oracle", "-."),
    )
    for y, name, style in refs:
        if y is not None:
            for a in ax:
                a.axhline(y, ls=style, color="gray", label=name)
    for mode, label in FEEDBACK_LABELS.items():
        curve = (nu.get("feedback") or {}).get(mode)
        if curve:
            ax[1].plot([r["events"] for r in curve], [r["reward"] for r in curve], "o-", label=label)
    ax[0].set_xlabel("k support queries")
    ax[0].set_ylabel("held-out users' test reward")
    ax[1].set_xlabel("feedback events per user")
    for a in ax:
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
