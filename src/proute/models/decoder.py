"""Decoders: score (user, query, llm) triples from node representations.

Every decoder returns **logits** (no sigmoid): the loss applies ``BCEWithLogitsLoss`` or a
softmax over LLMs itself (the reference code applied a sigmoid and then BCEWithLogits, a
double sigmoid: docs/DESIGN.md §4, flaw 3). With ``use_user=False`` (graphs without user
nodes) the user term is dropped and ``h_user`` must be None.

Two call forms:

``decoder(h_query, h_llm, h_user)``        row-aligned pairs ``[n, d]`` each -> ``[n]``;
``decoder.score_all(h_query, h_llms, h_user)``  every query against all LLMs
                                            ``[n, d], [L, d], [n, d]`` -> ``[n, L]``.
"""

from __future__ import annotations

import torch
from torch import nn


class PairDecoder(nn.Module):
    """Base class: subclasses implement :meth:`forward` on row-aligned pairs."""

    use_user: bool = True

    def _check_user(self, h_user):
        if self.use_user and h_user is None:
            raise ValueError(f"{type(self).__name__} uses a user term: pass h_user")
        if not self.use_user and h_user is not None:
            raise ValueError(
                f"{type(self).__name__} was built without users (use_user=False): h_user must be None"
            )

    def score_all(
        self,
        h_query: torch.Tensor,
        h_llms: torch.Tensor,
        h_user: torch.Tensor | None = None,
        chunk: int = 4096,
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

    def __init__(
        self,
        dim: int,
        hidden: int | None = None,
        num_layers: int = 2,
        dropout: float = 0.1,
        use_user: bool = True,
    ):
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

    def score_all(self, h_query, h_llms, h_user=None, chunk: int = 4096) -> torch.Tensor:
        """Logits ``[n, L]``, equal to :meth:`forward` on every (query, LLM) pair, with the
        first layer split by input part: ``W_q h_q (+ W_u h_u)`` once per query,
        ``W_l h_l`` once per LLM, and each product term ``W_x (h_x ⊙ h_l)`` as one matmul of
        ``h_x`` with ``[W_x diag(h_l)]_l`` — no ``[n·L, 5d]`` input is built."""
        if len(self.mlp) == 1:
            return super().score_all(h_query, h_llms, h_user, chunk)
        self._check_user(h_user)
        n, L = h_query.shape[0], h_llms.shape[0]
        step = max(1, chunk * 16)  # rows per chunk: bounds the [rows, L, hidden] tensor
        outs = [
            self._score_all_rows(
                h_query[i : i + step], h_llms, None if h_user is None else h_user[i : i + step]
            )
            for i in range(0, n, step)
        ]
        return torch.cat(outs, 0) if outs else h_query.new_zeros(0, L)

    def _score_all_rows(self, h_query, h_llms, h_user) -> torch.Tensor:
        first = self.mlp[0]
        n, L, d = h_query.shape[0], h_llms.shape[0], h_query.shape[1]
        W = first.weight.view(first.out_features, -1, d)  # [hidden, parts, d]
        if self.use_user:
            w_u, w_q, w_l, w_ql, w_ul = W.unbind(1)
        else:
            w_q, w_l, w_ql = W.unbind(1)
        node = h_query @ w_q.t()  # [n, hidden]
        pair = h_query @ (h_llms.unsqueeze(1) * w_ql.unsqueeze(0)).reshape(-1, d).t()  # [n, L*hidden]
        if self.use_user:
            node = node + h_user @ w_u.t()
            pair = pair + h_user @ (h_llms.unsqueeze(1) * w_ul.unsqueeze(0)).reshape(-1, d).t()
        z = pair.view(n, L, -1) + node.unsqueeze(1) + (h_llms @ w_l.t() + first.bias).unsqueeze(0)
        return self.mlp[1:](z).squeeze(-1)


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


# A new decoder is one class and one line here; its own hyperparameters are the keyword
# arguments of its class (``decoder_kwargs`` in the model config) besides dim and use_user.
DECODERS: dict[str, type[PairDecoder]] = {"mlp": MLPDecoder, "bilinear": BilinearDecoder}


def make_decoder(kind: str, dim: int, use_user: bool = True, **decoder_kwargs) -> PairDecoder:
    """The decoder registered as ``kind`` (:data:`DECODERS`)."""
    if kind not in DECODERS:
        raise ValueError(f"unknown decoder {kind!r}; expected one of {sorted(DECODERS)}")
    try:
        return DECODERS[kind](dim, use_user=use_user, **decoder_kwargs)
    except TypeError as exc:
        raise ValueError(f"decoder {kind!r}: bad decoder_kwargs {decoder_kwargs} ({exc})") from None
