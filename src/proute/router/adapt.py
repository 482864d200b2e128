"""New users, feedback and new LLMs for a trained router, without retraining.

Measured by :mod:`proute.study.adaptation` (``python -m proute.study adapt
experiment=adapt_new_users | adapt_feedback | adapt_new_llms``; report:
``experiments/new_users/README.md``).
Two ways to place a new user from its observed interactions (its *evidence*), chosen with
:attr:`PersonalizedRouter.new_user_method`:

``"mixture"``
    The new user's per-layer states are a posterior mixture of the trained users' states:
    ``w_u ∝ exp(β · [log p(evidence | u) + log p(population | u)])``, where
    ``log p(evidence | u)`` is the training loss of the evidence queries scored as new queries
    of trained user ``u`` (listwise: the log-softmax of ``u``'s logits over the LLMs the query
    covers against ``softmax(reward / T)``) and the prior ``log p(population | u)`` the same
    for pseudo-evidence of the population's preferences (one query per task at its centroid,
    every LLM with the population's mean reward on that task). Without evidence the user is
    the trained user(s) closest to the population's average preferences: it routes as the
    population does (the plain mean of the trained users' states, or of their embedding,
    routed below the best single LLM). It is fast (one batched scoring of the evidence per
    trained user, no fitting) and cannot leave the span of the trained users: a user who
    prefers an LLM no trained user prefers needs ``"fit"``.

``"fit"`` (the default: best on the held-out users' validation pairs pooled over two seeds)
    The model's own layers on a tiny graph around the user, plus an embedding fit.
    1. *Evidence graph.* The evidence becomes train-like query nodes of that user (one per
       distinct query text, ``asks``/``asked_by`` edges to the user, ``contains``/
       ``belongs_to`` to the query's task, outcome edges to each LLM it was observed with,
       carrying the edge feature the router was trained with). The LLM and task nodes send
       their *cached* per-layer states (:class:`~proute.models.model.ContextCache`); the
       new nodes are a handful among hundreds of thousands of edges, so the cached nodes are
       kept as they are.
    2. *Per-layer states.* Layer by layer, the evidence query nodes and the user are updated
       with the GNN's relation modules, self terms, norms and activations on the tiny graph
       (:func:`propagate_user`): the exact analogue of training. The user's ``asked_by``
       message is the count-weighted mean of the evidence's message and a base message: for
       a trained user, its training message over its ``N`` training queries (stored at
       export), so feedback moves it by ``n / (N + n)``; for a new user, the population's
       mean message with weight 1.
    3. *Embedding fit.* The layer-0 state ``e`` (the learned user embedding) starts at a prior
       ``e0`` (a new user: the population's average user, the embedding fitted to the
       population pseudo-evidence; a trained user: its trained embedding) and is fitted for a
       few Adam steps, all weights and cached states frozen, on the listwise loss of the
       evidence queries scored as new queries of this user, plus
       ``prior_strength · mean((e − e0)² / s²)`` (``s²``: the per-dimension variance of the
       trained embeddings; a trained user's prior strength grows with its ``N``).

    Feedback on a trained user always uses ``"fit"`` (it keeps its training evidence).

In both, an LLM the evidence did not observe for a query is imputed with the user's *own*
predicted reward (:func:`fit_target`; for the mixture, each trained user's own, scored by
``−KL(target ‖ p_u)``), so bandit feedback (the routed LLM's outcome only) moves only the
routed LLM's share. Imputing the population's mean reward on the task (``feedback_imputation
="population"``, the earlier rule) fitted users unlike the population to its ranking and
lowered their reward with bandit events. Reward rises with bandit events when the events
explore (routed to an LLM drawn from the softmax of the scores), not with greedy events
(experiments/new_users/README.md). Fully observed queries (``add_user`` with every LLM's
outcome) are the same under both.

New LLMs (:func:`llm_states`): the layer-0 state is the input projection of the
description embedding (as for the trained LLMs); its message the population mean LLM
message (weight 1) blended with the outcome messages of the given outcomes' query nodes
(each a query node of its user, with one outcome edge to the new LLM).
"""

from __future__ import annotations

import torch

from proute._deps import import_dgl
from proute.router.evidence import Evidence, evidence_graph
from proute.router.state import DEFAULT_LISTWISE_TEMPERATURE
from proute.schema import ASKS, LLM, QUERY, TASK, USER

dgl = import_dgl()

__all__ = [
    "Evidence",
    "fit_llm_final",
    "fit_target",
    "llm_states",
    "node_messages",
    "propagate_user",
    "user_states",
]


def propagate_user(model, ctx, e: torch.Tensor, ev: Evidence, base_msg, base_n: float, graph=None):
    """Per-layer states ``[L+1, d]`` of one user with layer-0 state ``e`` (``[d]``) and
    evidence ``ev``: row ``l`` is the input of layer ``l``, the last row the final state.
    ``base_msg`` (``[L, d]`` or None) is blended into the ``asked_by`` message with weight
    ``base_n`` against the evidence's ``ev.num_queries``."""
    gnn = model.gnn
    m = ev.num_queries
    g = hq = None
    if m:
        g = graph if graph is not None else evidence_graph(gnn, ev, _n(ctx, TASK), _n(ctx, LLM), USER)
        hq = gnn.project(QUERY, feat=ev.query_emb)

    def context(layer):
        return {nt: ctx.states[layer][nt] for nt in (TASK, LLM) if nt in gnn.ntypes}

    return _propagate(gnn, USER, e.reshape(1, -1), m, g, hq, context, base_msg, base_n)


def _propagate(gnn, center, h, m: int, g, hq, context, base_msg, base_n: float, query_extra=None):
    """Per-layer states ``[L+1, d]`` of one new ``center`` node (a user or an LLM) with layer-0
    state ``h``: each layer runs the model's own convs on the evidence graph ``g`` of its
    ``m`` query nodes (layer-0 states ``hq``), the other node types sending
    ``context(layer)``; ``query_extra(layer, hq)`` (optional) adds a message into the query
    nodes; the centre's message is blended with ``base_msg`` (:func:`_blend`)."""
    out = [h]
    for layer in range(gnn.num_layers):
        msg = None
        if m:
            msgs = gnn.convs[layer](
                g, {center: h, QUERY: hq, **context(layer)}, mod_kwargs=gnn._mod_kwargs(g)
            )
            msg_q = msgs.get(QUERY)
            extra = None if query_extra is None else query_extra(layer, hq)
            if extra is not None:
                msg_q = extra if msg_q is None else msg_q + extra
            hq_next = gnn._combine(layer, QUERY, hq, msg_q)
            msg = msgs.get(center)
        h = gnn._combine(layer, center, h, _blend(msg, m, base_msg, base_n, layer))
        if m:
            hq = hq_next
        out.append(h)
    return torch.cat(out, 0)


def _blend(msg, m: int, base_msg, base_n: float, layer: int):
    """The count-weighted mean of the evidence's message (``m`` senders) and the base
    message of ``layer`` (weight ``base_n``); either may be missing."""
    if base_msg is None or base_n <= 0:
        return msg
    b = base_msg[layer].reshape(1, -1)
    return b if msg is None else (base_n * b + m * msg) / (base_n + m)


def _n(ctx, nt: str) -> int:
    return int(ctx.states[0][nt].shape[0]) if nt in ctx.states[0] else 0


def fit_target(
    ev: Evidence,
    num_llms: int,
    pop_reward: torch.Tensor | None,
    temperature: float,
    own: torch.Tensor | None = None,
):
    """Per evidence query: the target distribution over LLMs (``softmax(reward / T)``) and a
    mask of the LLMs it covers. An LLM the query did not observe is imputed, when ``own``
    (``[..., m, L]``: the user's current logits of the evidence queries) is given, with the
    user's *own* predicted reward ``T · (logit − mean logit) + mean population reward on the
    task`` (so the target equals the user's current distribution except where it observed
    something: bandit feedback moves only the routed LLM's entry); else, when ``pop_reward``
    is given, with the population's mean reward of that LLM on the task; else not covered.
    A fully observed query is the same under all three."""
    m = ev.num_queries
    r = torch.full((m, num_llms), float("-inf"))
    if pop_reward is not None and m:
        r = pop_reward[ev.task].clone().float()
    observed = torch.zeros(m, num_llms, dtype=torch.bool)
    observed[ev.qnode, ev.llm] = True
    r[ev.qnode, ev.llm] = ev.reward
    if own is not None and m:
        centre = torch.zeros(m) if pop_reward is None else pop_reward[ev.task].float().mean(1)
        mine = temperature * (own - own.mean(-1, keepdim=True)) + centre[:, None]
        r = torch.where(observed, r, mine)
    mask = torch.isfinite(r)
    # a query with one covered LLM carries no listwise information
    useful = mask.sum(-1) >= 2
    return torch.softmax(r / temperature, dim=-1), mask, useful


def _scores(model, ctx, states, qemb, qtask):
    """``[m, L]`` logits of queries ``qemb`` (tasks ``qtask``) as new queries of the user
    with per-layer states ``states``."""
    gnn = model.gnn
    layers = [{**ctx.states[i], USER: states[i : i + 1]} for i in range(gnn.num_layers)]
    zero = torch.zeros(len(qemb), dtype=torch.int64)
    hq = gnn.encode_new_queries(layers, qemb, zero, qtask)
    return model.decoder.score_all(hq, ctx.h[LLM], states[-1:].expand(len(qemb), -1))


def user_states(
    model,
    ctx,
    ev: Evidence,
    e0: torch.Tensor,
    base_msg,
    base_n: float,
    prior_strength: float,
    scale2: torch.Tensor,
    pop_reward: torch.Tensor | None = None,
    temperature: float = DEFAULT_LISTWISE_TEMPERATURE,
    steps: int = 60,
    lr: float = 0.05,
    start: torch.Tensor | None = None,
    imputation: str = "own",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(states [L+1, d], e [d])`` of one user: the embedding fitted on ``ev`` (module
    docstring, step 3), then propagated (step 2). ``start`` (default ``e0``) warm-starts the
    fit (feedback refits from the current embedding). ``imputation`` fills the LLMs a query
    did not observe (:func:`fit_target`): ``"own"`` the user's prediction at ``start``,
    ``"population"`` the population's mean reward on the task."""
    gnn = model.gnn
    e = (e0 if start is None else start).detach().clone()
    L = _n(ctx, LLM)
    m = ev.num_queries
    graph = evidence_graph(gnn, ev, _n(ctx, TASK), L, USER) if m else None
    if not m or steps <= 0:
        with torch.no_grad():
            return propagate_user(model, ctx, e, ev, base_msg, base_n, graph), e
    own = None
    if imputation == "own":
        with torch.no_grad():
            start_states = propagate_user(model, ctx, e, ev, base_msg, base_n, graph)
            own = _scores(model, ctx, start_states, ev.query_emb, ev.task)
    target, mask, useful = fit_target(ev, L, pop_reward, temperature, own)
    if bool(useful.any()):
        target, mask = target[useful], mask[useful]
        qemb, qtask = ev.query_emb[useful], ev.task[useful]
        e = e.requires_grad_(True)
        opt = torch.optim.Adam([e], lr=lr * float(scale2.mean().sqrt()))
        for _ in range(steps):
            opt.zero_grad()
            states = propagate_user(model, ctx, e, ev, base_msg, base_n, graph)
            logits = _scores(model, ctx, states, qemb, qtask)
            logp = torch.log_softmax(logits.masked_fill(~mask, float("-inf")), dim=1)
            ce = -(target * torch.where(mask, logp, torch.zeros_like(logp))).sum()
            prior = prior_strength * (((e - e0) ** 2) / scale2).mean()
            (ce + prior).backward()
            opt.step()
        e = e.detach()
    with torch.no_grad():
        states = propagate_user(model, ctx, e, ev, base_msg, base_n, graph)
    return states, e


def llm_states(model, ctx, feat: torch.Tensor, ev: Evidence | None, user_states_of, base_msg, base_n: float):
    """Per-layer states ``[L+1, d]`` of a new LLM from its description embedding ``feat``
    and optional outcome evidence (``ev.llm`` all 0: the new LLM; ``user_states_of`` gives
    the ``[L+1, d]`` states of each evidence query's user, as ``[m, L+1, d]``)."""
    gnn = model.gnn
    hl = gnn.project(LLM, feat=feat.reshape(1, -1))
    m = 0 if ev is None else ev.num_queries
    g = hq = ug = None
    if ev is not None and m:
        g = evidence_graph(gnn, ev, _n(ctx, TASK), 1, LLM)
        hq = gnn.project(QUERY, feat=ev.query_emb)
        # the users of the evidence queries send through asks: a graph of their own
        ar = torch.arange(m)
        ug = dgl.heterograph({ASKS: (ar, ar)}, num_nodes_dict={USER: m, QUERY: m}, idtype=torch.int64)

    def context(layer):
        h = {TASK: ctx.states[layer][TASK]} if TASK in gnn.ntypes else {}
        if USER in gnn.ntypes:
            h[USER] = torch.zeros(1, hl.shape[1])
        return h

    def from_users(layer, hq):
        if USER not in gnn.ntypes or ASKS not in [tuple(e) for e in gnn.etypes]:
            return None
        return gnn.convs[layer].mods[ASKS[1]](ug, (user_states_of[:, layer], hq))

    return _propagate(gnn, LLM, hl, m, g, hq, context, base_msg, base_n, from_users)


@torch.no_grad()
def node_messages(model, g, ntype: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per layer, the summed relation messages every ``ntype`` node receives in the full
    graph ``g`` (eval mode), and each node's in-degree over those relations: what
    :func:`propagate_user` blends new evidence into."""
    gnn = model.gnn
    _, states = gnn.forward_with_states(g)
    msgs = []
    for layer in range(gnn.num_layers):
        out = gnn.convs[layer](g, states[layer], mod_kwargs=gnn._mod_kwargs(g))
        msgs.append(out[ntype] if ntype in out else torch.zeros_like(states[layer][ntype]))
    deg = torch.zeros(g.num_nodes(ntype))
    for s, rel, d in g.canonical_etypes:
        if d == ntype and s == QUERY:
            deg += g.in_degrees(etype=(s, rel, d)).float()
    return msgs, deg


def fit_llm_final(
    model,
    ctx,
    h0: torch.Tensor,
    ev: Evidence,
    user_rows: torch.Tensor,
    reward_table: torch.Tensor | None,
    temperature: float = DEFAULT_LISTWISE_TEMPERATURE,
    prior_strength: float = 1.0,
    steps: int = 60,
    lr: float = 0.05,
) -> torch.Tensor:
    """A new LLM's final state (what the decoder sees), fitted from ``h0`` on its outcomes:
    each evidence query (its user's states ``user_rows[i]``) scored against the trained LLMs
    and the new one, the listwise target over the new LLM's observed reward and
    ``reward_table[i, task]`` (``[m, tasks, trained LLMs]``: the mean reward of each trained
    LLM on the query's task for the query's user, or for the population), plus
    ``prior_strength · mean((h − h0)² / s²)`` (``s²``: the per-dimension variance of the
    trained LLMs' final states). The propagated state alone (description and outcome
    messages) left a strong held-out LLM unpicked (experiment=adapt_new_llms)."""
    gnn = model.gnn
    m = ev.num_queries
    if not m or reward_table is None:
        return h0
    trained = ctx.h[LLM]
    n = trained.shape[0]
    other = reward_table[torch.arange(m), ev.task].float()
    known = torch.full((m, n), float("-inf"))
    known[:, : other.shape[1]] = other
    r = torch.cat([known, torch.zeros(m, 1)], 1)
    r[ev.qnode, n] = ev.reward
    target = torch.softmax(r / temperature, dim=1)
    with torch.no_grad():
        layers = [{**ctx.states[i], USER: user_rows[:, i]} for i in range(gnn.num_layers)]
        hq = gnn.encode_new_queries(layers, ev.query_emb, torch.arange(m), ev.task)
        hu = user_rows[:, -1]
    scale2 = trained.var(0, unbiased=False).clamp_min(1e-6)
    h = h0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([h], lr=lr * float(scale2.mean().sqrt()))
    for _ in range(steps):
        opt.zero_grad()
        logits = model.decoder.score_all(hq, torch.cat([trained, h.reshape(1, -1)], 0), hu)
        logp = torch.log_softmax(logits.masked_fill(~torch.isfinite(r), float("-inf")), dim=1)
        ce = -(target * torch.where(torch.isfinite(r), logp, torch.zeros_like(logp))).sum()
        (ce + prior_strength * (((h - h0) ** 2) / scale2).mean()).backward()
        opt.step()
    return h.detach()
