"""Models: relation modules (:mod:`.layers`) and their registry (:mod:`.convs`), the heterogeneous GNN
(:mod:`.gnn`), pair decoders (:mod:`.decoder`) and the router model (:mod:`.model`).
Importing this package imports DGL."""

from proute.models.convs import CONVS, make_context_conv, make_outcome_conv
from proute.models.decoder import DECODERS, BilinearDecoder, MLPDecoder, PairDecoder, make_decoder
from proute.models.gnn import HeteroGNN
from proute.models.layers import EdgeFiLMConv, EdgeGATConv
from proute.models.model import ContextCache, PersonalizedRouterModel, build_model

__all__ = [
    "BilinearDecoder",
    "MLPDecoder",
    "PairDecoder",
    "make_decoder",
    "HeteroGNN",
    "CONVS",
    "DECODERS",
    "EdgeFiLMConv",
    "EdgeGATConv",
    "make_context_conv",
    "make_outcome_conv",
    "ContextCache",
    "PersonalizedRouterModel",
    "build_model",
]
