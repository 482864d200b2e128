"""proute: personalized LLM routing with heterogeneous graph neural networks on DGL.

Importing :mod:`proute` is cheap and has no side effects: no network, no logging set-up,
no torch/DGL import. ``proute.PersonalizedRouter`` is imported on first access.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["PersonalizedRouter", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "PersonalizedRouter":
        from proute.router import PersonalizedRouter

        return PersonalizedRouter
    raise AttributeError(f"module 'proute' has no attribute {name!r}")
