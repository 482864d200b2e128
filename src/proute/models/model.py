"""The personalised router model: a heterogeneous GNN and a pair decoder.

Typical use (see :func:`build_model`)::

    model = build_model(rg, conv="graphconv", decoder="mlp")
    sample = QueryMasking(0.3).sample(rg, generator)
    h = model(sample.graph)
    logits = model.score_pairs(h, sample.target_query, sample.target_llm,
                               rg.query_user[sample.target_query])
    # evaluation on the full graph
    h = model(rg.graph)
    test = rg.nodes_of("test")
    logits = model.score_all(h, test, rg.query_user[test])          # [n, num_llms]
    # serving: cache once, then score new queries without a graph pass
    cache = model.context_cache(rg.graph)
    logits = model.score_new(cache, query_feat, user_idx, task_idx)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from proute.models.decoder import DECODERS, PairDecoder, make_decoder
from proute.models.gnn import HeteroGNN
from proute.schema import USER


@dataclass
class ContextCache:
    """What serving needs from one full-graph pass: ``states[l][ntype]`` (layer inputs of the
    user, task and LLM nodes; query states are dropped) and ``h[ntype]`` (their final
    representations)."""

    states: list
    h: dict

    def to(self, device) -> "ContextCache":
        return ContextCache(
            states=[{k: v.to(device) for k, v in s.items()} for s in self.states],
            h={k: v.to(device) for k, v in self.h.items()},
        )

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Flat ``{name: tensor}`` (``states.<l>.<ntype>``, ``h.<ntype>``) for safetensors."""
        out = {f"states.{i}.{k}": v.contiguous() for i, s in enumerate(self.states) for k, v in s.items()}
        out.update({f"h.{k}": v.contiguous() for k, v in self.h.items()})
        return out

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor]) -> "ContextCache":
        states: dict[int, dict] = {}
        h = {}
        for name, v in tensors.items():
            parts = name.split(".")
            if parts[0] == "states":
                states.setdefault(int(parts[1]), {})[parts[2]] = v
            elif parts[0] == "h":
                h[parts[1]] = v
        return cls(states=[states[i] for i in sorted(states)], h=h)


class PersonalizedRouterModel(nn.Module):
    """GNN + decoder. All scores are logits (no sigmoid).

    ``hparams`` (set by :func:`build_model`) holds the JSON-serialisable arguments that
    rebuild the same architecture: ``build_model(**model.hparams)``.
    """

    def __init__(self, gnn: HeteroGNN, decoder: PairDecoder):
        super().__init__()
        self.gnn = gnn
        self.decoder = decoder
        self.has_users = USER in gnn.ntypes
        self.hparams: dict[str, Any] = {}
        if self.has_users != decoder.use_user:
            raise ValueError(
                f"the GNN {'has' if self.has_users else 'has no'} user nodes but the decoder "
                f"was built with use_user={decoder.use_user}"
            )

    # ------------------------------------------------------------------ encoding
    def forward(self, g, text=None) -> dict[str, torch.Tensor]:
        """Final node representations (``text``: see :meth:`HeteroGNN.input_states`)."""
        return self.gnn(g, text)

    def forward_with_states(self, g, text=None):
        return self.gnn.forward_with_states(g, text)

    def context_cache(self, g) -> ContextCache:
        """Run the GNN on ``g`` (the full graph) and keep what :meth:`score_new` needs.
        Call it in eval mode (``model.eval()``), under ``torch.no_grad()`` for serving."""
        h, states = self.gnn.forward_with_states(g)
        return ContextCache(
            states=[{k: v for k, v in s.items() if k != "query"} for s in states],
            h={k: v for k, v in h.items() if k != "query"},
        )

    # ------------------------------------------------------------------ scoring
    def _user(self, h, user_idx):
        if not self.has_users:
            return None
        if user_idx is None:
            raise ValueError("this model has user nodes: pass the user index of each query")
        return h["user"][user_idx]

    def score_pairs(self, h, nodes, llm_idx, user_idx_of_query=None) -> torch.Tensor:
        """Logits ``[n]`` of the pairs (``nodes[i]``, ``llm_idx[i]``);
        ``user_idx_of_query[i]`` is the user of ``nodes[i]`` (e.g.
        ``rg.query_user[nodes]``; ignored without user nodes).

        When the pairs cover most LLMs of their query nodes (query masking hides them all),
        the nodes are scored against every LLM at once (:meth:`score_all`, the decoder's
        fast path) and the pairs picked from that."""
        uq, inv = torch.unique(nodes, return_inverse=True)
        if uq.numel() * h["llm"].shape[0] <= 1.5 * nodes.numel():
            users = None
            if self.has_users:
                if user_idx_of_query is None:
                    raise ValueError("this model has user nodes: pass the user index of each query")
                at = torch.zeros_like(uq).scatter_(0, inv, torch.arange(inv.numel(), device=inv.device))
                users = user_idx_of_query[at]  # every pair of a node has the node's user
            return self.score_all(h, uq, users)[inv, llm_idx]
        hq = h["query"][nodes]
        return self.decoder(hq, h["llm"][llm_idx], self._user(h, user_idx_of_query))

    def score_all(self, h, nodes, user_idx=None) -> torch.Tensor:
        """Logits ``[n, num_llms]`` of each query node against every LLM."""
        return self.decoder.score_all(h["query"][nodes], h["llm"], self._user(h, user_idx))

    def score_new(self, states_cache, query_feat, user_idx=None, task_idx=None) -> torch.Tensor:
        """Logits ``[n, num_llms]`` for unobserved queries from a :class:`ContextCache` (or
        the ``(h, states)`` pair of :meth:`forward_with_states`): no full-graph pass."""
        if isinstance(states_cache, tuple):
            h_all, states = states_cache
            states_cache = ContextCache(states=list(states), h=dict(h_all))
        hq = self.gnn.encode_new_queries(states_cache.states, query_feat, user_idx, task_idx)
        hu = None
        if self.has_users:
            if user_idx is None:
                raise ValueError("this model has user nodes: pass user_idx")
            hu = states_cache.h["user"][torch.as_tensor(user_idx, device=hq.device).long()]
        return self.decoder.score_all(hq, states_cache.h["llm"], hu)


def _data_hparams(graph, hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` with the data-dependent arguments read from ``graph`` (explicit values
    must agree with it) and given their types and defaults."""
    if graph is not None:
        derived = {
            "in_dims": dict(graph.in_dims),
            "num_users": graph.num_users if graph.has_users else 0,
            "etypes": [list(et) for et in graph.etypes],
            "edge_dim": graph.edge_dim,
            "user_features": graph.user_features if graph.has_users else "learned",
        }
        for k in ("in_dims", "num_users", "etypes", "edge_dim", "user_features"):
            v = hparams[k]
            if v is not None and k != "etypes" and v != derived[k]:
                raise ValueError(f"build_model: {k}={v!r} disagrees with the graph ({derived[k]!r})")
        hparams.update(derived)
    if hparams["in_dims"] is None or hparams["num_users"] is None:
        raise ValueError("build_model needs a RoutingGraph or in_dims and num_users")
    hparams["in_dims"] = {k: int(v) for k, v in dict(hparams["in_dims"]).items()}
    hparams["num_users"] = int(hparams["num_users"])
    hparams["edge_dim"] = 1 if hparams["edge_dim"] is None else int(hparams["edge_dim"])
    hparams["user_features"] = hparams["user_features"] or "learned"
    return hparams


def build_model(
    graph=None,
    *,
    in_dims: Mapping[str, int] | None = None,
    num_users: int | None = None,
    etypes: Sequence[Sequence[str]] | None = None,
    edge_dim: int | None = None,
    user_features: str | None = None,
    embedding_dim: int = 64,
    num_layers: int = 2,
    conv: str = "graphconv",
    conv_kwargs: Mapping[str, Any] | None = None,
    dropout: float = 0.1,
    norm: str = "layer",
    residual: bool = True,
    decoder: str = "mlp",
    decoder_kwargs: Mapping[str, Any] | None = None,
) -> PersonalizedRouterModel:
    """Build a :class:`PersonalizedRouterModel`.

    The data-dependent arguments (``in_dims``, ``num_users``, ``etypes``, ``edge_dim``,
    ``user_features``) are read from ``graph`` (a :class:`~proute.graph.RoutingGraph`) when
    given; explicit values must then agree with it. ``conv`` names an entry of
    :data:`proute.models.convs.CONVS` and ``conv_kwargs`` its own hyperparameters;
    ``decoder`` an entry of :data:`proute.models.decoder.DECODERS` and ``decoder_kwargs``
    its own (an MLP decoder's ``dropout`` defaults to ``dropout``). The Hydra configs
    ``conf/model/*.yaml`` use ``_target_: proute.models.build_model`` with
    ``_partial_: true``: ``model = instantiate(cfg.model)(rg)``. ``model.hparams`` holds
    every argument (graph-derived ones included), JSON-serialisable, so
    ``build_model(**model.hparams)`` rebuilds the architecture without the graph.
    """
    hparams = _data_hparams(graph, {k: v for k, v in locals().items() if k != "graph"})
    hparams["conv_kwargs"] = dict(conv_kwargs or {})
    dec_kwargs = dict(decoder_kwargs or {})
    hparams["decoder_kwargs"] = dict(dec_kwargs)
    gnn_args = {k: v for k, v in hparams.items() if k not in ("decoder", "decoder_kwargs")}
    gnn = HeteroGNN(**gnn_args)
    hparams["etypes"] = [list(et) for et in gnn.etypes]
    if decoder in DECODERS and "dropout" in inspect.signature(DECODERS[decoder]).parameters:
        dec_kwargs.setdefault("dropout", dropout)
    dec = make_decoder(decoder, embedding_dim, use_user=USER in gnn.ntypes, **dec_kwargs)
    model = PersonalizedRouterModel(gnn, dec)
    model.hparams = hparams
    return model


__all__ = ["ContextCache", "PersonalizedRouterModel", "build_model"]
