"""The routing graph: construction (:mod:`.builder`) and training-time edge masking
(:mod:`.masking`). Importing this package imports DGL."""

from proute.graph.builder import OUTCOME_ETYPES, RoutingGraph, build_graph
from proute.graph.masking import (
    ColdStartMasking,
    MaskSample,
    QueryMasking,
    RandomEdgeMasking,
    UserBalancedMasking,
)

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
