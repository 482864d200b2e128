"""Edge-feature-aware relation modules for :class:`dgl.nn.HeteroGraphConv`.

Two kinds of relation (:mod:`proute.schema`):

* **context relations** (``asks``, ``asked_by``, ``contains``, ``belongs_to``,
  ``same_family``) use DGL's own convolutions;
* **outcome relations** (``answered_by``: query -> llm, ``answers``: llm -> query) carry edge
  features (reward/performance, or [cost_norm, performance]) that may be negative and
  multi-dimensional; DGL's ``GraphConv``/``SAGEConv`` only take a scalar ``edge_weight``, so
  these relations use the edge-feature-aware modules below.

:data:`proute.models.convs.CONVS` maps each conv name to a :class:`ConvFamily`: how to build its module for a
context relation and for an outcome relation, and its own hyperparameters (``conv_kwargs``
in the model config). A new conv is one entry there and one model yaml.

``graphconv``  :class:`EdgeFiLMConv` (mean of edge-conditioned FiLM messages);
``sage``       :class:`EdgeFiLMConv` with ``self_weight=True`` (GraphSAGE form);
``gat``        :class:`EdgeGATConv` (GAT attention whose logits also see the edge feature,
               FiLM-modulated values);
``gatv2``      :class:`EdgeGATConv` with ``v2=True`` (GATv2 dynamic attention).

In every variant the edge feature changes both *how much* (attention) and *what* (the FiLM
modulation) an outcome edge sends, so "LLM a answered well" and "LLM b answered well" give
different messages even after mean aggregation.

**Speed.** A FiLM message ``(1 + γ(e)) ⊙ x_j + β(e)`` is linear in the edge feature ``e``
(``γ(e) = G e + g₀``, ``β(e) = B e + b₀``), so its (attention-weighted) mean over in-edges is

.. math:: (1 + g_0) \\odot \\bar{x} + \\textstyle\\sum_k G_{:,k} \\odot \\overline{e_k x}
          + B\\, \\bar{e} + b_0 [\\deg > 0]

where each bar is one weighted sparse product. :func:`_film_aggregate` computes all of them
in one weighted sum — a dense matmul when one side of the relation is small (the LLMs),
else DGL's fused ``u_mul_e`` SpMM with broadcasting — so no ``[E, d]`` message tensor is ever
built (the per-edge form spent ~75% of a training step on dense ``E × d`` work).

All modules here and all context convs are built **without bias** and return exactly zero for
a receiver without in-edges (except the SAGE self weight, a function of the receiver only):
the GNN adds one bias and one self term per node type. So it does not matter whether a DGL
version's ``HeteroGraphConv`` skips relations with zero edges, and an unobserved query
node's output depends only on its in-neighbours and itself. Every module accepts a
``DGLBlock`` (mini-batch training) as well as a full graph.
"""

from __future__ import annotations

import torch
from torch import nn

from proute._deps import import_dgl

dgl = import_dgl()
fn = dgl.function
_edge_softmax = dgl.nn.functional.edge_softmax
_expand_as_pair = dgl.utils.expand_as_pair


class _FiLM(nn.Module):
    """Edge-conditioned feature-wise linear modulation ``(1 + γ(e)) ⊙ x + β(e)``, with
    ``γ`` and ``β`` linear in ``e``. Only its parameters are used by the convs below, which
    aggregate the modulation without building per-edge messages (:func:`_film_aggregate`);
    :meth:`forward` is the per-edge reference form the tests compare against."""

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


# Relations with at most this many nodes on one side (the LLMs) aggregate through a dense
# [receivers, senders] coefficient matrix and one matmul; measured on the default graph
# (290k outcome edges, 9 LLMs), ~3x faster than DGL's CPU SpMM forward and backward.
DENSE_SIDE_MAX = 512


def _weighted_sums(graph, x: torch.Tensor, coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``r[c, h, i] = Σ_{j→i} coef[ji, h, c] · x[j, h]`` and ``s[c, h, i] = Σ_{j→i} coef[ji, h, c]``
    for ``x`` ``[N_src, H, F]`` and ``coef`` ``[E, H, C]``: ``r`` is ``[C, H, N_dst, F]``, ``s``
    ``[C, H, N_dst]``; no ``[E, ·, F]`` tensor is built."""
    n_src, n_dst = graph.num_src_nodes(), graph.num_dst_nodes()
    H, C = coef.shape[1], coef.shape[2]
    if min(n_src, n_dst) <= DENSE_SIDE_MAX:
        src, dst = graph.edges()
        flat = (dst * n_src + src).to(coef.device)
        A = coef.new_zeros(C * H, n_dst * n_src).index_add(1, flat, coef.permute(2, 1, 0).reshape(C * H, -1))
        A = A.view(C, H, n_dst, n_src)
        return torch.matmul(A, x.transpose(0, 1)), A.sum(-1)
    with graph.local_scope():  # DGL's fused SpMM with broadcasting over (C, H, F)
        graph.srcdata["x"] = x.unsqueeze(1)  # [N, 1, H, F]
        graph.edata["c"] = coef.permute(0, 2, 1).unsqueeze(-1)  # [E, C, H, 1]
        graph.update_all(fn.u_mul_e("x", "c", "m"), fn.sum("m", "r"))
        graph.update_all(fn.copy_e("c", "m"), fn.sum("m", "s"))
        return graph.dstdata["r"].permute(1, 2, 0, 3), graph.dstdata["s"].squeeze(-1).permute(1, 2, 0)


def _film_aggregate(graph, x: torch.Tensor, e: torch.Tensor, film: _FiLM, weight=None, reduce="mean"):
    """``reduce`` over in-edges of ``weight_ji · [(1 + γ(e_ji)) ⊙ x_j + β(e_ji)]`` (heads: ``x``
    is ``[N_src, H, F]`` and ``weight`` ``[E, H]``; ``weight=None``: 1), without building the
    per-edge messages.

    With coefficients ``[w, w·e_1, …, w·e_k]`` per edge, one weighted sum
    (:func:`_weighted_sums`) yields per receiver ``Σ w x``, ``Σ w e_k x``, ``Σ w`` and
    ``Σ w e_k``, from which the FiLM sum follows exactly:
    ``(1 + g₀) ⊙ Σ w x + Σ_k G_k ⊙ Σ w e_k x + B Σ w e + b₀ Σ w``.
    """
    heads = x.dim() == 3
    xs = x if heads else x.unsqueeze(1)  # [N, H, F]
    H, F = xs.shape[1], xs.shape[2]
    k = e.shape[1]
    w = e.new_ones(e.shape[0], H) if weight is None else weight.reshape(e.shape[0], H)
    if reduce == "mean":  # 1 / in-degree of the receiver, on the edges (cheaper than on r)
        w = w / graph.in_degrees().to(w)[graph.edges()[1].long()].unsqueeze(-1)
    coef = torch.cat([w.unsqueeze(-1), w.unsqueeze(-1) * e.unsqueeze(1)], dim=2)  # [E, H, k+1]
    r, s = _weighted_sums(graph, xs, coef)  # [k+1, H, N_dst, F], [k+1, H, N_dst]
    G = film.gamma.weight.view(H, F, k)
    B = film.beta.weight.view(H, F, k)
    g0 = film.gamma.bias.view(H, 1, F)
    b0 = film.beta.bias.view(H, 1, F)
    r0, *rk = r.unbind(0)  # unbind, not slicing: its backward stacks, it fills no zeros
    s0, *sk = s.unbind(0)
    out = (1.0 + g0) * r0 + b0 * s0.unsqueeze(-1)  # [H, N_dst, F]
    for i in range(k):
        out = out + G[:, :, i].unsqueeze(1) * rk[i] + B[:, :, i].unsqueeze(1) * sk[i].unsqueeze(-1)
    out = out.transpose(0, 1)  # [N_dst, H, F]
    return out if heads else out.squeeze(1)


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
    al., "Inductive Representation Learning on Large Graphs", NeurIPS 2017). The mean is
    computed without per-edge messages (:func:`_film_aggregate`).

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
            out = _film_aggregate(graph, self.fc(src), e, self.film)
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
    \beta(e_{ji})]^k` (heads concatenated; output size ``out_feats * num_heads``), the sum
    computed without per-edge messages (:func:`_film_aggregate`). GAT's logits are
    ``[E, heads]``; GATv2's need ``[E, heads, out]`` (the nonlinearity is per edge). A
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
        for p in [self.attn] if self.v2 else [self.attn_l, self.attn_r, self.attn_e]:
            nn.init.xavier_normal_(p, gain=gain)

    def _logits(self, graph, hs, hd, e) -> torch.Tensor:
        H, F = self.num_heads, self.out_feats
        with graph.local_scope():
            if self.v2:
                he = self.fc_edge(e).view(-1, H, F)
                graph.srcdata["hs"], graph.dstdata["hd"] = hs, hd
                graph.apply_edges(fn.u_add_v("hs", "hd", "z"))
                return (self.leaky(graph.edata["z"] + he) * self.attn).sum(-1)
            # a_e^T W_e e is linear in e: fold a_e into W_e, no [E, H, F] tensor
            w_e = (self.fc_edge.weight.view(H, F, -1) * self.attn_e.view(H, F, 1)).sum(1)  # [H, k]
            graph.srcdata["el"] = (hs * self.attn_l).sum(-1, keepdim=True)
            graph.dstdata["er"] = (hd * self.attn_r).sum(-1, keepdim=True)
            graph.apply_edges(fn.u_add_v("el", "er", "s"))
            return self.leaky(graph.edata["s"].squeeze(-1) + e @ w_e.t())

    def forward(self, graph, feat, efeat: torch.Tensor | None = None) -> torch.Tensor:
        src, dst = _expand_as_pair(feat, graph)
        num_dst = graph.num_dst_nodes()
        H, F = self.num_heads, self.out_feats
        if graph.num_edges() == 0:
            return src.new_zeros(num_dst, H * F)
        e = _check_efeat(graph, efeat, self.edge_dim)
        hs = self.fc_src(src).view(-1, H, F)
        hd = self.fc_dst(dst[:num_dst]).view(-1, H, F)
        alpha = self.attn_drop(_edge_softmax(graph, self._logits(graph, hs, hd, e)))  # [E, H]
        out = _film_aggregate(graph, hs, e, self.film, weight=alpha, reduce="sum")
        return out.reshape(num_dst, H * F)
