"""The training losses, the registry :data:`LOSSES` (``trainer.loss``) and their defaults.

Losses (``trainer.loss``, the registry :data:`LOSSES`):

- ``listwise`` (default): per hidden query node, cross-entropy between the softmax of the
  scores over its hidden LLMs and ``softmax(reward / T)``. It ranks the LLMs by what the
  user gets. Measured on the default data and users (100 epochs of one step each, seed
  42): test reward 0.358, against 0.326 for ``bce``, which did not beat the best fixed LLM
  per user (0.330).
- ``bce``: the paper's, binary cross-entropy on "is this LLM the user's best" (tied
  best LLMs are all positives). With 0/1 quality and cost as the tie-breaker, the label is
  mostly "the cheapest LLM that got it right", which carries little of the reward's scale.
- ``mse``: regression on the reward.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

# The temperature ``T`` of the listwise target ``softmax(reward / T)``
# (``trainer.listwise_temperature``'s default): one value, kept with the router, which
# records it and falls back to it for a router that records none.
from proute.router.state import DEFAULT_LISTWISE_TEMPERATURE as LISTWISE_TEMPERATURE

__all__ = ["LISTWISE_TEMPERATURE", "LOSSES", "bce_loss", "listwise_loss", "mse_loss"]


def listwise_loss(logits, rg, q, l, temperature: float) -> torch.Tensor:
    """Softmax over each hidden query node's hidden LLMs against ``softmax(reward / T)``."""
    reward = rg.reward[q, l]
    uq, group = torch.unique(q, return_inverse=True)
    n, L = len(uq), rg.reward.shape[1]
    neg = torch.full((n, L), float("-inf"), device=logits.device)
    s = neg.index_put((group, l), logits)
    t = neg.index_put((group, l), reward / temperature)
    target = torch.softmax(t, dim=1)
    logp = torch.log_softmax(s, dim=1)
    valid = torch.isfinite(logp)
    return -(target * torch.where(valid, logp, torch.zeros_like(logp))).sum(1).mean()


def bce_loss(logits, rg, q, l, temperature: float) -> torch.Tensor:
    """The paper's: is this LLM the user's best (ties: all best are positives)?"""
    return F.binary_cross_entropy_with_logits(logits, rg.best[q, l].float())


def mse_loss(logits, rg, q, l, temperature: float) -> torch.Tensor:
    """Regression on the reward."""
    return F.mse_loss(logits, rg.reward[q, l])


# A new loss is one function ``(logits, rg, q, l, temperature) -> scalar`` and one line here.
LOSSES: dict[str, Callable[..., torch.Tensor]] = {"listwise": listwise_loss, "bce": bce_loss, "mse": mse_loss}
