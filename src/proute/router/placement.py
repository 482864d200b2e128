"""Where a user goes from its evidence: the fit or the mixture (module docstring of
:mod:`proute.router.adapt`), from one :class:`~proute.router.state.RouterState`.

:func:`place_user` gives a user's per-layer states; :func:`average_states` the population's
average user (a new user without interactions), which every published state carries.
"""

from __future__ import annotations

import torch

from proute.router.adapt import fit_target, user_states
from proute.router.evidence import Evidence
from proute.router.state import RouterState


def population(state: RouterState, context) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The prior of a new user under ``new_user_method="fit"``: the trained users' mean
    layer-0 state, its per-dimension variance, and their mean received message per layer
    (None for routers exported before proute.router.adapt). (Fitting the prior centre to the
    population's preferences routed k = 0 users better but left the fit unable to leave
    it on the test's opposite users: experiment=adapt_new_users.)"""
    n = state.num_trained_users
    emb = context.states[0]["user"][:n]
    msg = state.adapt.get("adapt.user_msg")
    msg = None if msg is None else msg.mean(1)
    return emb.mean(0), emb.var(0, unbiased=False).clamp_min(1e-6), msg


def _user_base(state: RouterState, index: int | None, context):
    """``(e0, base_msg, base_n, prior_strength, scale2)`` of a user: a trained user's own
    embedding and training message (prior strength grows with its training queries); the
    population's for a new one."""
    kappa = state.prior_strength
    n_trained = state.num_trained_users
    if index is not None and index < n_trained:
        scale2 = context.states[0]["user"][:n_trained].var(0, unbiased=False)
        scale2 = scale2.clamp_min(1e-6)
        msg = state.adapt.get("adapt.user_msg")
        deg = state.adapt.get("adapt.user_deg")
        n = float(deg[index]) if deg is not None else 0.0
        base_msg = None if msg is None else msg[:, index]
        return context.states[0]["user"][index], base_msg, n, kappa + n, scale2
    e_pop, scale2, msg_pop = population(state, context)
    return e_pop, msg_pop, 1.0, kappa, scale2


def place_user(state: RouterState, key: str, index: int | None, evidence: Evidence, warm: bool = False):
    """``(states [layers + 1, d], layer-0 embedding or None)`` of a user from its evidence:
    a new user by the state's ``new_user_method``, a trained user by the embedding fit;
    ``warm`` starts the fit from the user's current embedding (feedback)."""
    context = state.context
    trained = index is not None and index < state.num_trained_users
    if not trained and state.new_user_method == "mixture" and "adapt.user_msg" in state.adapt:
        return mixture_states(state, evidence, context), None
    e0, base_msg, base_n, kappa, scale2 = _user_base(state, index, context)
    start = state.embedding.get(key) if warm else None
    return user_states(
        state.model,
        context,
        evidence,
        e0,
        base_msg,
        base_n,
        kappa,
        scale2,
        state.adapt.get("adapt.pop_reward"),
        state.listwise_temperature,
        start=start,
        imputation=state.feedback_imputation,
    )


def empty_evidence(state: RouterState) -> Evidence:
    return Evidence.empty(state.query_dim, state.edge_dim)


@torch.no_grad()
def average_states(state: RouterState) -> torch.Tensor | None:
    """``[layers + 1, d]`` states of the population's average user (a new user placed
    without interactions); None for a router without user nodes."""
    if not state.model.has_users:
        return None
    return place_user(state, "", None, empty_evidence(state))[0]


def _population_evidence(state: RouterState, num_llms: int) -> Evidence:
    """The population's preferences as pseudo-evidence: one query per task at the task's
    centroid, every LLM with the population's mean reward on that task."""
    pop = state.adapt["adapt.pop_reward"][:, :num_llms].float()
    ntask, nllm = pop.shape
    tasks = torch.arange(ntask).repeat_interleave(nllm)
    llms = torch.arange(nllm).repeat(ntask)
    reward = pop[tasks, llms]
    efeat = reward.unsqueeze(1).repeat(1, state.edge_dim)
    return Evidence(
        state.task_centroids.float().cpu(), torch.arange(ntask), tasks.clone(), llms, efeat, reward
    )


@torch.no_grad()
def _known_user_loglik(state: RouterState, ev: Evidence, context) -> torch.Tensor:
    """``[U]``: the log-likelihood of evidence ``ev`` under each trained user (its queries
    scored as that user's new queries; the listwise target of each query against the
    log-softmax over the LLMs it covers, unobserved LLMs imputed with the population's
    mean reward: :func:`proute.router.adapt.fit_target`)."""
    n_users = state.num_trained_users
    if not ev.num_queries:
        return torch.zeros(n_users)
    num_llms = int(context.h["llm"].shape[0])
    m = ev.num_queries
    users = torch.arange(n_users).repeat_interleave(m)
    logits = state.model.score_new(
        context, ev.query_emb.repeat(n_users, 1), users, ev.task.repeat(n_users)
    ).view(n_users, m, -1)
    own = logits if state.feedback_imputation == "own" else None
    pop = state.adapt.get("adapt.pop_reward")
    target, mask, _ = fit_target(ev, num_llms, pop, state.listwise_temperature, own)
    logp = torch.log_softmax(logits.masked_fill(~mask, float("-inf")), dim=2)
    # -KL(target || p): the target depends on the user under "own" imputation
    logt = torch.log(target.clamp_min(1e-30))
    return (target * torch.where(mask, logp - logt, torch.zeros_like(logp))).sum((1, 2))


def mixture_states(state: RouterState, ev: Evidence, context) -> torch.Tensor:
    """``[layers + 1, d]``: the posterior mixture of the trained users' states
    (``new_user_method="mixture"``; module docstring of proute.router.adapt)."""
    info = state.adapt_info
    beta = state.mixture_sharpness
    ll = _known_user_loglik(state, ev, context)
    if "adapt.pop_reward" in state.adapt and len(state.tasks):
        n_llms = int(info.get("trained_llms", len(state.llms)))
        pop = _population_evidence(state, n_llms)
        ll = ll + float(info.get("population_prior", 1.0)) * _known_user_loglik(state, pop, context)
    w = torch.softmax(beta * ll, dim=0)
    n_users = w.shape[0]
    stacked = torch.stack([s["user"][:n_users] for s in context.states] + [context.h["user"][:n_users]], 1)
    return (w[:, None, None] * stacked).sum(0)
