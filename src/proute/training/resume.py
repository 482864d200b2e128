"""What a resumed run trains with: the configuration its run directory saved.

``resume=true hydra.run.dir=<dir>`` continues the run in ``<dir>`` with the settings it
started with. Its first attempt's overrides (``<dir>/.hydra/overrides.yaml``, which a resumed
attempt leaves in place and writes its own beside, in ``.hydra/attempt-<n>/``) are applied
again under the ones given now (:func:`merged_overrides`), and the composed config is
compared with the saved ``config.yaml`` (:func:`check_resume_config`):

- a key in :data:`MAY_CHANGE_ON_RESUME` (how the run is shown, logged and where it runs, or
  more epochs) may differ: the run goes on with the new value and a warning lists each
  change (old → new);
- any other difference is refused with a :class:`~proute.config.ConfigError` that lists the
  keys (old → new): resume with the same settings, or start a new run elsewhere.

``config.yaml`` is then rewritten with the config actually used, so it always says what ran.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from proute.config import ConfigError

__all__ = [
    "MAY_CHANGE_ON_RESUME",
    "check_resume_config",
    "config_changes",
    "merged_overrides",
    "saved_overrides",
]

log = logging.getLogger(__name__)

#: Keys (and the keys under them) a resumed run may change: they decide how the run is
#: shown, logged and exported and where it computes, not what it learns — and
#: ``train_epoch`` (its copy ``trainer.train_epoch``): the epoch limit, to train longer.
MAY_CHANGE_ON_RESUME = (
    "resume",
    "overwrite",
    "skip_finished",
    "quiet",
    "text_encoder.show_progress",
    "logger",
    "tags",
    "device",
    "text_encoder.device",
    "export_router",
    "train_epoch",
    "trainer.train_epoch",
)
#: Changes of these are expected (``resume`` itself) and not worth a warning.
_SILENT = ("resume", "overwrite", "skip_finished")
_ABSENT = "<absent>"


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        if not node and prefix:
            return {prefix: {}}
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def config_changes(saved: DictConfig | ListConfig, cfg: DictConfig) -> dict[str, tuple[Any, Any]]:
    """Each leaf key whose resolved value differs: ``key -> (saved value, new value)``
    (``"<absent>"`` where one side lacks the key)."""
    old = _leaves(OmegaConf.to_container(saved, resolve=True))
    new = _leaves(OmegaConf.to_container(cfg, resolve=True))
    return {
        key: (old.get(key, _ABSENT), new.get(key, _ABSENT))
        for key in sorted(set(old) | set(new))
        if old.get(key, _ABSENT) != new.get(key, _ABSENT)
    }


def _may_change(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in MAY_CHANGE_ON_RESUME)


def _listing(changes: dict[str, tuple[Any, Any]]) -> str:
    return "\n".join(f"  {key}: {old!r} → {new!r}" for key, (old, new) in changes.items())


def check_resume_config(cfg: DictConfig, run_dir: str | os.PathLike) -> dict[str, tuple[Any, Any]]:
    """Compare the config a resumed run was given with ``run_dir/config.yaml`` (what its
    earlier attempts ran). Raise :class:`ConfigError` listing every differing key outside
    :data:`MAY_CHANGE_ON_RESUME`; warn about, and return, the allowed changes. A run
    directory without ``config.yaml`` has nothing to compare: ``{}``."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return {}
    changes = config_changes(OmegaConf.load(path), cfg)
    refused = {k: v for k, v in changes.items() if not _may_change(k)}
    if refused:
        raise ConfigError(
            f"resume=true: the config differs from the one this run started with ({path}):\n"
            f"{_listing(refused)}\n"
            "A resumed run continues with its saved config; only "
            f"{', '.join(MAY_CHANGE_ON_RESUME)} may change. Resume without these overrides "
            "(the first attempt's are applied again), or start a new run in another "
            "hydra.run.dir."
        )
    allowed = {k: v for k, v in changes.items() if not k.startswith(_SILENT)}
    if allowed:
        log.warning("resume=true: continuing %s with these changes:\n%s", run_dir, _listing(allowed))
    return allowed


def saved_overrides(run_dir: str | os.PathLike) -> list[str]:
    """The first attempt's command-line overrides (``.hydra/overrides.yaml``), or []."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(o) for o in (OmegaConf.load(path) or [])]


def _override_key(line: str) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (override,) = OverridesParser.create().parse_overrides([line])
    return f"{override.key_or_group}@{override.package or ''}"


def merged_overrides(first: list[str], now: list[str]) -> list[str]:
    """``first``'s overrides except those of a key ``now`` sets again, then ``now``'s."""
    keys = {_override_key(line) for line in now}
    return [line for line in first if _override_key(line) not in keys] + list(now)


def hydra_attempt_subdir(output_dir: str) -> str:
    """Where Hydra writes a resumed attempt's files: beside the first attempt's
    ``.hydra/`` files, which stay (``.hydra/attempt-<n>``, ``n`` the attempt about to start)."""
    from proute.training.lifecycle import RunStateError, read_status

    try:
        attempt = int((read_status(output_dir) or {}).get("attempt", 1)) + 1
    except (RunStateError, TypeError, ValueError):
        attempt = 2
    return f".hydra/attempt-{attempt}"
