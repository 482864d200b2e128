"""The routing graph: construction (:mod:`.builder`), the built graph (:mod:`.routing_graph`)
and training-time edge masking (:mod:`.masking`). Importing this package imports DGL."""

from proute.graph.builder import OUTCOME_ETYPES, build_graph
from proute.graph.masking import (
    ColdStartMasking,
    MaskSample,
    QueryMasking,
    RandomEdgeMasking,
    UserBalancedMasking,
)
from proute.graph.routing_graph import RoutingGraph

__all__ = [
    "OUTCOME_ETYPES",
    "RoutingGraph",
    "build_graph",
    "MaskSample",
    "RandomEdgeMasking",
    "QueryMasking",
    "UserBalancedMasking",
    "ColdStartMasking",
]
