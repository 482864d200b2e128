"""The conv registry: for each conv name, how to build the module of a context relation
(DGL's own convolution) and of an outcome relation (:mod:`proute.models.layers`), with the
conv's own hyperparameters; and what each of those modules gives a receiver with exactly
one in-edge, computed without a DGL graph (:func:`one_in_edge`, the serving path of a new
query).

``graphconv``  :class:`~proute.models.layers.EdgeFiLMConv` on outcome relations, DGL's
               ``GraphConv`` (mean) on context relations;
``sage``       the same with ``self_weight=True`` (GraphSAGE form), DGL's ``SAGEConv``;
``gat``        :class:`~proute.models.layers.EdgeGATConv`, DGL's ``GATConv``;
``gatv2``      :class:`~proute.models.layers.EdgeGATConv` with ``v2=True``, DGL's ``GATv2Conv``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from proute._deps import import_dgl
from proute.models.layers import EdgeFiLMConv, EdgeGATConv

dgl = import_dgl()


class _FlattenHeads(nn.Module):
    """Wrap a multi-head DGL conv so it returns ``[N, heads * out]``."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv

    def set_allow_zero_in_degree(self, value: bool):
        self.conv.set_allow_zero_in_degree(value)

    def forward(self, graph, feat, **kwargs):
        out = self.conv(graph, feat, **kwargs)
        return out.flatten(1)


def _heads(dim: int, num_heads: int) -> int:
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"embedding_dim {dim} must be a multiple of num_heads {num_heads}")
    return dim // num_heads


# ---------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class ConvFamily:
    """How one conv name builds its relation modules.

    ``context(dim, **kwargs)`` returns the module of a context relation (``dim -> dim``, no
    bias); ``outcome(dim, edge_dim, **kwargs)`` the edge-feature-aware module of an outcome
    relation. ``defaults`` lists the conv's own hyperparameters (``conv_kwargs``) and their
    default values; both builders receive all of them.
    """

    context: Callable[..., nn.Module]
    outcome: Callable[..., nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    doc: str = ""


def _gat_context(dim: int, num_heads: int, v2: bool) -> nn.Module:
    f = _heads(dim, num_heads)
    if v2:
        return _FlattenHeads(dgl.nn.GATv2Conv(dim, f, num_heads, bias=False, allow_zero_in_degree=True))
    return _FlattenHeads(dgl.nn.GATConv((dim, dim), f, num_heads, bias=False, allow_zero_in_degree=True))


CONVS: dict[str, ConvFamily] = {
    # norm="right": mean over in-neighbours. "both" would divide by the *sender's*
    # out-degree, which changes whenever a query arrives, so cached states could not serve.
    "graphconv": ConvFamily(
        context=lambda dim: dgl.nn.GraphConv(dim, dim, norm="right", bias=False, allow_zero_in_degree=True),
        outcome=lambda dim, edge_dim: EdgeFiLMConv(dim, dim, edge_dim),
        doc="GraphConv (Kipf & Welling, ICLR 2017) mean; FiLM mean on outcome relations",
    ),
    "sage": ConvFamily(
        context=lambda dim, aggregator: dgl.nn.SAGEConv(dim, dim, aggregator, bias=False),
        outcome=lambda dim, edge_dim, aggregator: EdgeFiLMConv(dim, dim, edge_dim, self_weight=True),
        defaults={"aggregator": "mean"},
        doc="SAGEConv (Hamilton et al., NeurIPS 2017); SAGE-form FiLM mean on outcome relations",
    ),
    "gat": ConvFamily(
        context=lambda dim, num_heads: _gat_context(dim, num_heads, v2=False),
        outcome=lambda dim, edge_dim, num_heads: EdgeGATConv(
            dim, _heads(dim, num_heads), num_heads, edge_dim
        ),
        defaults={"num_heads": 2},
        doc="GATConv (Veličković et al., ICLR 2018); edge-aware GAT on outcome relations",
    ),
    "gatv2": ConvFamily(
        context=lambda dim, num_heads: _gat_context(dim, num_heads, v2=True),
        outcome=lambda dim, edge_dim, num_heads: EdgeGATConv(
            dim, _heads(dim, num_heads), num_heads, edge_dim, v2=True
        ),
        defaults={"num_heads": 2},
        doc="GATv2Conv (Brody et al., ICLR 2022); edge-aware GATv2 on outcome relations",
    ),
}


def conv_family(conv: str, conv_kwargs: dict | None = None) -> tuple[ConvFamily, dict[str, Any]]:
    """The registry entry of ``conv`` and its hyperparameters (defaults filled in)."""
    if conv not in CONVS:
        raise ValueError(f"unknown conv {conv!r}; expected one of {sorted(CONVS)}")
    family = CONVS[conv]
    kwargs = dict(conv_kwargs or {})
    unknown = sorted(set(kwargs) - set(family.defaults))
    if unknown:
        raise ValueError(
            f"conv_kwargs {unknown} are not hyperparameters of conv {conv!r}; it takes "
            f"{sorted(family.defaults) or 'none'}"
        )
    return family, {**family.defaults, **kwargs}


def make_context_conv(conv: str, dim: int, **conv_kwargs) -> nn.Module:
    """DGL's convolution of ``conv`` for a context relation, ``dim -> dim``, without bias."""
    family, kw = conv_family(conv, conv_kwargs)
    return family.context(dim, **kw)


def make_outcome_conv(conv: str, dim: int, edge_dim: int, **conv_kwargs) -> nn.Module:
    """The edge-feature-aware module of ``conv`` for an outcome relation."""
    family, kw = conv_family(conv, conv_kwargs)
    return family.outcome(dim, edge_dim, **kw)


# ---------------------------------------------------------------------- one in-edge, no graph
def one_in_edge(mod: nn.Module, h_src: torch.Tensor | None, h_dst: torch.Tensor) -> torch.Tensor:
    """What relation module ``mod`` gives receivers ``h_dst`` ``[n, d]`` when receiver ``i``
    has exactly one in-edge, from a sender with state ``h_src[i]`` (``h_src=None``: no
    in-edge at all, the outcome relation of an unobserved query), computed without a DGL
    graph.

    A new query node is such a receiver (one user, one task, no outcome edge), and building
    DGL blocks for it cost ~10x the arithmetic of one routed query. With one in-edge every
    module here is a linear map of the sender: the mean over one message is the message, an
    attention softmax over one edge is 1; SAGE adds its self term. Raises
    ``NotImplementedError`` for a module or setting outside :data:`CONVS`' defaults (the
    caller then builds the block); ``tests/test_models.py`` checks each conv against its
    block form.
    """
    if isinstance(mod, (EdgeFiLMConv, EdgeGATConv)):
        if h_src is not None:  # outcome relations only ever reach unobserved queries empty
            raise NotImplementedError("an outcome edge into a new query")
        if isinstance(mod, EdgeGATConv):
            return h_dst.new_zeros(h_dst.shape[0], mod.num_heads * mod.out_feats)
        out = h_dst.new_zeros(h_dst.shape[0], mod.out_feats)
        return out if mod.fc_self is None else out + mod.fc_self(h_dst)
    if h_src is None:
        raise NotImplementedError("a context relation without an edge")
    if isinstance(mod, dgl.nn.GraphConv):
        if mod._norm not in ("right", "none") or mod.bias is not None or mod._activation is not None:
            raise NotImplementedError("GraphConv with norm/bias/activation")
        return h_src if mod.weight is None else h_src @ mod.weight
    if isinstance(mod, dgl.nn.SAGEConv):
        if mod._aggre_type != "mean" or mod.activation is not None or mod.norm is not None:
            raise NotImplementedError("SAGEConv other than mean without activation/norm")
        out = mod.fc_self(h_dst) + mod.fc_neigh(h_src)
        bias = getattr(mod, "bias", None)  # DGL versions differ on where the bias lives
        return out if bias is None else out + bias
    if isinstance(mod, _FlattenHeads):
        conv = mod.conv
        if conv.res_fc is not None or conv.activation or getattr(conv, "has_explicit_bias", False):
            raise NotImplementedError("GAT with residual/bias/activation")
        fc = conv.fc_src if hasattr(conv, "fc_src") else conv.fc
        return fc(conv.feat_drop(h_src))
    raise NotImplementedError(f"{type(mod).__name__}")
