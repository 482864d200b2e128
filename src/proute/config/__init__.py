"""Hydra glue: where the configs live, the resolvers they use, composition in code, and the
check of a composed config before any data is read.

Entry points (``python -m proute.train``, ``python -m proute.data``) point Hydra at the
project's top-level ``conf/`` through an absolute ``config_path``
(:func:`proute.config.paths.config_dir`); notebooks and tests use :func:`compose`
(:mod:`.composition`) for the same configs without a Hydra run. :func:`validate_config`
(:mod:`.checks`, over the rules of :mod:`.rules`) checks every value a train run uses
(ranges, types, names in proute's registries, and the pairs of keys that must agree) and
raises one :class:`ConfigError` that names each bad key, so a typo fails in a second instead
of after the data is loaded or, worse, by training something else.
"""

from proute.config import paths
from proute.config.checks import ConfigError, validate_config
from proute.config.composition import compose, register_resolvers
from proute.config.rules import DEVICES, EDGE_DIMS, RULES, Rule

__all__ = [
    "DEVICES",
    "EDGE_DIMS",
    "RULES",
    "ConfigError",
    "Rule",
    "compose",
    "paths",
    "register_resolvers",
    "validate_config",
]
