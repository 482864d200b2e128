"""Hydra composition outside a Hydra run, and the resolvers proute's configs use."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

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
