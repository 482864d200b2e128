"""Hydra glue: where the configs live, the resolvers they use, composition in code, and the
check of a composed config before any data is read.

Entry points (``python -m proute.train``, ``python -m proute.data``) point Hydra at the
project's top-level ``conf/`` through an absolute ``config_path``
(:func:`proute.config.paths.config_dir`); notebooks and tests use :func:`compose` for the same
configs without a Hydra run. :func:`validate_config` checks every value a train run uses
(ranges, types, names in proute's registries, and the pairs of keys that must agree) and
raises one :class:`ConfigError` that names each bad key, so a typo fails in a second instead
of after the data is loaded or, worse, by training something else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from proute.config import paths


def register_resolvers() -> None:
    """Register ``${proute_root:}`` (the project folder) once."""
    if not OmegaConf.has_resolver("proute_root"):
        OmegaConf.register_new_resolver("proute_root", lambda: str(paths.project_root()))


def compose(config_name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with overrides, outside a Hydra run.

    >>> cfg = compose("data", ["users.preferences=[0.1,0.9]"])
    >>> list(cfg.users.preferences)
    [0.1, 0.9]
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(paths.config_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


# --------------------------------------------------------------------------- validation


class ConfigError(ValueError):
    """A config value proute cannot run with.

    The message names each offending key as it is written on the command line
    (``trainer.patience``), its value and what was expected.
    """


#: ``edge_dim`` values the graph builder supports: 1 (``edge_feature``) or 2
#: (``[cost_norm, performance]``).
EDGE_DIMS = (1, 2)
#: What ``device`` (and ``text_encoder.device``) may be, besides ``cuda:N``.
DEVICES = ("auto", "cpu", "cuda")

#: A rule returns ``None`` for a good value, else what was expected.
Rule = Callable[[Any], "str | None"]
_ABSENT = object()


def _number(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    integer: bool = False,
    null: bool = False,
    note: str = "",
) -> Rule:
    """A finite number (an int with ``integer``) in the given range; ``null`` allows None."""
    kind = "an integer" if integer else "a number"
    if lo is not None and hi is not None:
        kind += f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        kind += f" {'>' if lo_open else '>='} {lo:g}"
    expected = ("null or " if null else "") + kind + note

    def check(v: Any) -> str | None:
        if v is None:
            return None if null else expected
        if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
            return expected
        if not math.isfinite(v):
            return expected
        if lo is not None and (v <= lo if lo_open else v < lo):
            return expected
        if hi is not None and (v >= hi if hi_open else v > hi):
            return expected
        return None

    return check


def _choice(options: Sequence, note: str = "") -> Rule:
    return lambda v: None if v in tuple(options) else f"one of {list(options)}{note}"


def _flag(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _device(v: Any) -> str | None:
    ok = v in DEVICES or (isinstance(v, str) and re.fullmatch(r"cuda:\d+", v) is not None)
    return None if ok else f"one of {list(DEVICES)} or cuda:N"


def _list_of(rule: Rule, what: str, nonempty: bool = False) -> Rule:
    def check(v: Any) -> str | None:
        expected = f"a {'non-empty ' if nonempty else ''}list of {what}"
        if not isinstance(v, (list, tuple)) or (nonempty and not v):
            return expected
        bad = [x for x in v if rule(x) is not None]
        return f"{expected} (bad: {bad[:3]})" if bad else None

    return check


def _range(v: Any) -> str | None:
    expected = "null or two numbers [low, high] with low < high"
    if v is None:
        return None
    ok = isinstance(v, (list, tuple)) and len(v) == 2 and not any(_number()(x) for x in v)
    return None if ok and v[0] < v[1] else expected


_COUNT = _number(1, integer=True)
_SEED = _number(0, integer=True)
_RATE = _number(0, 1, lo_open=True, hi_open=True)
_DROPOUT = _number(0, 1, hi_open=True)
_PATIENCE = _number(
    1,
    integer=True,
    note=" (epochs without a better validation value before training stops; to never stop "
    "early, set it to train_epoch or more)",
)


def _text(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "non-empty text"


#: Every numeric, boolean and fixed-choice key a train run reads, with its rule. A key the
#: composed config does not have (another option of its group) is skipped.
RULES: dict[str, Rule] = {
    "learning_rate": _number(0, lo_open=True),
    "weight_decay": _number(0),
    "embedding_dim": _COUNT,
    "edge_dim": _choice(EDGE_DIMS),
    "train_epoch": _COUNT,
    "batch_size": _COUNT,
    "train_mask_rate": _RATE,
    "random_state": _SEED,
    "user_num": _number(1, integer=True, null=True, note=" (null: taken from the data)"),
    "num_task": _number(1, integer=True, null=True, note=" (null: taken from the data)"),
    "device": _device,
    "llm_family": _list_of(_text, "family names"),
    "quiet": _flag,
    "export_router": _flag,
    "resume": _flag,
    "overwrite": _flag,
    # trainer (its first keys interpolate the root's; an override of the copy counts too)
    "trainer.train_epoch": _COUNT,
    "trainer.batch_size": _COUNT,
    "trainer.learning_rate": _number(0, lo_open=True),
    "trainer.weight_decay": _number(0),
    "trainer.patience": _PATIENCE,
    "trainer.listwise_temperature": _number(0, lo_open=True),
    "trainer.grad_clip": _number(0, null=True, note=" (null or 0: no clipping)"),
    "trainer.deterministic": _flag,
    "trainer.batch_nodes": _COUNT,
    "trainer.max_users": _number(1, integer=True, null=True),
    # model
    "model.embedding_dim": _COUNT,
    "model.num_layers": _COUNT,
    "model.dropout": _DROPOUT,
    "model.residual": _flag,
    "model.conv_kwargs.num_heads": _COUNT,
    "model.decoder_kwargs.hidden": _number(1, integer=True, null=True),
    "model.decoder_kwargs.num_layers": _COUNT,
    "model.decoder_kwargs.dropout": _DROPOUT,
    # graph
    "graph.edge_dim": _choice(EDGE_DIMS),
    "graph.user_nodes": _flag,
    "graph.task_nodes": _flag,
    "graph.llm_family": _list_of(_text, "family names"),
    # masking
    "masking.train_mask_rate": _RATE,
    "masking.user_rate": _RATE,
    "masking.per_user": _number(1, integer=True, null=True),
    # users
    "users.preferences": _list_of(_number(0, 1), "numbers in [0, 1]", nonempty=True),
    "users.num_users": _COUNT,
    "users.queries_per_user": _number(1, integer=True, null=True),
    "users.query_assignment": _choice(("shared", "per_user")),
    "users.loyalty_bonus": _number(),
    "users.noise": _number(0),
    "users.seed": _SEED,
    # split
    "split.seed": _SEED,
    "split.user_fraction": _RATE,
    "split.llm_fraction": _RATE,
    "split.support_queries": _number(0, integer=True),
    # text encoder
    "text_encoder.batch_size": _COUNT,
    "text_encoder.max_length": _COUNT,
    "text_encoder.device": _device,
    "text_encoder.normalize": _flag,
    # dataset options of the readers that have them
    "dataset.chars_per_token": _number(0, lo_open=True),
    "dataset.duplicate_rule": _choice(("mean", "first")),
    "dataset.cost_scale": _number(0, lo_open=True),
    "dataset.performance_range": _range,
}


def _select(cfg: DictConfig, key: str) -> Any:
    """The resolved value at ``key`` as plain Python, or :data:`_ABSENT`."""
    value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _show(value: Any) -> str:
    """A value as it is written in a config or on the command line."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value)


def _interpolated(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` is an interpolation (``${train_epoch}``): its source key is checked,
    under its own name."""
    parent_key, _, last = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    return isinstance(parent, DictConfig) and last in parent and OmegaConf.is_interpolation(parent, last)


def _ratio_problem(value: Any) -> str | None:
    """``split_ratio``: three numbers [train, val, test], each > 0, summing to 1."""
    expected = (
        "three numbers [train, val, test], each > 0, that sum to 1 (train fits the model, "
        "val chooses it, test reports it once: none may be empty)"
    )
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        return expected
    if any(_number(0, lo_open=True)(x) for x in value) or not math.isclose(sum(value), 1.0, abs_tol=1e-6):
        return expected
    return None


def _fanout_problem(value: Any, num_layers: Any) -> str | None:
    """``trainer.fanouts``: an int, a ``{relation: n}`` mapping, or one of those per layer;
    each count >= 1, or -1 for all in-neighbours."""
    expected = "an int >= 1 or -1 (all), a {relation: n, default: n} mapping, or a list of those"

    def one(f: Any) -> bool:
        if isinstance(f, Mapping):
            return bool(f) and all(one(v) for v in f.values())
        return isinstance(f, int) and not isinstance(f, bool) and (f >= 1 or f == -1)

    per_layer = value if isinstance(value, list) else [value]
    if not per_layer or not all(one(f) for f in per_layer):
        return expected + " per layer"
    layers_ok = isinstance(num_layers, int) and not isinstance(num_layers, bool) and num_layers >= 1
    if isinstance(value, list) and layers_ok and len(value) != num_layers:
        return f"one entry per GNN layer: model.num_layers={num_layers}, got {len(value)}"
    return None


def _registry_problems(cfg: DictConfig) -> list[tuple[str, Any, str]]:
    """Names that must be in proute's registries, and keys that must agree with each other
    (imports the model code, so DGL)."""
    import inspect

    from hydra.utils import get_class

    from proute.baselines import BASELINES
    from proute.data.text_encoders import _POOLINGS
    from proute.data.users import ArchetypeUsers
    from proute.models.decoder import DECODERS
    from proute.models.gnn import NORMS
    from proute.models.layers import CONVS
    from proute.schema import EDGE_FEATURES, USER_FEATURES
    from proute.training.trainer import LOSSES, MONITORS, MiniBatchTrainer

    out: list[tuple[str, Any, str]] = []

    def choice(key: str, options: Sequence) -> None:
        value = _select(cfg, key)
        if value is not _ABSENT and value not in tuple(options):
            out.append((key, value, f"one of {sorted(options)}"))

    choice("trainer.loss", LOSSES)
    choice("trainer.monitor", MONITORS)
    choice("model.norm", NORMS)
    choice("model.decoder", DECODERS)
    choice("graph.edge_feature", EDGE_FEATURES)
    choice("graph.user_features", USER_FEATURES)
    choice("text_encoder.pooling", _POOLINGS)
    baselines = _select(cfg, "baselines")
    if baselines is not _ABSENT:
        bad = [b for b in baselines or [] if b not in BASELINES]
        if not isinstance(baselines, list) or bad:
            out.append(("baselines", baselines, f"a list of names from {sorted(BASELINES)}"))
    archetypes = _select(cfg, "users.archetypes")
    if archetypes is not _ABSENT:
        if not archetypes or any(a not in ArchetypeUsers.KNOWN for a in archetypes):
            out.append(
                ("users.archetypes", archetypes, f"a non-empty list from {list(ArchetypeUsers.KNOWN)}")
            )

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
        takes = set(inspect.signature(DECODERS[decoder]).parameters) - {"dim", "use_user"}
        unknown = sorted(set(dec_kwargs) - takes)
        if unknown:
            out.append(
                ("model.decoder_kwargs", dec_kwargs, f"keys from {sorted(takes)} (unknown: {unknown})")
            )
    if _select(cfg, "graph.user_features") == "history" and _select(cfg, "graph.user_nodes") is False:
        out.append(("graph.user_features", "history", "learned or onehot when graph.user_nodes=false"))

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
        from proute.graph.masking import QueryMasking

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

    >>> validate_config(compose("train", ["learning_rate=-1", "trainer.patience=0"]))
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
      ...
    proute.config.ConfigError: 2 invalid config values:
      learning_rate=-1: expected a number > 0
      trainer.patience=0: expected an integer >= 1 (epochs without a better validation value ...)
    """
    problems: list[tuple[str, Any, str]] = []
    checks = [*RULES.items(), ("split_ratio", _ratio_problem), ("split.ratios", _ratio_problem)]
    for key, rule in checks:
        try:
            if _interpolated(cfg, key):
                continue
            value = _select(cfg, key)
        except Exception as err:  # an interpolation that does not resolve
            problems.append((key, "?", f"a value that resolves ({err})"))
            continue
        if value is not _ABSENT and rule(value) is not None:
            problems.append((key, value, rule(value)))
    problems += _registry_problems(cfg)
    if problems:
        lines = "\n".join(f"  {key}={_show(value)}: expected {what}" for key, value, what in problems)
        n = len(problems)
        raise ConfigError(f"{n} invalid config value{'s' if n > 1 else ''}:\n{lines}")
