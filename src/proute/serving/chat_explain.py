"""What the chat page shows beside the conversation: why the router chose an LLM.

- :func:`scores_table`: every LLM's score for the last message, as the router's raw score
  and as a probability (the softmax of the scores: what ``explore`` draws from), best first;
- :func:`describe_user`: what the router knows about the user (trained or added, its
  training interactions, feedback events since, the preference weight when the training
  config records it, the LLM its own training rewards favour);
- :func:`caption` / :func:`strip_caption`: the line under each answer naming the LLM that
  gave it (removed again before the conversation goes back to an upstream).

>>> print(scores_table({"a": 1.0, "b": 0.0}, chosen="a"))
| LLM | score | probability |
|---|---|---|
| **a** (chosen) | 1.000 | 73.1% |
| b | 0.000 | 26.9% |
>>> strip_caption("4" + caption("llm-x"))
'4'
"""

from __future__ import annotations

import math
import re
from typing import Any

from proute.data.ids import user_key
from proute.schema import UNKNOWN_USER_AVERAGE

_CAPTION = re.compile(r"\n\n_answered by [^\n]*_\s*\Z")
SCALE = (
    "score: the router's score for each LLM (higher is better for this user); probability: "
    "the softmax of the scores"
)


def caption(model: str) -> str:
    return f"\n\n_answered by {model}_"


def strip_caption(text: str) -> str:
    return _CAPTION.sub("", text)


def softmax(scores: dict[str, float]) -> dict[str, float]:
    top = max(scores.values())
    exp = {k: math.exp(v - top) for k, v in scores.items()}
    total = sum(exp.values())
    return {k: v / total for k, v in exp.items()}


def scores_table(scores: dict[str, float], chosen: str) -> str:
    """A Markdown table of every LLM's score and probability, best first."""
    proba = softmax(scores)
    lines = ["| LLM | score | probability |", "|---|---|---|"]
    for llm in sorted(scores, key=lambda m: -scores[m]):
        name = f"**{llm}** (chosen)" if llm == chosen else llm
        lines.append(f"| {name} | {scores[llm]:.3f} | {proba[llm]:.1%} |")
    return "\n".join(lines)


def preference_weight(router, user_id: Any) -> float | None:
    """The user's performance preference ``p`` when the router's training config simulated
    cost-efficiency users (``reward = p·performance − (1 − p)·cost_norm``), else None."""
    users = (router.meta.get("config") or {}).get("users") or {}
    prefs = users.get("preferences")
    if not str(users.get("_target_", "")).endswith("CostEfficiencyUsers") or not isinstance(prefs, list):
        return None
    try:
        i = int(user_key(user_id))
    except ValueError:
        return None
    return float(prefs[i]) if 0 <= i < len(prefs) else None


def _favourite(state, row: int) -> str | None:
    table = state.adapt.get("adapt.user_reward")
    if table is None or row >= table.shape[0]:
        return None
    return str(state.llms[int(table[row].mean(0).argmax())])


def describe_user(router, user_id: Any) -> str:
    """Markdown: what the router knows about ``user_id`` (see the module docstring)."""
    state = router.state
    key = user_key(user_id)
    row = state.user_index.get(key)
    evidence = state.evidence.get(key)
    events = evidence.num_outcomes if evidence is not None else 0
    if row is None:
        if state.unknown_user == UNKNOWN_USER_AVERAGE:
            return f"**user `{key}`**: new to the router, routed as the population's average user"
        return f"**user `{key}`**: unknown to the router"
    if row >= state.num_trained_users:
        return (
            f"**user `{key}`**: added after training (add_user / feedback), "
            f"{events} interaction{'s' if events != 1 else ''} observed"
        )
    deg = state.adapt.get("adapt.user_deg")
    parts = [f"**user `{key}`**: known (trained)"]
    if deg is not None:
        parts.append(f"{int(deg[row])} training interactions")
    parts.append(f"{events} feedback event{'s' if events != 1 else ''} since")
    p = preference_weight(router, user_id)
    parts.append(
        "preference weight: not recorded (learned from the user's rewards)"
        if p is None
        else f"preference weight p = {p:g} (reward = p·performance − (1 − p)·cost)"
    )
    favourite = _favourite(state, row)
    if favourite is not None:
        parts.append(f"best LLM on its training rewards: {favourite}")
    return "; ".join(parts)
