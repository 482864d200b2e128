r"""The heterogeneous GNN encoder of the routing graph.

Layer ``l`` maps the states ``h^l`` (one ``[N_t, d]`` tensor per node type ``t``) to

.. math::
    z_i = W^l_{self,t}\, h^l_i + b^l_t + \sum_{r \in R(t)} \mathrm{conv}^l_r(h^l)_i, \qquad
    h^{l+1}_i = [h^l_i +]\; \mathrm{drop}(\sigma(\mathrm{norm}_t(z_i)))

(no activation/dropout after the last layer; ``h^l_i +`` with ``residual=True``). The
relation sum is :class:`dgl.nn.HeteroGraphConv` with one module per relation (see
:mod:`proute.models.layers`). The explicit per-node-type self term :math:`W_{self,t}` is
what keeps a query node's own text embedding (``GraphConv`` has no self term; a val/test
query node receives only from its user and task) and what gives a node without in-edges of
some relation a non-zero output (``HeteroGraphConv`` silently allows zero in-degree; see
docs/DESIGN.md §9).

Fast inference for unobserved queries: val/test (and brand-new) query nodes are receivers
only, so the states of user, task and LLM nodes do not depend on them. Cache the per-layer
states of those nodes once (:meth:`HeteroGNNEncoder.forward_with_states`) and compute a new
query's representation from them (:meth:`HeteroGNNEncoder.encode_new_queries`) with the
same modules on a tiny bipartite block: no full-graph pass per query.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from proute._deps import import_dgl
from proute.models.layers import CONVS, make_context_conv, make_outcome_conv

dgl = import_dgl()

OUTCOME_ETYPES = ("answered_by", "answers")
NORMS = ("layer", "batch", "none")
USER_FEATURES = ("learned", "onehot", "history")


def default_etypes(users: bool = True, tasks: bool = True, family: bool = False) -> list[tuple[str, str, str]]:
    """The canonical edge types :func:`proute.graph.build_graph` creates."""
    et = [("query", "answered_by", "llm"), ("llm", "answers", "query")]
    if users:
        et += [("user", "asks", "query"), ("query", "asked_by", "user")]
    if tasks:
        et += [("task", "contains", "query"), ("query", "belongs_to", "task")]
    if family:
        et += [("llm", "same_family", "llm")]
    return sorted(et)


class _OneHotLinear(nn.Module):
    """``Linear(num_users, dim)`` applied to the one-hot of the user index (computed as a row
    lookup, without materialising the one-hot)."""

    def __init__(self, num: int, dim: int):
        super().__init__()
        self.lin = nn.Linear(num, dim)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lin.weight.t()[idx] + self.lin.bias


def _norm(kind: str, dim: int) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(dim)
    if kind == "batch":
        return nn.BatchNorm1d(dim)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected one of {NORMS}")


class HeteroGNNEncoder(nn.Module):
    """Input projection per node type, then ``num_layers`` heterogeneous convolutions.

    The relation-wise sum with a self-connection per layer is the R-GCN scheme
    (Schlichtkrull et al., "Modeling Relational Data with Graph Convolutional Networks",
    ESWC 2018), with any of the relation modules of :mod:`proute.models.layers`.

    Parameters
    ----------
    in_dims:
        Input feature size per node type with node data ``feat``
        (:attr:`proute.graph.RoutingGraph.in_dims`); ``user`` only for ``history``.
    num_users:
        Number of user nodes (for ``learned``/``onehot`` user features).
    conv:
        ``graphconv``, ``gat``, ``gatv2`` or ``sage``: the DGL conv on context relations and
        the matching edge-feature-aware module on outcome relations
        (:mod:`proute.models.layers`).
    norm:
        ``layer``, ``batch`` or ``none``, per node type, after each layer's sum.
    edge_dim:
        Size of the outcome edge features.
    user_features:
        ``learned`` (``nn.Embedding``), ``onehot`` (fixed one-hot then ``Linear``) or
        ``history`` (``Linear`` on the user node's ``feat``).
    residual:
        Add the layer input to its output.
    etypes:
        Canonical edge types of the graphs this encoder will see (default: users, tasks, no
        family edges). Node types are those that appear in them.
    sage_aggregator:
        Aggregator of ``SAGEConv`` on context relations (``conv="sage"``).
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        num_users: int,
        embedding_dim: int = 64,
        num_layers: int = 2,
        conv: str = "graphconv",
        num_heads: int = 2,
        dropout: float = 0.1,
        norm: str = "layer",
        edge_dim: int = 1,
        user_features: str = "learned",
        residual: bool = True,
        etypes: Sequence[Sequence[str]] | None = None,
        sage_aggregator: str = "mean",
    ):
        super().__init__()
        if conv not in CONVS:
            raise ValueError(f"unknown conv {conv!r}; expected one of {CONVS}")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
        if user_features not in USER_FEATURES:
            raise ValueError(f"unknown user_features {user_features!r}; expected one of {USER_FEATURES}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1; got {num_layers}")
        if etypes is None:
            etypes = default_etypes(users=num_users > 0, tasks="task" in in_dims)
        self.etypes = sorted(tuple(map(str, et)) for et in etypes)
        self.ntypes = sorted({et[0] for et in self.etypes} | {et[2] for et in self.etypes})
        self.dim, self.num_layers, self.conv_name = embedding_dim, num_layers, conv
        self.edge_dim, self.user_features, self.residual = edge_dim, user_features, residual
        self.num_users = num_users
        d = embedding_dim

        self.in_proj = nn.ModuleDict()
        for nt in self.ntypes:
            if nt == "user" and user_features == "learned":
                self.in_proj[nt] = nn.Embedding(num_users, d)
            elif nt == "user" and user_features == "onehot":
                self.in_proj[nt] = _OneHotLinear(num_users, d)
            else:
                if nt not in in_dims:
                    raise ValueError(f"in_dims has no input size for node type {nt!r}")
                self.in_proj[nt] = nn.Linear(int(in_dims[nt]), d)

        self.convs = nn.ModuleList()
        self.self_lin = nn.ModuleList()
        self.norms = nn.ModuleList()
        for _ in range(num_layers):
            mods = {}
            for _s, rel, _d in self.etypes:
                if rel in OUTCOME_ETYPES:
                    mods[rel] = make_outcome_conv(conv, d, edge_dim, num_heads)
                else:
                    mods[rel] = make_context_conv(conv, d, num_heads, sage_aggregator)
            self.convs.append(dgl.nn.HeteroGraphConv(mods, aggregate="sum"))
            self.self_lin.append(nn.ModuleDict({nt: nn.Linear(d, d) for nt in self.ntypes}))
            self.norms.append(nn.ModuleDict({nt: _norm(norm, d) for nt in self.ntypes}))
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    # ------------------------------------------------------------------ inputs
    def input_states(self, g) -> dict[str, torch.Tensor]:
        """Layer-0 states: the input projection of every node type of ``g``."""
        h = {}
        for nt in self.ntypes:
            if nt == "user" and self.user_features in ("learned", "onehot"):
                n = g.num_nodes("user")
                if n != self.num_users:
                    raise ValueError(f"the graph has {n} user nodes; the encoder was built for {self.num_users}")
                h[nt] = self.in_proj[nt](torch.arange(n, device=g.device))
            else:
                h[nt] = self.in_proj[nt](g.nodes[nt].data["feat"].float())
        return h

    def _mod_kwargs(self, g) -> dict:
        return {
            rel: {"efeat": g.edges[(s, rel, d)].data["feat"]}
            for s, rel, d in g.canonical_etypes
            if rel in OUTCOME_ETYPES
        }

    def _combine(self, layer: int, nt: str, h_in: torch.Tensor, msg: torch.Tensor | None) -> torch.Tensor:
        z = self.self_lin[layer][nt](h_in)
        if msg is not None:
            z = z + msg
        z = self.norms[layer][nt](z)
        if layer < self.num_layers - 1:
            z = self.drop(self.act(z))
        return z + h_in if self.residual else z

    def layer(self, layer: int, g, h: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One layer on graph ``g`` (the full graph or a masked copy)."""
        msg = self.convs[layer](g, h, mod_kwargs=self._mod_kwargs(g))
        return {nt: self._combine(layer, nt, h[nt], msg.get(nt)) for nt in h}

    # ------------------------------------------------------------------ forward
    def forward_with_states(self, g) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
        """``(h_final, states)``: ``states[l][ntype]`` is the input of layer ``l``."""
        self._check_graph(g)
        h = self.input_states(g)
        states = []
        for layer in range(self.num_layers):
            states.append(h)
            h = self.layer(layer, g, h)
        return h, states

    def forward(self, g) -> dict[str, torch.Tensor]:
        """Final representation of every node, per node type."""
        return self.forward_with_states(g)[0]

    def _check_graph(self, g):
        got = sorted(tuple(et) for et in g.canonical_etypes)
        if got != self.etypes:
            raise ValueError(f"the graph has edge types {got}; the encoder was built for {self.etypes}")

    # ------------------------------------------------------------------ new queries
    def encode_new_queries(
        self,
        states: Sequence[Mapping[str, torch.Tensor]],
        query_feat: torch.Tensor,
        user_idx: torch.Tensor | None = None,
        task_idx: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final representation of unobserved query nodes from cached context states.

        An unobserved query node (val/test, or a new query) receives messages from its user
        (``asks``), its task (``contains``) and nothing on the outcome relation; it sends
        nothing. Layer by layer, this runs the same relation modules on a bipartite block
        (senders: cached states ``states[l]`` of user/task/llm nodes; receivers: the new
        queries) and the same self term, norm and activation. In eval mode the result equals
        the full-graph forward of a val/test query node with the same features.

        ``states``: ``states[l][ntype]`` for the non-query node types (extra keys ignored),
        as returned by :meth:`forward_with_states`. ``query_feat``: ``[n, in_dims['query']]``.
        ``user_idx``/``task_idx``: ``[n]`` node indices (needed when the encoder has user /
        task nodes).
        """
        if len(states) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} layers of states; got {len(states)}")
        device = query_feat.device
        n = query_feat.shape[0]
        arange = torch.arange(n, device=device)
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        blocks = []
        for s, rel, d in self.etypes:
            if d != "query":
                continue
            if s == "user":
                if user_idx is None:
                    raise ValueError("user_idx is needed: the encoder has user nodes")
                src, dst = torch.as_tensor(user_idx, device=device).long(), arange
            elif s == "task":
                if task_idx is None:
                    raise ValueError("task_idx is needed: the encoder has task nodes")
                src, dst = torch.as_tensor(task_idx, device=device).long(), arange
            elif s == "query":
                raise ValueError(f"relation {(s, rel, d)} between query nodes is not supported")
            else:  # outcome relation llm -> query: an unobserved query has no such edge
                src, dst = empty, empty
            num_src = states[0][s].shape[0]
            block = dgl.create_block(
                {(s, rel, d): (src, dst)},
                num_src_nodes={s: num_src, d: n},
                num_dst_nodes={s: 0, d: n},
                device=device,
            )[(s, rel, d)]  # the unit (one-relation) block the modules expect
            if rel in OUTCOME_ETYPES:
                block.edata["feat"] = torch.zeros(0, self.edge_dim, device=device)
            blocks.append((s, rel, block))
        hq = self.in_proj["query"](query_feat.float())
        for layer in range(self.num_layers):
            mods = self.convs[layer].mods
            outs = []
            for s, rel, block in blocks:
                kwargs = {"efeat": block.edata["feat"]} if rel in OUTCOME_ETYPES else {}
                outs.append(mods[rel](block, (states[layer][s], hq), **kwargs))
            msg = torch.stack(outs, 0).sum(0) if outs else None
            hq = self._combine(layer, "query", hq, msg)
        return hq
