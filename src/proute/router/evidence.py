"""A user's (or a new LLM's) observed interactions, and the tiny graph they form.

:class:`Evidence` is what :mod:`proute.router.adaptation` accumulates per adapted user
(saved with the router as ``evidence.*`` tensors); :func:`evidence_graph` turns it into the
train-like query nodes around one user or LLM that :mod:`proute.router.adapt` propagates
through the model's own layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from proute._deps import import_dgl
from proute.schema import ANSWERED_BY, ANSWERS, ASKED_BY, ASKS, BELONGS_TO, CONTAINS, LLM, QUERY, TASK, USER

dgl = import_dgl()


@dataclass
class Evidence:
    """Observed interactions of one user: ``m`` distinct queries and ``e`` (query, LLM)
    outcomes (``qnode[i]`` indexes the query of outcome ``i``)."""

    query_emb: torch.Tensor  # [m, dq]
    task: torch.Tensor  # [m] task index
    qnode: torch.Tensor  # [e]
    llm: torch.Tensor  # [e] LLM index
    efeat: torch.Tensor  # [e, edge_dim]
    reward: torch.Tensor  # [e]

    @classmethod
    def empty(cls, dq: int, edge_dim: int) -> "Evidence":
        z = torch.zeros(0, dtype=torch.int64)
        return cls(torch.zeros(0, dq), z, z.clone(), z.clone(), torch.zeros(0, edge_dim), torch.zeros(0))

    @property
    def num_queries(self) -> int:
        return int(self.query_emb.shape[0])

    @property
    def num_outcomes(self) -> int:
        return int(self.llm.shape[0])

    def extend(self, query_emb, task: int, llms, efeat, reward) -> "Evidence":
        """A copy with one more query (its outcomes with ``llms``); a query already present
        (same embedding and task) gets the outcomes added, an (query, LLM) seen before is
        replaced by the newer outcome."""
        q = torch.as_tensor(np.asarray(query_emb, dtype=np.float32)).reshape(1, -1)
        same = ((self.query_emb - q).abs().amax(1) < 1e-6) & (self.task == task)
        if bool(same.any()):
            qi = int(same.nonzero()[0, 0])
            qemb, tasks = self.query_emb, self.task
        else:
            qi = self.num_queries
            qemb = torch.cat([self.query_emb, q])
            tasks = torch.cat([self.task, torch.tensor([task])])
        llms = torch.as_tensor(llms, dtype=torch.int64).reshape(-1)
        keep = ~((self.qnode == qi) & torch.isin(self.llm, llms))
        return Evidence(
            qemb,
            tasks,
            torch.cat([self.qnode[keep], torch.full_like(llms, qi)]),
            torch.cat([self.llm[keep], llms]),
            torch.cat([self.efeat[keep], torch.as_tensor(efeat, dtype=torch.float32).reshape(len(llms), -1)]),
            torch.cat([self.reward[keep], torch.as_tensor(reward, dtype=torch.float32).reshape(-1)]),
        )

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{k}": getattr(self, k).contiguous() for k in self.__dataclass_fields__}

    @classmethod
    def from_tensors(cls, tensors: dict, prefix: str) -> "Evidence":
        return cls(**{k: tensors[f"{prefix}.{k}"] for k in cls.__dataclass_fields__})


def evidence_graph(gnn, ev: Evidence, num_tasks: int, num_llms: int, center: str):
    """The tiny graph: one ``center`` node (user or LLM) and the evidence query nodes."""
    m = ev.num_queries
    ar = torch.arange(m)
    zeros = torch.zeros(m, dtype=torch.int64)
    data = {}
    for et in gnn.etypes:
        et = tuple(et)
        if et == ASKS:
            data[et] = (zeros, ar) if center == USER else (zeros[:0], ar[:0])
        elif et == ASKED_BY:
            data[et] = (ar, zeros) if center == USER else (ar[:0], zeros[:0])
        elif et == CONTAINS:
            data[et] = (ev.task, ar)
        elif et == BELONGS_TO:
            data[et] = (ar, ev.task)
        elif et == ANSWERED_BY:
            data[et] = (ev.qnode, ev.llm)
        elif et == ANSWERS:
            data[et] = (ev.llm, ev.qnode)
        else:  # same_family and anything else: not part of the evidence
            data[et] = (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    num = {QUERY: m, TASK: num_tasks, LLM: num_llms, USER: 1}
    num = {k: v for k, v in num.items() if k in gnn.ntypes}
    g = dgl.heterograph(data, num_nodes_dict=num, idtype=torch.int64)
    for rel in (ANSWERED_BY, ANSWERS):
        if rel in g.canonical_etypes:
            g.edges[rel].data["feat"] = ev.efeat.float()
    return g
