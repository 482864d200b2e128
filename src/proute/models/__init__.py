"""Models: relation modules (:mod:`.layers`), the heterogeneous GNN encoder
(:mod:`.encoder`), pair decoders (:mod:`.decoder`) and the router model (:mod:`.model`).
Importing this package imports DGL."""

from proute.models.decoder import BilinearDecoder, MLPDecoder, PairDecoder, make_decoder
from proute.models.encoder import HeteroGNNEncoder, default_etypes
from proute.models.layers import EdgeFiLMConv, EdgeGATConv, make_context_conv, make_outcome_conv
from proute.models.model import ContextCache, PersonalizedRouterModel, build_model

__all__ = [
    "BilinearDecoder",
    "MLPDecoder",
    "PairDecoder",
    "make_decoder",
    "HeteroGNNEncoder",
    "default_etypes",
    "EdgeFiLMConv",
    "EdgeGATConv",
    "make_context_conv",
    "make_outcome_conv",
    "ContextCache",
    "PersonalizedRouterModel",
    "build_model",
]
