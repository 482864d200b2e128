"""The personalised router model: a heterogeneous GNN encoder and a pair decoder.

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

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from proute.models.decoder import PairDecoder, make_decoder
from proute.models.encoder import HeteroGNNEncoder


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
    """Encoder + decoder. All scores are logits (no sigmoid).

    ``hparams`` (set by :func:`build_model`) holds the JSON-serialisable arguments that
    rebuild the same architecture: ``build_model(**model.hparams)``.
    """

    def __init__(self, encoder: HeteroGNNEncoder, decoder: PairDecoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.has_users = "user" in encoder.ntypes
        self.hparams: dict[str, Any] = {}
        if self.has_users != decoder.use_user:
            raise ValueError(
                f"the encoder {'has' if self.has_users else 'has no'} user nodes but the decoder "
                f"was built with use_user={decoder.use_user}"
            )

    # ------------------------------------------------------------------ encoding
    def forward(self, g) -> dict[str, torch.Tensor]:
        return self.encoder(g)

    def forward_with_states(self, g):
        return self.encoder.forward_with_states(g)

    def context_cache(self, g) -> ContextCache:
        """Run the encoder on ``g`` (the full graph) and keep what :meth:`score_new` needs.
        Call it in eval mode (``model.eval()``), under ``torch.no_grad()`` for serving."""
        h, states = self.encoder.forward_with_states(g)
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

    def score_pairs(self, h, query_nodes, llm_idx, user_idx_of_query=None) -> torch.Tensor:
        """Logits ``[n]`` of the pairs (``query_nodes[i]``, ``llm_idx[i]``);
        ``user_idx_of_query[i]`` is the user of ``query_nodes[i]`` (e.g.
        ``rg.query_user[query_nodes]``; ignored without user nodes)."""
        hq = h["query"][query_nodes]
        return self.decoder(hq, h["llm"][llm_idx], self._user(h, user_idx_of_query))

    def score_all(self, h, query_nodes, user_idx=None) -> torch.Tensor:
        """Logits ``[n, num_llms]`` of each query node against every LLM."""
        return self.decoder.score_all(h["query"][query_nodes], h["llm"], self._user(h, user_idx))

    def score_new(self, states_cache, query_feat, user_idx=None, task_idx=None) -> torch.Tensor:
        """Logits ``[n, num_llms]`` for unobserved queries from a :class:`ContextCache` (or
        the ``(h, states)`` pair of :meth:`forward_with_states`): no full-graph pass."""
        if isinstance(states_cache, tuple):
            h_all, states = states_cache
            states_cache = ContextCache(states=list(states), h=dict(h_all))
        hq = self.encoder.encode_new_queries(states_cache.states, query_feat, user_idx, task_idx)
        hu = None
        if self.has_users:
            if user_idx is None:
                raise ValueError("this model has user nodes: pass user_idx")
            hu = states_cache.h["user"][torch.as_tensor(user_idx, device=hq.device).long()]
        return self.decoder.score_all(hq, states_cache.h["llm"], hu)


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
    num_heads: int = 2,
    dropout: float = 0.1,
    norm: str = "layer",
    residual: bool = True,
    sage_aggregator: str = "mean",
    decoder: str = "mlp",
    decoder_hidden: int | None = None,
    decoder_dropout: float | None = None,
) -> PersonalizedRouterModel:
    """Build a :class:`PersonalizedRouterModel`.

    The data-dependent arguments (``in_dims``, ``num_users``, ``etypes``, ``edge_dim``,
    ``user_features``) are read from ``graph`` (a :class:`~proute.graph.RoutingGraph`) when
    given; explicit values must then agree with it. The Hydra configs
    ``conf/model/*.yaml`` use ``_target_: proute.models.build_model`` with
    ``_partial_: true``: ``model = instantiate(cfg.model)(rg)``. ``model.hparams`` holds
    every argument (graph-derived ones included), JSON-serialisable, so
    ``build_model(**model.hparams)`` rebuilds the architecture without the graph.
    """
    if graph is not None:
        derived = {
            "in_dims": dict(graph.in_dims),
            "num_users": graph.num_users if graph.has_users else 0,
            "etypes": [list(et) for et in graph.etypes],
            "edge_dim": graph.edge_dim,
            "user_features": graph.user_features if graph.has_users else "learned",
        }
        given = {"in_dims": in_dims, "num_users": num_users, "etypes": etypes, "edge_dim": edge_dim, "user_features": user_features}
        for k, v in given.items():
            if v is not None and k != "etypes" and v != derived[k]:
                raise ValueError(f"build_model: {k}={v!r} disagrees with the graph ({derived[k]!r})")
        in_dims, num_users, etypes, edge_dim, user_features = (derived[k] for k in given)
    if in_dims is None or num_users is None:
        raise ValueError("build_model needs a RoutingGraph or in_dims and num_users")
    edge_dim = 1 if edge_dim is None else int(edge_dim)
    user_features = user_features or "learned"
    etypes_list = None if etypes is None else [list(map(str, et)) for et in etypes]
    encoder = HeteroGNNEncoder(
        in_dims=dict(in_dims),
        num_users=int(num_users),
        embedding_dim=embedding_dim,
        num_layers=num_layers,
        conv=conv,
        num_heads=num_heads,
        dropout=dropout,
        norm=norm,
        edge_dim=edge_dim,
        user_features=user_features,
        residual=residual,
        etypes=etypes_list,
        sage_aggregator=sage_aggregator,
    )
    dec = make_decoder(
        decoder,
        embedding_dim,
        use_user="user" in encoder.ntypes,
        hidden=decoder_hidden,
        dropout=dropout if decoder_dropout is None else decoder_dropout,
    )
    model = PersonalizedRouterModel(encoder, dec)
    model.hparams = {
        "in_dims": {k: int(v) for k, v in dict(in_dims).items()},
        "num_users": int(num_users),
        "etypes": [list(et) for et in encoder.etypes],
        "edge_dim": edge_dim,
        "user_features": user_features,
        "embedding_dim": embedding_dim,
        "num_layers": num_layers,
        "conv": conv,
        "num_heads": num_heads,
        "dropout": dropout,
        "norm": norm,
        "residual": residual,
        "sage_aggregator": sage_aggregator,
        "decoder": decoder,
        "decoder_hidden": decoder_hidden,
        "decoder_dropout": decoder_dropout,
    }
    return model


__all__ = ["ContextCache", "PersonalizedRouterModel", "build_model"]
