"""Decoders: score (user, query, llm) triples from node representations.

Every decoder returns **logits** (no sigmoid): the loss applies ``BCEWithLogitsLoss`` or a
softmax over LLMs itself (the reference code applied a sigmoid and then BCEWithLogits, a
double sigmoid: docs/DESIGN.md §4, flaw 3). With ``use_user=False`` (graphs without user nodes) the user term is
dropped and ``h_user`` must be None.

Two call forms:

``decoder(h_query, h_llm, h_user)``        row-aligned pairs ``[n, d]`` each -> ``[n]``;
``decoder.score_all(h_query, h_llms, h_user)``  every query against all LLMs
                                            ``[n, d], [L, d], [n, d]`` -> ``[n, L]``.
"""

from __future__ import annotations

import torch
from torch import nn

DECODERS = ("mlp", "bilinear")


class PairDecoder(nn.Module):
    """Base class: subclasses implement :meth:`forward` on row-aligned pairs."""

    use_user: bool = True

    def _check_user(self, h_user):
        if self.use_user and h_user is None:
            raise ValueError(f"{type(self).__name__} uses a user term: pass h_user")
        if not self.use_user and h_user is not None:
            raise ValueError(f"{type(self).__name__} was built without users (use_user=False): h_user must be None")

    def score_all(
        self, h_query: torch.Tensor, h_llms: torch.Tensor, h_user: torch.Tensor | None = None, chunk: int = 4096
    ) -> torch.Tensor:
        """Logits ``[n, L]`` of each query (row) against every LLM (in chunks of rows)."""
        n, L = h_query.shape[0], h_llms.shape[0]
        outs = []
        for i in range(0, n, chunk):
            hq = h_query[i : i + chunk]
            m = hq.shape[0]
            hu = None if h_user is None else h_user[i : i + chunk].repeat_interleave(L, 0)
            out = self(hq.repeat_interleave(L, 0), h_llms.repeat(m, 1), hu)
            outs.append(out.view(m, L))
        return torch.cat(outs, 0) if outs else h_query.new_zeros(0, L)


class MLPDecoder(PairDecoder):
    """MLP on ``[h_user, h_query, h_llm, h_query * h_llm, h_user * h_llm]`` (the user
    entries only with ``use_user``). The two products let a single hidden layer express
    query-LLM and user-LLM affinities (the user's preference for an LLM)."""

    def __init__(self, dim: int, hidden: int | None = None, num_layers: int = 2, dropout: float = 0.1, use_user: bool = True):
        super().__init__()
        self.use_user = use_user
        hidden = hidden or dim
        in_dim = dim * (5 if use_user else 3)
        layers: list[nn.Module] = []
        for _ in range(max(num_layers - 1, 0)):
            layers += [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout)]
            in_dim = hidden
        layers.append(nn.Linear(in_dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, h_query, h_llm, h_user=None) -> torch.Tensor:
        self._check_user(h_user)
        parts = [h_query, h_llm, h_query * h_llm]
        if self.use_user:
            parts = [h_user] + parts + [h_user * h_llm]
        return self.mlp(torch.cat(parts, -1)).squeeze(-1)


class BilinearDecoder(PairDecoder):
    """``(h_query + h_user)^T W h_llm + b`` (``h_user`` only with ``use_user``): the user
    term is a learned per-user preference over LLMs added to the query-LLM affinity."""

    def __init__(self, dim: int, use_user: bool = True):
        super().__init__()
        self.use_user = use_user
        self.W = nn.Parameter(torch.empty(dim, dim))
        # std 1/dim: initial logits of order 1 for unit-scale representations
        nn.init.normal_(self.W, std=1.0 / dim)
        self.bias = nn.Parameter(torch.zeros(()))

    def _left(self, h_query, h_user):
        self._check_user(h_user)
        return (h_query + h_user if self.use_user else h_query) @ self.W

    def forward(self, h_query, h_llm, h_user=None) -> torch.Tensor:
        return (self._left(h_query, h_user) * h_llm).sum(-1) + self.bias

    def score_all(self, h_query, h_llms, h_user=None, chunk: int = 4096) -> torch.Tensor:
        return self._left(h_query, h_user) @ h_llms.t() + self.bias


def make_decoder(kind: str, dim: int, use_user: bool = True, hidden: int | None = None, dropout: float = 0.1) -> PairDecoder:
    if kind == "mlp":
        return MLPDecoder(dim, hidden=hidden, dropout=dropout, use_user=use_user)
    if kind == "bilinear":
        return BilinearDecoder(dim, use_user=use_user)
    raise ValueError(f"unknown decoder {kind!r}; expected one of {DECODERS}")
