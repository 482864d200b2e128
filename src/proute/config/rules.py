"""The rules of single config values: each key a train run reads, what it may be, and the
helpers that read a key of a composed config (:func:`_select`) and show a value as it is
written on the command line (:func:`_show`)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

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
