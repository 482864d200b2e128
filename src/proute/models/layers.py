"""Relation modules for :class:`dgl.nn.HeteroGraphConv`.

Two kinds of relation:

* **context relations** (``asks``, ``asked_by``, ``contains``, ``belongs_to``,
  ``same_family``) use DGL's own convolutions (:func:`make_context_conv`);
* **outcome relations** (``answered_by``: query -> llm, ``answers``: llm -> query) carry edge
  features (reward/performance, or [cost_norm, performance]) that may be negative and
  multi-dimensional; DGL's ``GraphConv``/``SAGEConv`` only take a scalar ``edge_weight``, so
  these relations use the edge-feature-aware modules below (:func:`make_outcome_conv`).

What each encoder variant does on the outcome relations:

``graphconv``  :class:`EdgeFiLMConv` (mean of edge-conditioned FiLM messages);
``sage``       :class:`EdgeFiLMConv` with ``self_weight=True`` (GraphSAGE form: a self
               weight on the receiver plus the mean of the FiLM messages);
``gat``        :class:`EdgeGATConv` (GAT attention whose logits also see the edge feature,
               FiLM-modulated values);
``gatv2``      :class:`EdgeGATConv` with ``v2=True`` (GATv2 dynamic attention, edge feature
               inside the nonlinearity, FiLM-modulated values).

In every variant the edge feature changes both *how much* (attention) and *what* (the FiLM
modulation) an outcome edge sends, so "LLM a answered well" and "LLM b answered well" give
different messages even after mean aggregation (a message ``W h + U e`` would collapse to
``W mean(h) + U mean(e)``, losing which LLM got which outcome).

All modules here and all context convs are built **without bias** and return exactly zero for
a receiver without in-edges (except the SAGE self weight, a function of the receiver only):
the encoder adds one bias and one self term per node type. So it does not matter whether a
DGL version's ``HeteroGraphConv`` skips relations with zero edges (older ones did, 2.1 does
not), and an unobserved query node's output depends only on its in-neighbours and itself.
"""

from __future__ import annotations

import torch
from torch import nn

from proute._deps import import_dgl

dgl = import_dgl()
fn = dgl.function
_edge_softmax = dgl.nn.functional.edge_softmax
_expand_as_pair = dgl.utils.expand_as_pair

CONVS = ("graphconv", "gat", "gatv2", "sage")


class _FiLM(nn.Module):
    """Edge-conditioned feature-wise linear modulation: ``(1 + gamma(e)) * x + beta(e)``."""

    def __init__(self, edge_dim: int, out_feats: int):
        super().__init__()
        self.gamma = nn.Linear(edge_dim, out_feats)
        self.beta = nn.Linear(edge_dim, out_feats)
        nn.init.zeros_(self.gamma.bias)
        nn.init.zeros_(self.beta.bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(shape[0], -1)
        return ((1.0 + self.gamma(e)) * x + self.beta(e)).reshape(shape)


def _check_efeat(graph, efeat: torch.Tensor | None, edge_dim: int) -> torch.Tensor:
    if efeat is None:
        if "feat" not in graph.edata:
            raise ValueError("an outcome relation needs edge features (edge data 'feat' or efeat=)")
        efeat = graph.edata["feat"]
    if efeat.dim() == 1:
        efeat = efeat.unsqueeze(-1)
    if efeat.shape[0] != graph.num_edges() or efeat.shape[1] != edge_dim:
        raise ValueError(
            f"edge features have shape {tuple(efeat.shape)}; expected [{graph.num_edges()}, {edge_dim}]"
        )
    return efeat.to(torch.float32)


class EdgeFiLMConv(nn.Module):
    r"""Mean aggregation of edge-conditioned FiLM messages.

    .. math::
        m_{ji} = (1 + \gamma(e_{ji})) \odot W h_j + \beta(e_{ji}), \qquad
        h_i' = \frac{1}{|N(i)|} \sum_{j \in N(i)} m_{ji} \;[+\, W_{self} h_i]

    with :math:`\gamma, \beta` linear in the edge feature, so signed, multi-dimensional
    features act multiplicatively on the sender's message. Feature-wise linear modulation
    is from Perez et al., "FiLM: Visual Reasoning with a General Conditioning Layer"
    (AAAI 2018) and, on graphs, Brockschmidt, "GNN-FiLM: Graph Neural Networks with
    Feature-wise Linear Modulation" (ICML 2020), which conditions on the receiver; here the
    condition is the edge feature, in the spirit of edge-conditioned convolution (Simonovsky
    & Komodakis, CVPR 2017). ``self_weight=True`` gives the GraphSAGE-mean form (Hamilton et
    al., "Inductive Representation Learning on Large Graphs", NeurIPS 2017).

    A receiver without in-edges gets zero (plus ``W_self h_i`` with ``self_weight``).
    """

    def __init__(self, in_feats: int, out_feats: int, edge_dim: int, self_weight: bool = False):
        super().__init__()
        self.edge_dim = edge_dim
        self.fc = nn.Linear(in_feats, out_feats, bias=False)
        self.film = _FiLM(edge_dim, out_feats)
        self.fc_self = nn.Linear(in_feats, out_feats, bias=False) if self_weight else None
        self.out_feats = out_feats

    def forward(self, graph, feat, efeat: torch.Tensor | None = None) -> torch.Tensor:
        src, dst = _expand_as_pair(feat, graph)
        num_dst = graph.num_dst_nodes()
        if graph.num_edges() == 0:
            out = src.new_zeros(num_dst, self.out_feats)
        else:
            e = _check_efeat(graph, efeat, self.edge_dim)
            with graph.local_scope():
                graph.srcdata["h"] = self.fc(src)
                graph.edata["e"] = e
                graph.apply_edges(lambda edges: {"m": self.film(edges.src["h"], edges.data["e"])})
                graph.update_all(fn.copy_e("m", "m"), fn.mean("m", "out"))
                out = graph.dstdata["out"]
        if self.fc_self is not None:
            out = out + self.fc_self(dst[:num_dst])
        return out


class EdgeGATConv(nn.Module):
    r"""Graph attention over edges with features: the attention logits and the values both
    see the edge feature.

    ``v2=False`` (GAT, Veličković et al., "Graph Attention Networks", ICLR 2018, with an edge
    term in the logit as in Gong & Cheng, "Exploiting Edge Features for Graph Neural
    Networks", CVPR 2019, and DGL's ``EGATConv``):

    .. math:: s_{ji} = \mathrm{LeakyReLU}(a_l^\top W_s h_j + a_r^\top W_d h_i + a_e^\top W_e e_{ji})

    ``v2=True`` (GATv2, Brody et al., "How Attentive are Graph Attention Networks?",
    ICLR 2022):

    .. math:: s_{ji} = a^\top \mathrm{LeakyReLU}(W_s h_j + W_d h_i + W_e e_{ji})

    Then :math:`\alpha_{ji} = \mathrm{softmax}_j(s_{ji})` per head and
    :math:`h_i' = \Vert_{k} \sum_j \alpha^k_{ji} \, [(1 + \gamma(e_{ji})) \odot W_s h_j +
    \beta(e_{ji})]^k` (heads concatenated; output size ``out_feats * num_heads``). A
    receiver without in-edges gets zero.
    """

    def __init__(
        self,
        in_feats: int,
        out_feats: int,
        num_heads: int,
        edge_dim: int,
        v2: bool = False,
        negative_slope: float = 0.2,
        attn_drop: float = 0.0,
    ):
        super().__init__()
        self.num_heads, self.out_feats, self.edge_dim, self.v2 = num_heads, out_feats, edge_dim, v2
        hf = num_heads * out_feats
        self.fc_src = nn.Linear(in_feats, hf, bias=False)
        self.fc_dst = nn.Linear(in_feats, hf, bias=False)
        self.fc_edge = nn.Linear(edge_dim, hf, bias=False)
        if v2:
            self.attn = nn.Parameter(torch.empty(1, num_heads, out_feats))
        else:
            self.attn_l = nn.Parameter(torch.empty(1, num_heads, out_feats))
            self.attn_r = nn.Parameter(torch.empty(1, num_heads, out_feats))
            self.attn_e = nn.Parameter(torch.empty(1, num_heads, out_feats))
        self.film = _FiLM(edge_dim, hf)
        self.leaky = nn.LeakyReLU(negative_slope)
        self.attn_drop = nn.Dropout(attn_drop)
        self.reset_parameters()

    def reset_parameters(self):
        gain = nn.init.calculate_gain("relu")
        for lin in (self.fc_src, self.fc_dst, self.fc_edge):
            nn.init.xavier_normal_(lin.weight, gain=gain)
        for p in ([self.attn] if self.v2 else [self.attn_l, self.attn_r, self.attn_e]):
            nn.init.xavier_normal_(p, gain=gain)

    def forward(self, graph, feat, efeat: torch.Tensor | None = None) -> torch.Tensor:
        src, dst = _expand_as_pair(feat, graph)
        num_dst = graph.num_dst_nodes()
        H, F = self.num_heads, self.out_feats
        if graph.num_edges() == 0:
            return src.new_zeros(num_dst, H * F)
        e = _check_efeat(graph, efeat, self.edge_dim)
        hs = self.fc_src(src).view(-1, H, F)
        hd = self.fc_dst(dst[:num_dst]).view(-1, H, F)
        he = self.fc_edge(e).view(-1, H, F)
        with graph.local_scope():
            graph.srcdata["hs"] = hs
            graph.edata["e"] = e
            if self.v2:
                graph.dstdata["hd"] = hd
                graph.apply_edges(fn.u_add_v("hs", "hd", "z"))
                logits = (self.leaky(graph.edata["z"] + he) * self.attn).sum(-1)
            else:
                graph.srcdata["el"] = (hs * self.attn_l).sum(-1, keepdim=True)
                graph.dstdata["er"] = (hd * self.attn_r).sum(-1, keepdim=True)
                graph.apply_edges(fn.u_add_v("el", "er", "s"))
                logits = self.leaky(graph.edata["s"].squeeze(-1) + (he * self.attn_e).sum(-1))
            graph.edata["a"] = self.attn_drop(_edge_softmax(graph, logits)).unsqueeze(-1)  # [E, H, 1]
            graph.apply_edges(
                lambda edges: {"m": edges.data["a"] * self.film(edges.src["hs"], edges.data["e"])}
            )
            graph.update_all(fn.copy_e("m", "m"), fn.sum("m", "out"))
            return graph.dstdata["out"].reshape(num_dst, H * F)


class _FlattenHeads(nn.Module):
    """Wrap a multi-head DGL conv so it returns ``[N, heads * out]``."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv

    def set_allow_zero_in_degree(self, value: bool):
        self.conv.set_allow_zero_in_degree(value)

    def forward(self, graph, feat, **kwargs):
        out = self.conv(graph, feat, **kwargs)
        return out.reshape(out.shape[0], -1)


def _heads(dim: int, num_heads: int) -> int:
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"embedding_dim {dim} must be a multiple of num_heads {num_heads}")
    return dim // num_heads


def make_context_conv(
    conv: str, dim: int, num_heads: int = 2, sage_aggregator: str = "mean"
) -> nn.Module:
    """DGL's convolution for a context relation, ``dim -> dim``, without bias.

    ``graphconv``: ``GraphConv(norm="right")`` (Kipf & Welling, ICLR 2017) — mean over
    in-neighbours. ``norm="both"`` would divide by the *sender's* out-degree, which changes
    whenever a query arrives, so cached user/task states could not serve new queries.
    ``sage``: ``SAGEConv`` (Hamilton et al., NeurIPS 2017) with ``sage_aggregator``.
    ``gat``: ``GATConv`` (Veličković et al., ICLR 2018), ``gatv2``: ``GATv2Conv`` (Brody et
    al., ICLR 2022), heads concatenated (``dim // num_heads`` per head).
    """
    nnm = dgl.nn
    if conv == "graphconv":
        return nnm.GraphConv(dim, dim, norm="right", weight=True, bias=False, allow_zero_in_degree=True)
    if conv == "sage":
        return nnm.SAGEConv(dim, dim, sage_aggregator, bias=False)
    if conv == "gat":
        f = _heads(dim, num_heads)
        return _FlattenHeads(nnm.GATConv((dim, dim), f, num_heads, bias=False, allow_zero_in_degree=True))
    if conv == "gatv2":
        f = _heads(dim, num_heads)
        return _FlattenHeads(nnm.GATv2Conv(dim, f, num_heads, bias=False, allow_zero_in_degree=True))
    raise ValueError(f"unknown conv {conv!r}; expected one of {CONVS}")


def make_outcome_conv(conv: str, dim: int, edge_dim: int, num_heads: int = 2) -> nn.Module:
    """The edge-feature-aware module for an outcome relation (see the module docstring)."""
    if conv == "graphconv":
        return EdgeFiLMConv(dim, dim, edge_dim)
    if conv == "sage":
        return EdgeFiLMConv(dim, dim, edge_dim, self_weight=True)
    if conv in ("gat", "gatv2"):
        return EdgeGATConv(dim, _heads(dim, num_heads), num_heads, edge_dim, v2=conv == "gatv2")
    raise ValueError(f"unknown conv {conv!r}; expected one of {CONVS}")
