r"""The heterogeneous GNN of the routing graph (the graph encoder; the *text* encoder is
:mod:`proute.data.text_encoders`).

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
states of those nodes once (:meth:`HeteroGNN.forward_with_states`) and compute a new
query's representation from them (:meth:`HeteroGNN.encode_new_queries`) with the
same modules on a tiny bipartite block: no full-graph pass per query.

Mini-batch training: :meth:`HeteroGNN.forward_blocks` runs the same layers on the
message-flow blocks of DGL's neighbour sampler (:mod:`proute.graph.sampling`).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from proute._deps import import_dgl
from proute.models.convs import conv_family, one_in_edge
from proute.schema import LLM, QUERY, TASK, USER, USER_FEATURES, canonical_etypes, is_outcome

dgl = import_dgl()

NORMS: dict[str, Callable[[int], nn.Module]] = {
    "layer": nn.LayerNorm,
    "batch": nn.BatchNorm1d,
    "none": lambda dim: nn.Identity(),
}


class _OneHotLinear(nn.Module):
    """``Linear(num_users, dim)`` applied to the one-hot of the user index (computed as a row
    lookup, without materialising the one-hot)."""

    def __init__(self, num: int, dim: int):
        super().__init__()
        self.lin = nn.Linear(num, dim)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lin.weight.t()[idx] + self.lin.bias


class HeteroGNN(nn.Module):
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
    conv, conv_kwargs:
        A name of :data:`proute.models.convs.CONVS` (``graphconv``, ``gat``, ``gatv2``,
        ``sage``) and its own hyperparameters (e.g. ``{"num_heads": 4}`` for GAT).
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
        Canonical edge types of the graphs this GNN will see (default: users, tasks, no
        family edges). Node types are those that appear in them.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        num_users: int,
        embedding_dim: int = 64,
        num_layers: int = 2,
        conv: str = "graphconv",
        conv_kwargs: Mapping | None = None,
        dropout: float = 0.1,
        norm: str = "layer",
        edge_dim: int = 1,
        user_features: str = "learned",
        residual: bool = True,
        etypes: Sequence[Sequence[str]] | None = None,
    ):
        super().__init__()
        family, kw = conv_family(conv, dict(conv_kwargs or {}))
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {sorted(NORMS)}")
        if user_features not in USER_FEATURES:
            raise ValueError(f"unknown user_features {user_features!r}; expected one of {USER_FEATURES}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1; got {num_layers}")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1; got {embedding_dim}")
        if etypes is None:
            etypes = canonical_etypes(users=num_users > 0, tasks=TASK in in_dims)
        self.etypes = sorted(tuple(map(str, et)) for et in etypes)
        self.ntypes = sorted({et[0] for et in self.etypes} | {et[2] for et in self.etypes})
        self.dim, self.num_layers, self.conv_name = embedding_dim, num_layers, conv
        self.edge_dim, self.user_features, self.residual = edge_dim, user_features, residual
        self.num_users = num_users
        d = embedding_dim

        self.in_proj = nn.ModuleDict()
        for nt in self.ntypes:
            if nt == USER and user_features == "learned":
                self.in_proj[nt] = nn.Embedding(num_users, d)
            elif nt == USER and user_features == "onehot":
                self.in_proj[nt] = _OneHotLinear(num_users, d)
            else:
                if nt not in in_dims:
                    raise ValueError(f"in_dims has no input size for node type {nt!r}")
                self.in_proj[nt] = nn.Linear(int(in_dims[nt]), d)

        self.convs = nn.ModuleList()
        self.self_lin = nn.ModuleList()
        self.norms = nn.ModuleList()
        for _ in range(num_layers):
            mods = {
                rel: family.outcome(d, edge_dim, **kw) if is_outcome(rel) else family.context(d, **kw)
                for _s, rel, _d in self.etypes
            }
            self.convs.append(dgl.nn.HeteroGraphConv(mods, aggregate="sum"))
            self.self_lin.append(nn.ModuleDict({nt: nn.Linear(d, d) for nt in self.ntypes}))
            self.norms.append(nn.ModuleDict({nt: NORMS[norm](d) for nt in self.ntypes}))
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    # ------------------------------------------------------------------ inputs
    def project(
        self, ntype: str, ids: torch.Tensor | None = None, feat: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Layer-0 state of nodes of ``ntype``: the user embedding of user ids ``ids``, or
        the input projection of ``feat``."""
        proj: nn.Module = self.in_proj[ntype]
        if ntype == USER and self.user_features in ("learned", "onehot"):
            return proj(ids)
        if feat is None:
            raise ValueError(f"project({ntype!r}): the input features are needed")
        return proj(feat.float())

    def input_states(self, g, text=None) -> dict[str, torch.Tensor]:
        """Layer-0 states: the input projection of every node type of ``g``.

        ``text`` (optional) is ``(text_feat, text_id)``: query node ``i`` has the features
        ``text_feat[text_id[i]]``. The graph is expanded per user, so each query text appears
        once per user; projecting the distinct texts once and indexing is the same result at
        a fraction of the cost (the projection of 384-dim text features was the largest
        matmul of a training step)."""
        h = {}
        if text is not None and QUERY in self.ntypes:
            h[QUERY] = self.project(QUERY, feat=text[0])[text[1]]
        for nt in self.ntypes:
            if nt in h:
                continue
            if nt == USER and self.user_features in ("learned", "onehot"):
                n = g.num_nodes(USER)
                if n != self.num_users:
                    raise ValueError(f"the graph has {n} user nodes; the GNN was built for {self.num_users}")
                h[nt] = self.project(nt, ids=torch.arange(n, device=g.device))
            else:
                h[nt] = self.project(nt, feat=g.nodes[nt].data["feat"])
        return h

    @staticmethod
    def _mod_kwargs(g) -> dict:
        return {
            rel: {"efeat": g.edges[(s, rel, d)].data["feat"]}
            for s, rel, d in g.canonical_etypes
            if is_outcome(rel)
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
        """One layer on graph ``g`` (the full graph, a masked copy, or a block: then ``h``
        holds the block's source states and the result its destination states)."""
        msg = self.convs[layer](g, h, mod_kwargs=self._mod_kwargs(g))
        if g.is_block:
            h = {nt: h[nt][: g.num_dst_nodes(nt)] for nt in h}
        return {nt: self._combine(layer, nt, h[nt], msg.get(nt)) for nt in h}

    # ------------------------------------------------------------------ forward
    def forward_with_states(
        self, g, text=None
    ) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
        """``(h_final, states)``: ``states[l][ntype]`` is the input of layer ``l``
        (``text``: see :meth:`input_states`)."""
        self._check_graph(g)
        h = self.input_states(g, text)
        states = []
        for layer in range(self.num_layers):
            states.append(h)
            h = self.layer(layer, g, h)
        return h, states

    def forward(self, g, text=None) -> dict[str, torch.Tensor]:
        """Final representation of every node, per node type."""
        return self.forward_with_states(g, text)[0]

    def forward_blocks(
        self, blocks, node_feat: Mapping[str, torch.Tensor], text=None
    ) -> dict[str, torch.Tensor]:
        """Final representation of the destination nodes of ``blocks[-1]``; the layer-0
        states of ``blocks[0]``'s source nodes come from the full graph's input features
        ``node_feat`` (see :meth:`input_states_of`)."""
        if len(blocks) != self.num_layers:
            raise ValueError(f"{len(blocks)} blocks for a {self.num_layers}-layer GNN")
        h = self.input_states_of(blocks[0], node_feat, text)
        for layer, block in enumerate(blocks):
            h = self.layer(layer, block, h)
        return h

    def input_states_of(
        self, block, node_feat: Mapping[str, torch.Tensor], text=None
    ) -> dict[str, torch.Tensor]:
        """Layer-0 states of the source nodes of ``block`` (``block.srcdata[dgl.NID]``), with
        ``node_feat[ntype]`` the full graph's input features (``text``: see
        :meth:`input_states`; only the distinct texts of the block are projected)."""
        h = {}
        for nt in self.ntypes:
            ids = block.srcnodes[nt].data[dgl.NID]
            if nt == QUERY and text is not None:
                uniq, inv = torch.unique(text[1][ids], return_inverse=True)
                h[nt] = self.project(nt, feat=text[0][uniq])[inv]
            elif nt in node_feat:
                h[nt] = self.project(nt, feat=node_feat[nt][ids])
            else:
                h[nt] = self.project(nt, ids=ids)
        return h

    def _check_graph(self, g):
        got = sorted(tuple(et) for et in g.canonical_etypes)
        if got != self.etypes:
            raise ValueError(f"the graph has edge types {got}; the GNN was built for {self.etypes}")

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
        ``user_idx``/``task_idx``: ``[n]`` node indices (needed when the GNN has user /
        task nodes).
        """
        if len(states) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} layers of states; got {len(states)}")
        device = query_feat.device
        n = query_feat.shape[0]
        senders = {USER: ("user_idx", user_idx), TASK: ("task_idx", task_idx)}
        rels: list[
            tuple[str, str, torch.Tensor | None]
        ] = []  # (sender type, relation, sender index per query or None: no edge)
        for s, rel, d in self.etypes:
            if d != QUERY:
                continue
            if s in senders:
                name, idx = senders[s]
                if idx is None:
                    raise ValueError(f"{name} is needed: the GNN has {s} nodes")
                rels.append((s, rel, torch.as_tensor(idx, device=device).long()))
            elif s == LLM:  # outcome relation llm -> query: an unobserved query has no such edge
                rels.append((s, rel, None))
            else:
                raise ValueError(f"relation {(s, rel, d)} into query nodes is not supported")
        hq0 = self.project(QUERY, feat=query_feat)
        try:  # one in-edge per relation: every module is a map of its one sender, no graph
            return self._new_queries(states, hq0, rels, None)
        except NotImplementedError:
            pass
        arange = torch.arange(n, device=device)
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        blocks = {}
        for s, rel, idx in rels:
            src, dst = (empty, empty) if idx is None else (idx, arange)
            blocks[rel] = dgl.create_block(
                {(s, rel, QUERY): (src, dst)},
                num_src_nodes={s: states[0][s].shape[0], QUERY: n},
                num_dst_nodes={s: 0, QUERY: n},
                device=device,
            )[(s, rel, QUERY)]  # the unit (one-relation) block the modules expect
        return self._new_queries(states, hq0, rels, blocks)

    def _new_queries(self, states, hq, rels, blocks: dict | None) -> torch.Tensor:
        """The layers of :meth:`encode_new_queries`: through the modules on unit ``blocks``,
        or (``blocks=None``) through :func:`~proute.models.convs.one_in_edge`, which raises
        ``NotImplementedError`` for a module it cannot evaluate without a graph."""
        for layer in range(self.num_layers):
            mods = self.convs[layer].mods
            outs = []
            for s, rel, idx in rels:
                if blocks is None:
                    outs.append(one_in_edge(mods[rel], None if idx is None else states[layer][s][idx], hq))
                    continue
                kwargs = {"efeat": torch.zeros(0, self.edge_dim, device=hq.device)} if is_outcome(rel) else {}
                outs.append(mods[rel](blocks[rel], (states[layer][s], hq), **kwargs))
            msg = torch.stack(outs, 0).sum(0) if outs else None
            hq = self._combine(layer, QUERY, hq, msg)
        return hq
