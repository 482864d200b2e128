"""The study's runs: which (setting, seed) pairs it plans, in which order, and their state.

The study is one Hydra multirun (``conf/sweep/study.yaml``) whose jobs go to
``<sweep dir>/<setting>/seed<k>/``. Its plan is the sweep's ``setting`` x ``random_state``
values (``hydra.sweeper.params``, narrowed by the command line's overrides); each run's state
is its ``status.json`` (:mod:`proute.training.lifecycle`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

from proute.training import lifecycle

SETTING_KEY, SEED_KEY = "setting", "random_state"
#: The multirun's config, saved by Hydra's sweeper in the sweep directory.
MULTIRUN_FILE = "multirun.yaml"


@dataclass
class StudyRun:
    setting: str
    seed: int
    dir: Path
    state: str = "new"  # new | finished | failed | interrupted | running | unreadable
    error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.setting}/seed{self.seed}"

    def read(self) -> "StudyRun":
        """Set ``state`` and ``error`` from the run directory's ``status.json``."""
        try:
            status = lifecycle.read_status(self.dir)
        except lifecycle.RunStateError as exc:
            self.state, self.error = "unreadable", str(exc)
            return self
        self.state = "new" if status is None else str(status["state"])
        self.error = None if status is None or not status.get("error") else str(status["error"])
        return self


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _swept(overrides: Iterable[str]) -> dict[str, list[str]]:
    """key -> its values, for each override (a sweep ``a,b`` or a single value)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out: dict[str, list[str]] = {}
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        key = o.key_or_group
        out[key] = (
            list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        )
    return out


def plan_of_config(config: DictConfig | dict[str, Any], root: Path | None = None) -> list[StudyRun]:
    """The runs of a study's multirun config (the callback's, or ``multirun.yaml``) in the
    basic sweeper's order (setting by setting, the headline ``default`` first, each over its
    seeds), each with its state; ``root`` replaces the config's sweep directory."""
    hydra = OmegaConf.create(config)["hydra"] if isinstance(config, dict) else config.hydra
    params = OmegaConf.to_container(hydra.sweeper.get("params") or {}, resolve=False)
    assert isinstance(params, dict), "hydra.sweeper.params: expected a mapping"
    task = [str(o) for o in (OmegaConf.select(hydra, "overrides.task") or [])]
    swept = _swept([*(f"{k!s}={v}" for k, v in params.items()), *task])
    settings, seeds = swept.get(SETTING_KEY, []), swept.get(SEED_KEY, [])
    base = Path(root if root is not None else str(hydra.sweep.dir))
    return [StudyRun(s, int(k), base / s / f"seed{k}").read() for s in settings for k in seeds]


def _mapping(cfg: DictConfig | ListConfig, path: Path) -> DictConfig:
    if not isinstance(cfg, DictConfig):
        raise ValueError(f"{path}: expected a mapping (a Hydra multirun config), got a list")
    return cfg


def plan_of_dir(root: Path) -> list[StudyRun]:
    """The runs of a study's sweep directory: those its ``multirun.yaml`` plans, then any
    other ``<setting>/seed<k>/`` directory found there (an earlier invocation's)."""
    runs = (
        plan_of_config(_mapping(OmegaConf.load(root / MULTIRUN_FILE), root / MULTIRUN_FILE), root)
        if (root / MULTIRUN_FILE).is_file()
        else []
    )
    known = {(r.setting, r.seed) for r in runs}
    for d in sorted(root.glob("*/seed*")):
        seed = d.name.removeprefix("seed")
        if d.is_dir() and seed.isdigit() and (d.parent.name, int(seed)) not in known:
            runs.append(StudyRun(d.parent.name, int(seed), d).read())
    return runs


def finished_runs(runs: Iterable[StudyRun]) -> dict[str, dict[int, Path]]:
    """setting -> seed -> run directory, of the finished runs with their ``metrics.json``."""
    out: dict[str, dict[int, Path]] = {}
    for r in runs:
        if r.state == "finished" and (r.dir / "metrics.json").is_file():
            out.setdefault(r.setting, {})[r.seed] = r.dir
    return out
