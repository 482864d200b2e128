"""The GNN as a :class:`~proute.evaluation.scoring.Scorer`: the model in training on its
graph (:class:`GraphScorer`) and the exported router (:class:`RouterScorer`).

Both give the scores :func:`proute.evaluation.scoring.evaluate` turns into metrics, so the
GNN is evaluated exactly as every baseline is.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from proute.graph.sampling import full_neighbor_blocks
from proute.training.inputs import query_text_inputs


class GraphScorer:
    """A :class:`~proute.models.PersonalizedRouterModel` scoring (user, query) pairs of its
    :class:`~proute.graph.RoutingGraph` (rows of ``rg.pairs``; a ``node`` column, as
    ``rg.split_block`` gives, names each pair's query node).

    Val/test query nodes have no outcome edges in ``rg.graph``, so a pass over the graph
    scores them exactly as the exported router would score them one by one. The pass runs
    on full-neighbourhood blocks whose outputs are these nodes, their users and the LLMs
    (:func:`proute.graph.sampling.full_neighbor_blocks`): the numbers of a full-graph
    forward, without computing the other splits' query nodes.
    """

    def __init__(self, model, rg):
        self.model, self.rg = model, rg

    @property
    def llms(self) -> list[str]:
        return list(self.rg.llms)

    def score(self, pairs: pd.DataFrame) -> np.ndarray:
        nodes = torch.tensor(pairs["node"].to_numpy(), dtype=torch.int64, device=self.rg.device)
        return self.score_nodes(nodes)

    @torch.no_grad()
    def score_nodes(self, nodes: torch.Tensor) -> np.ndarray:
        """Logits ``[len(nodes), num_llms]`` of the query nodes ``nodes`` (ids in ``rg``)."""
        model, rg = self.model, self.rg
        model.eval()
        blocks, node_feat, pos, users = full_neighbor_blocks(rg, nodes, model.gnn.num_layers)
        h = model.gnn.forward_blocks(blocks, node_feat, query_text_inputs(rg))
        user_pos = torch.searchsorted(users, rg.query_user[nodes]) if users is not None else None
        return model.score_all(h, pos, user_pos).float().cpu().numpy()


class RouterScorer:
    """An exported :class:`~proute.router.PersonalizedRouter` (it scores through
    ``router.score``, unchanged) as a scorer.

    ``query_emb``: query id (as text) → embedding, e.g. ``PreparedData.query_embedding_dict()``;
    ``texts``: query id → text, given to the router's text task classifier (None: the
    embedding-only path). ``gold_tasks``: score each pair under its ``task`` (a task the
    router does not know is inferred), else infer every task (the live protocol) with
    ``task_mode`` (None: the router's default). ``batch_size``: score so many rows per
    call (None: all at once). After :meth:`score`, :attr:`tasks_used` holds the task the
    router used per row (:func:`proute.evaluation.scoring.task_accuracy`).
    """

    def __init__(
        self,
        router,
        query_emb: Mapping[str, np.ndarray],
        texts: Mapping[str, str] | None = None,
        *,
        gold_tasks: bool = False,
        task_mode: str | None = None,
        batch_size: int | None = None,
    ):
        self.router, self.query_emb, self.texts = router, query_emb, texts
        self.gold_tasks, self.task_mode, self.batch_size = gold_tasks, task_mode, batch_size
        self.tasks_used: list[str] = []

    @property
    def llms(self) -> list[str]:
        return list(self.router.llms)

    def score(self, pairs: pd.DataFrame) -> np.ndarray:
        q = np.stack([self.query_emb[str(i)] for i in pairs["query_id"]])
        queries = None if self.texts is None else [self.texts[str(i)] for i in pairs["query_id"]]
        tasks = self._tasks(pairs)
        users = list(pairs["user_id"])
        step = len(pairs) if self.batch_size is None else self.batch_size
        parts, used = [], []
        for s in range(0, len(pairs), max(1, step)):
            logits, chosen = self.router.score(
                None if queries is None else queries[s : s + step],
                users[s : s + step],
                None if tasks is None else tasks[s : s + step],
                query_emb=q[s : s + step],
                task_mode=self.task_mode,
            )
            parts.append(logits)
            used += chosen
        self.tasks_used = used
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _tasks(self, pairs: pd.DataFrame) -> Sequence[str | None] | None:
        if not self.gold_tasks:
            return None
        known = set(self.router.tasks)
        return [str(t) if str(t) in known else None for t in pairs["task"]]
