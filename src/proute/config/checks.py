"""The check of a composed train config before any data is read: every rule of
:mod:`proute.config.rules`, names that must be in proute's registries and the keys that must
agree with each other, reported together in one :class:`ConfigError`."""

from __future__ import annotations

import inspect
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig

from proute.config.rules import (
    _ABSENT,
    RULES,
    _fanout_problem,
    _interpolated,
    _number,
    _ratio_problem,
    _select,
    _show,
)
from proute.schema import EDGE_FEATURES, USER_FEATURES

#: One problem: the key as written on the command line, its value, what was expected.
Problem = tuple[str, Any, str]


class ConfigError(ValueError):
    """A config value proute cannot run with.

    The message names each offending key as it is written on the command line
    (``trainer.patience``), its value and what was expected.
    """


def _name_problems(cfg: DictConfig) -> list[Problem]:
    """Names that must be in a registry: loss, monitor, norm, decoder, edge and user
    features, pooling, baselines, archetypes."""
    # Local imports: the registries live with the model, trainer and baseline code (DGL,
    # torch), which `proute.config`'s importers (the data CLI) must not load.
    from proute.baselines import BASELINES
    from proute.data.text_encoders import _POOLINGS
    from proute.data.users import ArchetypeUsers
    from proute.models.decoder import DECODERS
    from proute.models.gnn import NORMS
    from proute.training.trainer import LOSSES, MONITORS

    out: list[Problem] = []
    for key, options in (
        ("trainer.loss", LOSSES),
        ("trainer.monitor", MONITORS),
        ("model.norm", NORMS),
        ("model.decoder", DECODERS),
        ("graph.edge_feature", EDGE_FEATURES),
        ("graph.user_features", USER_FEATURES),
        ("text_encoder.pooling", _POOLINGS),
    ):
        value = _select(cfg, key)
        if value is not _ABSENT and value not in tuple(options):
            out.append((key, value, f"one of {sorted(options)}"))
    baselines = _select(cfg, "baselines")
    if baselines is not _ABSENT:
        bad = [b for b in baselines or [] if b not in BASELINES]
        if not isinstance(baselines, list) or bad:
            out.append(("baselines", baselines, f"a list of names from {sorted(BASELINES)}"))
    export = _select(cfg, "export_baselines")
    if export is not _ABSENT and export is not None:
        from proute.baselines.state import exportable

        if not isinstance(export, list) or any(b not in exportable() for b in export):
            out.append(("export_baselines", export, f"a list of names from {exportable()}"))
    archetypes = _select(cfg, "users.archetypes")
    if archetypes is not _ABSENT:
        if not archetypes or any(a not in ArchetypeUsers.KNOWN for a in archetypes):
            out.append(
                ("users.archetypes", archetypes, f"a non-empty list from {list(ArchetypeUsers.KNOWN)}")
            )
    return out


def _model_problems(cfg: DictConfig) -> list[Problem]:
    """The conv and its ``conv_kwargs`` (with ``embedding_dim`` a multiple of ``num_heads``),
    the decoder's ``decoder_kwargs``, and ``user_features=history`` only with user nodes."""
    from proute.models.convs import CONVS  # local: DGL (see _name_problems)
    from proute.models.decoder import DECODERS

    out: list[Problem] = []
    conv, conv_kwargs = _select(cfg, "model.conv"), _select(cfg, "model.conv_kwargs")
    if conv is not _ABSENT and conv not in CONVS:
        out.append(("model.conv", conv, f"one of {sorted(CONVS)}"))
    elif conv is not _ABSENT and isinstance(conv_kwargs, dict):
        takes = CONVS[conv].defaults
        unknown = sorted(set(conv_kwargs) - set(takes))
        if unknown:
            out.append(("model.conv_kwargs", conv_kwargs, f"keys from {sorted(takes)} for conv {conv!r}"))
        heads, dim = {**takes, **conv_kwargs}.get("num_heads"), _select(cfg, "model.embedding_dim")
        if isinstance(heads, int) and heads >= 1 and isinstance(dim, int) and dim % heads:
            key = "embedding_dim" if _interpolated(cfg, "model.embedding_dim") else "model.embedding_dim"
            out.append((key, dim, f"a multiple of model.conv_kwargs.num_heads={heads}"))
    decoder, dec_kwargs = _select(cfg, "model.decoder"), _select(cfg, "model.decoder_kwargs")
    if decoder in DECODERS and isinstance(dec_kwargs, dict):
        params = set(inspect.signature(DECODERS[decoder]).parameters) - {"dim", "use_user"}
        unknown = sorted(set(dec_kwargs) - params)
        if unknown:
            out.append(
                ("model.decoder_kwargs", dec_kwargs, f"keys from {sorted(params)} (unknown: {unknown})")
            )
    if _select(cfg, "graph.user_features") == "history" and _select(cfg, "graph.user_nodes") is False:
        out.append(("graph.user_features", "history", "learned or onehot when graph.user_nodes=false"))
    return out


def _trainer_problems(cfg: DictConfig) -> list[Problem]:
    """``trainer.steps_per_epoch`` (null only for the mini-batch trainer), ``trainer.fanouts``
    (one entry per GNN layer) and the mini-batch trainer with ``masking=query``."""
    from proute.graph.masking import QueryMasking  # local: DGL (see _name_problems)
    from proute.training.trainer import MiniBatchTrainer

    out: list[Problem] = []
    trainer_target = _select(cfg, "trainer._target_")
    trainer = get_class(trainer_target) if isinstance(trainer_target, str) else None
    minibatch = trainer is not None and issubclass(trainer, MiniBatchTrainer)
    steps = _select(cfg, "trainer.steps_per_epoch")
    if steps is not _ABSENT:
        note = " (null: one pass over the train query nodes)" if minibatch else " (full-graph trainer)"
        problem = _number(1, integer=True, null=minibatch, note=note)(steps)
        if problem:
            out.append(("trainer.steps_per_epoch", steps, problem))
    fanouts = _select(cfg, "trainer.fanouts")
    if fanouts is not _ABSENT:
        problem = _fanout_problem(fanouts, _select(cfg, "model.num_layers"))
        if problem:
            out.append(("trainer.fanouts", fanouts, problem))
    masking_target = _select(cfg, "masking._target_")
    if minibatch and isinstance(masking_target, str):
        if not issubclass(get_class(masking_target), QueryMasking):
            out.append(
                (
                    "masking",
                    masking_target,
                    "masking=query with trainer=minibatch (the other maskings hide single edges: "
                    "use trainer=fullgraph)",
                )
            )
    return out


def _registry_problems(cfg: DictConfig) -> list[Problem]:
    """Names that must be in proute's registries, and keys that must agree with each other
    (imports the model code, so DGL)."""
    return _name_problems(cfg) + _model_problems(cfg) + _trainer_problems(cfg)


def validate_config(cfg: DictConfig) -> None:
    """Check a composed train config before any data is read; raise :class:`ConfigError`.

    Checks every key of :data:`RULES` the config has (learning rate > 0, weight decay
    >= 0, counts >= 1, rates in (0, 1), ``edge_dim`` in :data:`EDGE_DIMS`, ``device`` in
    :data:`DEVICES` or ``cuda:N`` ...), ``split_ratio`` (three numbers > 0 summing to 1),
    names that must be in proute's registries (loss, monitor, conv and its
    ``conv_kwargs``, decoder and its ``decoder_kwargs``, norm, baselines, archetypes,
    pooling), ``trainer.steps_per_epoch`` (null only for the mini-batch trainer),
    ``trainer.fanouts`` (one entry per GNN layer) and the keys that must agree
    (``embedding_dim`` a multiple of ``num_heads``; the mini-batch trainer with
    ``masking=query``; ``user_features=history`` with user nodes). The message lists every
    problem, one line each: the key, its value, what was expected.

    >>> from proute.config import compose
    >>> validate_config(compose("train", ["learning_rate=-1", "trainer.patience=0"]))
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
      ...
    proute.config.checks.ConfigError: 2 invalid config values:
      learning_rate=-1: expected a number > 0
      trainer.patience=0: expected an integer >= 1 (epochs without a better validation value ...)
    """
    problems: list[Problem] = []
    checks = [*RULES.items(), ("split_ratio", _ratio_problem), ("split.ratios", _ratio_problem)]
    for key, rule in checks:
        try:
            if _interpolated(cfg, key):
                continue
            value = _select(cfg, key)
        except Exception as err:  # an interpolation that does not resolve
            problems.append((key, "?", f"a value that resolves ({err})"))
            continue
        wrong = None if value is _ABSENT else rule(value)
        if wrong is not None:
            problems.append((key, value, wrong))
    problems += _registry_problems(cfg)
    if problems:
        lines = "\n".join(f"  {key}={_show(value)}: expected {what}" for key, value, what in problems)
        n = len(problems)
        raise ConfigError(f"{n} invalid config value{'s' if n > 1 else ''}:\n{lines}")
