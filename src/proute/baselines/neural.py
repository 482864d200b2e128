"""``mlp`` and ``mf``: small torch models (CPU) that regress the reward of every LLM.

Both learn from the training (user, query) rows: a query embedding (scaled to unit length,
as cosine-based encoders mean it) and a learned user embedding in, the reward of each LLM
out, the squared error taken over the observed LLMs only. Training is mini-batch Adam
(batches of 512 rows, smaller for a table of fewer than 16 batches) for at most
``max_epochs`` epochs; with a validation block, after each epoch the validation reward
(the metric of :mod:`proute.evaluation.metrics`) is measured, training stops after ``patience``
epochs without a gain and the best epoch's weights are kept; without one,
``epochs_without_val`` epochs are trained. A user the training rows do not have gets the
mean of the learned user embeddings; an LLM they do not have is scored -inf (never picked
while another is observed). Random draws are seeded from ``seed`` without touching
torch's global generator.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

from proute.baselines.base import (
    BaselineRouter,
    QueryEmbeddings,
    mean_pick_reward,
    normalise_rows,
    reward_matrix,
)
from proute.data.table import USER_COLUMN


class _TorchRewardRouter(BaselineRouter):
    needs_query_emb = True
    max_epochs = 40
    patience = 3
    epochs_without_val = 15
    batch_size = 512
    min_steps = 16  # gradient steps per epoch at least
    learning_rate = 3e-3

    def _module(self, in_dim: int, num_users: int) -> Any:
        raise NotImplementedError

    def fit(self, train, query_emb=None, val=None):
        import torch

        emb = QueryEmbeddings(query_emb, self.name)
        pairs, reward = reward_matrix(train, self.llm_names, self.name)
        x = torch.from_numpy(normalise_rows(emb.rows(pairs["query_id"].to_numpy(), self.name)))
        self.emb_, self.users_ = emb, pd.Index(pd.unique(pairs[USER_COLUMN]))
        u = torch.from_numpy(self.users_.get_indexer(pairs[USER_COLUMN]).astype(np.int64))
        seen = torch.from_numpy(~np.isnan(reward))
        self.trained_llms_ = seen.any(0).numpy()  # an LLM without training rows is never picked
        y = torch.from_numpy(np.nan_to_num(reward, nan=0.0).astype(np.float32))
        epochs = self.max_epochs if val is not None else self.epochs_without_val
        batch = max(1, min(self.batch_size, -(-len(x) // self.min_steps)))  # small tables: smaller batches
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.module_ = self._module(x.shape[1], len(self.users_))
            opt = torch.optim.Adam(
                self.module_.parameters(),
                lr=self.learning_rate,
                weight_decay=float(self.params["weight_decay"]),
            )
            best, best_epoch, best_state, history = -np.inf, -1, None, []
            for epoch in range(epochs):
                self.module_.train()
                for idx in torch.randperm(len(x)).split(batch):
                    err = (self.module_(x[idx], u[idx]) - y[idx]) ** 2
                    loss = err[seen[idx]].mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                if val is None:
                    continue
                r = mean_pick_reward(self.score(val[0]), val[1])
                history.append(r)
                if r > best + 1e-9:
                    best, best_epoch, best_state = r, epoch, copy.deepcopy(self.module_.state_dict())
                elif epoch - best_epoch >= self.patience:
                    break
            if best_state is not None:
                self.module_.load_state_dict(best_state)
        self.fit_info_ = {"epochs": epoch + 1, "best_epoch": best_epoch + 1 if val is not None else epoch + 1}
        return self

    def score(self, pairs, dense=None):
        import torch

        x = torch.from_numpy(normalise_rows(self.emb_.rows(pairs["query_id"].to_numpy(), self.name)))
        u = self.users_.get_indexer(pairs[USER_COLUMN])
        u = torch.from_numpy(np.where(u < 0, len(self.users_), u).astype(np.int64))  # unknown: the mean
        self.module_.eval()
        with torch.no_grad():
            out = self.module_(x, u).double().numpy()
        out[:, ~self.trained_llms_] = -np.inf
        return out


def _user_vectors(table, u):
    """Rows ``u`` of a user embedding table, index ``num_users`` being their mean."""
    import torch

    return torch.cat([table.weight, table.weight.mean(0, keepdim=True)])[u]


class MLPRouter(_TorchRewardRouter):
    """An MLP on ``[query embedding, learned user embedding]`` (two hidden ReLU layers of
    ``hidden`` units) with one output per LLM, its predicted reward."""

    name = "mlp"
    grid = {"hidden": (64, 256), "weight_decay": (0.0, 1e-4)}
    defaults = {"hidden": 128, "weight_decay": 1e-4, "user_dim": 16}

    def _module(self, in_dim, num_users):
        from torch import nn

        hidden, user_dim, n_llms = (
            int(self.params["hidden"]),
            int(self.params["user_dim"]),
            len(self.llm_names),
        )

        class MLP(nn.Module):
            def __init__(self):
                super().__init__()
                self.users = nn.Embedding(num_users, user_dim)
                nn.init.normal_(self.users.weight, std=0.1)
                self.net = nn.Sequential(
                    nn.Linear(in_dim + user_dim, hidden),
                    nn.ReLU(),
                    nn.Linear(hidden, hidden),
                    nn.ReLU(),
                    nn.Linear(hidden, n_llms),
                )

            def forward(self, x, u):
                import torch

                return self.net(torch.cat([x, _user_vectors(self.users, u)], dim=1))

        return MLP()


class MFRouter(_TorchRewardRouter):
    """Matrix factorisation in the style of RouteLLM's MF router (Ong et al., 2024), with a
    user term: ``score(u, q, l) = w · (v_l / |v_l| ⊙ (W q + e_u)) + b_l``, a projection
    ``W`` of the query embedding to ``dim`` factors, a learned user vector ``e_u``, a
    normalised LLM vector ``v_l``, a shared weight vector ``w`` and an LLM bias. RouteLLM
    fits it to pairwise preferences; here it regresses each observed reward."""

    name = "mf"
    grid = {"dim": (8, 32, 128)}
    defaults = {"dim": 32, "weight_decay": 0.0}

    def _module(self, in_dim, num_users):
        import torch
        from torch import nn

        dim, n_llms = int(self.params["dim"]), len(self.llm_names)

        class MF(nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = nn.Linear(in_dim, dim, bias=False)
                self.users = nn.Embedding(num_users, dim)
                nn.init.normal_(self.users.weight, std=0.1)
                self.llms = nn.Parameter(torch.randn(n_llms, dim))
                self.w = nn.Parameter(torch.ones(dim))
                self.bias = nn.Parameter(torch.zeros(n_llms))

            def forward(self, x, u):
                h = self.proj(x) + _user_vectors(self.users, u)
                v = nn.functional.normalize(self.llms, dim=1)
                return (h * self.w) @ v.T + self.bias

        return MF()
