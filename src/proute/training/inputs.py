"""What the GNN's forward pass reads from a :class:`~proute.graph.RoutingGraph` beside its blocks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def query_text_inputs(rg) -> tuple[torch.Tensor, torch.Tensor]:
    """``(text_feat, text_id)`` of the graph's query nodes (cached on ``rg``): the features of
    each distinct query text once, and each query node's row in them (see
    :meth:`proute.models.HeteroGNN.input_states`)."""
    if "query_text" not in rg._cache:
        text_id, uniq = pd.factorize(rg.query_nodes["query_id"], sort=False)
        first = np.unique(text_id, return_index=True)[1]
        feat = rg.graph.nodes["query"].data["feat"]
        rows = torch.as_tensor(first, device=feat.device)
        rg._cache["query_text"] = (
            feat[rows],
            torch.as_tensor(text_id, dtype=torch.int64, device=feat.device),
        )
    return rg._cache["query_text"]
