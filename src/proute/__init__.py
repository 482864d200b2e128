"""proute: personalized LLM routing with heterogeneous graph neural networks on DGL.

Importing :mod:`proute` is cheap and has no side effects: no network, no logging set-up,
no DGL import. Heavy pieces are imported from their sub-modules when first used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
