"""Fault matrix: bad config values (issue 7, deliverable 5).

Every case composes the real train config (shrunk by ``debug=default``, writing into
``tmp_path``) with one bad override and asserts that :func:`proute.config.validate_config`
raises :class:`~proute.config.ConfigError` naming the key, its value and what was expected,
before anything is read or written: no file under ``conf/`` or ``tmp_path`` changes. Every
shipped option (and every experiment preset under ``debug=default``) validates.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from proute.config import ConfigError, compose, validate_config

CONF = Path(__file__).resolve().parents[2] / "conf"
FIXTURES = Path(__file__).resolve().parents[1] / "data"


@lru_cache(maxsize=None)
def _composed(groups: tuple[str, ...], run_dir: str):
    """As tests/conftest.py's ``train_cfg``: shrunk, on the fixtures, writing into ``run_dir``."""
    shrink = ["debug=default", f"paths.data_dir={FIXTURES}", f"hydra.run.dir={run_dir}"]
    return compose("train", shrink + list(groups))


def configured(run_dir: Path, overrides: list[str]):
    """The shrunk train config with ``overrides``: group choices composed by Hydra (once per
    set of choices), values set as Hydra would parse them (``+key=`` adds a key)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    groups = tuple(o.input_line for o in parsed if (CONF / o.key_or_group).is_dir())
    cfg = copy.deepcopy(_composed(groups, str(run_dir)))
    for o in parsed:
        if not (CONF / o.key_or_group).is_dir():
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=False, force_add=o.is_add())
    return cfg


# (id, overrides, the line the message must hold: "<key>=<value>: expected <start of what>")
BAD = [
    # optimisation
    ("learning_rate-zero", ["learning_rate=0"], "learning_rate=0: expected a number > 0"),
    ("learning_rate-negative", ["learning_rate=-0.001"], "learning_rate=-0.001: expected a number > 0"),
    ("learning_rate-text", ["learning_rate=fast"], "learning_rate='fast': expected a number > 0"),
    ("learning_rate-in-trainer", ["trainer.learning_rate=-1"], "trainer.learning_rate=-1: expected"),
    ("weight_decay-negative", ["weight_decay=-0.0001"], "weight_decay=-0.0001: expected a number >= 0"),
    ("train_epoch-zero", ["train_epoch=0"], "train_epoch=0: expected an integer >= 1"),
    ("train_epoch-float", ["train_epoch=2.5"], "train_epoch=2.5: expected an integer >= 1"),
    ("batch_size-zero", ["batch_size=0"], "batch_size=0: expected an integer >= 1"),
    ("train_mask_rate-zero", ["train_mask_rate=0"], "train_mask_rate=0: expected a number in (0, 1)"),
    ("train_mask_rate-one", ["train_mask_rate=1"], "train_mask_rate=1: expected a number in (0, 1)"),
    ("train_mask_rate-above-one", ["train_mask_rate=1.5"], "train_mask_rate=1.5: expected"),
    # sizes
    ("embedding_dim-zero", ["embedding_dim=0"], "embedding_dim=0: expected an integer >= 1"),
    ("embedding_dim-float", ["embedding_dim=32.5"], "embedding_dim=32.5: expected an integer >= 1"),
    ("edge_dim-3", ["edge_dim=3"], "edge_dim=3: expected one of [1, 2]"),
    ("user_num-zero", ["user_num=0"], "user_num=0: expected null or an integer >= 1"),
    ("random_state-negative", ["random_state=-1"], "random_state=-1: expected an integer >= 0"),
    # split_ratio
    ("split_ratio-two-numbers", ["split_ratio=[0.5,0.5]"], "split_ratio=[0.5, 0.5]: expected three numbers"),
    ("split_ratio-sum", ["split_ratio=[0.7,0.2,0.2]"], "split_ratio=[0.7, 0.2, 0.2]: expected three"),
    ("split_ratio-no-test", ["split_ratio=[0.8,0.2,0.0]"], "split_ratio=[0.8, 0.2, 0.0]: expected"),
    ("split_ratio-no-val", ["split_ratio=[0.8,0.0,0.2]"], "split_ratio=[0.8, 0.0, 0.2]: expected"),
    ("split_ratio-negative", ["split_ratio=[1.2,-0.1,-0.1]"], "split_ratio=[1.2, -0.1, -0.1]: expected"),
    # trainer
    ("patience-zero", ["trainer.patience=0"], "trainer.patience=0: expected an integer >= 1 (epochs"),
    ("patience-null", ["trainer.patience=null"], "trainer.patience=null: expected an integer >= 1"),
    (
        "steps_per_epoch-null-fullgraph",
        ["trainer=fullgraph", "trainer.steps_per_epoch=null"],
        "trainer.steps_per_epoch=null: expected an integer >= 1 (full-graph trainer)",
    ),
    (
        "steps_per_epoch-zero-minibatch",
        ["trainer=minibatch", "trainer.steps_per_epoch=0"],
        "trainer.steps_per_epoch=0: expected null or an integer >= 1",
    ),
    ("batch_nodes-zero", ["trainer=minibatch", "trainer.batch_nodes=0"], "trainer.batch_nodes=0: expected"),
    ("fanouts-zero", ["trainer=minibatch", "trainer.fanouts=[0,4]"], "trainer.fanouts=[0, 4]: expected"),
    (
        "fanouts-minus-two",
        ["trainer=minibatch", "trainer.fanouts=[-2,4]"],
        "trainer.fanouts=[-2, 4]: expected",
    ),
    (
        "fanouts-one-layer-short",
        ["trainer=minibatch", "trainer.fanouts=[4]"],
        "trainer.fanouts=[4]: expected one entry per GNN layer: model.num_layers=2, got 1",
    ),
    ("max_users-zero", ["trainer=minibatch", "trainer.max_users=0"], "trainer.max_users=0: expected null or"),
    ("temperature-zero", ["trainer.listwise_temperature=0"], "trainer.listwise_temperature=0: expected"),
    ("grad_clip-negative", ["trainer.grad_clip=-1"], "trainer.grad_clip=-1: expected null or a number >= 0"),
    (
        "loss-unknown",
        ["trainer.loss=hinge"],
        "trainer.loss='hinge': expected one of ['bce', 'listwise', 'mse']",
    ),
    ("monitor-unknown", ["trainer.monitor=loss"], "trainer.monitor='loss': expected one of"),
    (
        "deterministic-text",
        ["trainer.deterministic=yes please"],
        "trainer.deterministic='yes please': expected",
    ),
    (
        "minibatch-with-edge-masking",
        ["masking=random", "trainer=minibatch"],
        "masking='proute.graph.masking.RandomEdgeMasking': expected masking=query with trainer=minibatch",
    ),
    # model
    ("num_layers-zero", ["model.num_layers=0"], "model.num_layers=0: expected an integer >= 1"),
    ("dropout-one", ["model.dropout=1.0"], "model.dropout=1.0: expected a number in [0, 1)"),
    ("norm-unknown", ["model.norm=group"], "model.norm='group': expected one of ['batch', 'layer', 'none']"),
    (
        "conv-unknown",
        ["model.conv=gcn"],
        "model.conv='gcn': expected one of ['gat', 'gatv2', 'graphconv', 'sage']",
    ),
    ("conv_kwargs-unknown", ["+model.conv_kwargs.heads=2"], "model.conv_kwargs={'heads': 2}: expected keys"),
    (
        "num_heads-zero",
        ["model=gat", "model.conv_kwargs.num_heads=0"],
        "model.conv_kwargs.num_heads=0: expected",
    ),
    (
        "heads-do-not-divide",
        ["model=gat", "embedding_dim=63"],
        "embedding_dim=63: expected a multiple of model",
    ),
    ("decoder-unknown", ["model.decoder=dot"], "model.decoder='dot': expected one of ['bilinear', 'mlp']"),
    (
        "decoder-hidden-zero",
        ["+model.decoder_kwargs.hidden=0"],
        "model.decoder_kwargs.hidden=0: expected null or",
    ),
    (
        "decoder_kwargs-unknown",
        ["+model.decoder_kwargs.width=3"],
        "model.decoder_kwargs={'width': 3}: expected",
    ),
    # graph, masking, users, split
    ("edge_feature-unknown", ["graph.edge_feature=cost"], "graph.edge_feature='cost': expected one of"),
    (
        "history-users-without-user-nodes",
        ["graph=history_users", "graph.user_nodes=false"],
        "graph.user_features='history': expected learned or onehot when graph.user_nodes=false",
    ),
    ("llm_family-not-a-list", ["llm_family=llama"], "llm_family='llama': expected a list of family names"),
    (
        "user_rate-zero",
        ["masking=cold_start", "masking.user_rate=0"],
        "masking.user_rate=0: expected a number",
    ),
    (
        "per_user-zero",
        ["masking=user_balanced", "masking.per_user=0"],
        "masking.per_user=0: expected null or",
    ),
    (
        "preference-above-one",
        ["users.preferences=[0.5,1.5]"],
        "users.preferences=[0.5, 1.5]: expected a non-empty",
    ),
    ("preferences-empty", ["users.preferences=[]"], "users.preferences=[]: expected a non-empty list"),
    (
        "num_users-zero",
        ["users=archetypes", "users.num_users=0"],
        "users.num_users=0: expected an integer >= 1",
    ),
    (
        "archetype-unknown",
        ["users=archetypes", "users.archetypes=[hermit]"],
        "users.archetypes=['hermit']: expected",
    ),
    (
        "query_assignment-unknown",
        ["users.query_assignment=each"],
        "users.query_assignment='each': expected one of",
    ),
    (
        "user_fraction-one",
        ["split=new_users", "split.user_fraction=1.0"],
        "split.user_fraction=1.0: expected",
    ),
    ("support_queries-negative", ["split=new_users", "split.support_queries=-1"], "split.support_queries=-1"),
    ("baseline-unknown", ["baselines=[psychic]"], "baselines=['psychic']: expected a list of names from"),
    # devices, text encoder, dataset
    ("device-gpu", ["device=gpu"], "device='gpu': expected one of ['auto', 'cpu', 'cuda'] or cuda:N"),
    ("device-cuda-x", ["device=cuda:x"], "device='cuda:x': expected one of"),
    ("encoder-device", ["text_encoder.device=tpu"], "text_encoder.device='tpu': expected one of"),
    (
        "encoder-batch_size-zero",
        ["text_encoder.batch_size=0"],
        "text_encoder.batch_size=0: expected an integer",
    ),
    (
        "encoder-pooling",
        ["text_encoder.pooling=max"],
        "text_encoder.pooling='max': expected one of ['cls', 'mean']",
    ),
    (
        "chars_per_token-zero",
        ["dataset.chars_per_token=0"],
        "dataset.chars_per_token=0: expected a number > 0",
    ),
    (
        "cost_scale-zero",
        ["dataset=nq", "dataset.cost_scale=0"],
        "dataset.cost_scale=0: expected a number > 0",
    ),
    ("duplicate_rule", ["dataset.duplicate_rule=median"], "dataset.duplicate_rule='median': expected one of"),
    (
        "performance_range-reversed",
        ["dataset=table", "+dataset.performance_range=[1,0]"],
        "dataset.performance_range=[1, 0]: expected null or two numbers [low, high] with low < high",
    ),
    ("quiet-text", ["quiet=maybe"], "quiet='maybe': expected true or false"),
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("run")


@pytest.mark.parametrize("overrides,line", [pytest.param(o, line, id=i) for i, o, line in BAD])
def test_bad_config_value_is_named_before_any_data_is_read(run_dir, unchanged, overrides, line):
    with unchanged(CONF), unchanged(run_dir):
        cfg = configured(run_dir, overrides)
        with pytest.raises(ConfigError) as err:
            validate_config(cfg)
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    assert msg.startswith("1 invalid config value:\n"), msg  # one override, one problem
    assert f"\n  {line}" in msg, (line, msg)


def test_the_values_are_set_as_hydra_sets_them(run_dir):
    """The shortcut above (one compose per set of group choices) gives Hydra's config."""
    overrides = ["model=gat", "embedding_dim=63", "+model.decoder_kwargs.hidden=0", "trainer.fanouts=[4]"]
    shrink = ["debug=default", f"paths.data_dir={FIXTURES}", f"hydra.run.dir={run_dir}"]
    assert configured(run_dir, overrides) == compose("train", shrink + overrides)


def test_every_problem_is_listed_at_once(train_cfg):
    cfg = train_cfg("learning_rate=0", "trainer.patience=0", "split_ratio=[1,0,0]", "device=gpu")
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert msg.startswith("4 invalid config values:")
    for key in ("learning_rate=0", "trainer.patience=0", "split_ratio=[1, 0, 0]", "device='gpu'"):
        assert f"\n  {key}: expected" in msg, (key, msg)


def shipped_options() -> list[tuple[str, str]]:
    # hpo sets hydra keys: not a train option
    groups = (p for p in CONF.glob("*/*.yaml") if p.parent.name not in ("hydra", "sweep", "hpo"))
    return sorted((p.parent.name, p.stem) for p in groups)


@pytest.mark.parametrize("group,option", shipped_options())
def test_every_shipped_option_validates(train_cfg, tmp_path, unchanged, group, option):
    with unchanged(CONF), unchanged(tmp_path):
        validate_config(train_cfg(f"{group}={option}"))


def test_the_unshrunk_default_config_validates():
    from proute.config import compose

    validate_config(compose("train"))
