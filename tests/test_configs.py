"""Every config option under conf/ composes through Hydra, says what it means, and every
``_target_`` it names imports and accepts the keys the config passes.

The options are found by a glob over conf/<group>/*.yaml, so a new option file is tested
without touching this file. Training with the options is tested in test_training.py.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from proute.config import compose

CONF = Path(__file__).resolve().parents[1] / "conf"
# hydra/ holds Hydra's own run settings (output folders), composed into every run; it has no
# proute keys to check. sweep/ holds multirun presets, added with +sweep=... (tested in
# tests/test_sweeps.py); hpo/ holds Optuna searches, +hpo=... (tests/test_hpo.py). Every other
# group is an axis of proute's configuration.
NOT_OPTIONS = {"hydra", "sweep", "hpo"}
# Groups whose objects are cheap to build (no files read, no model loaded): instantiated.
CHEAP = {"masking", "split", "users", "trainer", "logger"}


def option_files() -> list[tuple[str, str]]:
    return sorted((p.parent.name, p.stem) for p in CONF.glob("*/*.yaml") if p.parent.name not in NOT_OPTIONS)


def groups_of(root: str) -> set[str]:
    """The groups a root config (train, data) lists in its defaults list."""
    defaults = OmegaConf.load(CONF / f"{root}.yaml")["defaults"]
    return {next(iter(d)) for d in defaults if isinstance(d, DictConfig)}


def is_global(group: str, option: str) -> bool:
    return (CONF / group / f"{option}.yaml").read_text().startswith("# @package _global_")


def own_values(group: str, option: str) -> dict:
    """What the option file itself sets (its defaults list left out)."""
    raw = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{option}.yaml"), resolve=False)
    raw.pop("defaults", None)
    return raw


def overrides_in(group: str, option: str) -> dict[str, str]:
    """``{group: option}`` for each ``override /group: option`` in the file's defaults list."""
    defaults = OmegaConf.load(CONF / group / f"{option}.yaml").get("defaults", [])
    out = {}
    for entry in defaults:
        if isinstance(entry, DictConfig):
            for key, value in entry.items():
                if key.startswith("override /"):
                    out[key.removeprefix("override /")] = value
    return out


def assert_contains(composed, expected, where: str) -> None:
    """Every key the file sets has, in the composed config, the value the file gives it."""
    if isinstance(expected, dict):
        assert isinstance(composed, dict), f"{where}: expected a mapping, got {composed!r}"
        for key, value in expected.items():
            assert key in composed, f"{where}.{key} is missing from the composed config"
            assert_contains(composed[key], value, f"{where}.{key}")
    else:
        assert composed == expected, f"{where}: composed {composed!r}, the file says {expected!r}"


def target_nodes(node, path: str = ""):
    """``(path, node)`` for every mapping with a ``_target_`` under ``node``."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path, node
        for key in node:
            yield from target_nodes(node._get_node(key), f"{path}.{key}".lstrip("."))
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            yield from target_nodes(node._get_node(i), f"{path}[{i}]")


def assert_target_accepts(path: str, node: DictConfig) -> None:
    target = get_method(node["_target_"])  # raises if the module or the name does not import
    kwargs = {k: None for k in node if not str(k).startswith("_")}
    try:
        inspect.signature(target).bind_partial(**kwargs)
    except TypeError as err:
        raise AssertionError(
            f"{path}: {node['_target_']} does not take the keys {sorted(kwargs)}: {err}"
        ) from err


@pytest.mark.parametrize("group,option", option_files())
def test_every_option_composes_and_its_targets_import(group, option):
    cfg = compose("train", [f"{group}={option}"])
    composed = OmegaConf.to_container(cfg, resolve=False)
    part = composed if is_global(group, option) else composed[group]
    assert_contains(part, own_values(group, option), "" if is_global(group, option) else group)
    own = own_values(group, option) if is_global(group, option) else {}
    for other_group, other_option in overrides_in(group, option).items():
        alone = compose("train", [f"{other_group}={other_option}"])
        # the chosen option, with whatever the preset itself sets inside that group
        expected = OmegaConf.merge(alone[other_group], own.get(other_group) or {})
        assert cfg[other_group] == expected, f"override /{other_group} did not apply"
    scope = cfg if is_global(group, option) else cfg[group]
    found = list(target_nodes(scope, "" if is_global(group, option) else group))
    for path, node in found:
        assert_target_accepts(path, node)
    if group in CHEAP:
        assert found, f"{group}={option} names no _target_"
        obj = instantiate(cfg[group])
        assert type(obj).__name__ == cfg[group]["_target_"].rsplit(".", 1)[1]


@pytest.mark.parametrize("group,option", [(g, o) for g, o in option_files() if is_global(g, o)])
def test_global_options_set_only_keys_the_train_config_has(group, option):
    """A preset or the debug config that sets a key the train config does not have (a typo,
    a renamed group) would add a new key silently instead of changing a setting."""
    chosen = [f"{g}={o}" for g, o in overrides_in(group, option).items()]  # its own group choices
    base = OmegaConf.to_container(compose("train", chosen), resolve=False)

    def walk(values: dict, node: dict, where: str):
        for key, value in values.items():
            assert key in node, f"{group}/{option}.yaml sets {where}{key}, which train.yaml lacks"
            if isinstance(value, dict) and isinstance(node[key], dict):
                walk(value, node[key], f"{where}{key}.")

    own = dict(own_values(group, option))
    own.pop(group, None)  # a group option written as _global_ (masking) sets its own node
    walk(own, base, "")


@pytest.mark.parametrize("group,option", [(g, o) for g, o in option_files() if g in groups_of("data")])
def test_data_config_composes_with_every_option_of_its_groups(group, option):
    cfg = compose("data", [f"{group}={option}"])
    assert_contains(OmegaConf.to_container(cfg, resolve=False)[group], own_values(group, option), group)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_debug_shrinks_every_experiment_preset_and_the_command_line_wins(experiment):
    preset = compose("train", [f"experiment={experiment}"])
    cfg = compose("train", [f"experiment={experiment}", "debug=default"])
    debug = own_values("debug", "default")
    assert_contains(OmegaConf.to_container(cfg, resolve=False), debug, "")
    # The preset's own choices survive the debug config.
    assert cfg.tags == preset.tags and cfg.users == preset.users and cfg.split == preset.split
    assert cfg.logger._target_ == "proute.training.loggers.NullLogger"
    # A command-line override beats both (the logger tests pass logger=wandb this way).
    cfg = compose("train", [f"experiment={experiment}", "debug=default", "logger=wandb", "train_epoch=1"])
    assert cfg.logger._target_ == "proute.training.loggers.WandbLogger" and cfg.train_epoch == 1


def test_the_option_glob_sees_every_group():
    groups = {g for g, _ in option_files()}
    assert groups_of("train") - NOT_OPTIONS <= groups
    assert {"graph", "model", "masking", "logger", "experiment", "debug"} <= groups
