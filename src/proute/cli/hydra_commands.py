"""``proute train`` and ``proute data``: the Hydra applications ``proute.train`` and
``proute.data``, with one option of proute's own, ``--config FILE.yaml``.

``--config FILE.yaml`` reads a YAML file of overrides and puts them before the command
line's (so the command line wins), composed on top of conf/train.yaml (conf/data.yaml for
``data``). The file is either a mapping, flattened into ``key=value`` overrides::

    model: gat                # a group option, as model=gat
    train_epoch: 20
    trainer:                  # nested keys: trainer.loss=listwise
      loss: listwise
    +sweep: conv              # Hydra's +/~ prefixes are kept

or a list of override strings (``["model=gat", "train_epoch=20"]``). Hydra's own
``--config-path``, ``--config-name`` and ``--config-dir`` are passed on unchanged.

>>> file_overrides({"model": "gat", "trainer": {"loss": "listwise"}, "tags": ["a", 1]})
["model='gat'", "trainer.loss='listwise'", "tags=['a',1]"]
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Any

CONFIG_OPTION = "--config"


def _value(v: Any) -> str:
    """``v`` in Hydra's override grammar (strings single-quoted, so ``'1'`` stays a text)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return ("-inf" if v < 0 else "inf") if math.isinf(v) else "nan" if math.isnan(v) else repr(v)
    if isinstance(v, str):
        # a backslash is an escape only before a quote or at the end (Hydra's rule): double those
        text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", v)
        return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text) + "'"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"a {type(v).__name__}")


def file_overrides(doc: Any, where: str = "--config") -> list[str]:
    """The Hydra overrides of a ``--config`` document (see the module docstring)."""
    if isinstance(doc, list):
        bad = [x for x in doc if not isinstance(x, str) or "=" not in x]
        if bad:
            raise ValueError(f"{where}: a list of overrides holds key=value texts; got {bad[0]!r}")
        return list(doc)
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: expected a mapping of overrides (key: value); got a {type(doc).__name__}")
    if "defaults" in doc:
        raise ValueError(
            f"{where}: a 'defaults' list is not needed (the file is composed on top of the "
            "application's config); choose a group option as a key, e.g. 'model: gat'"
        )
    out: list[str] = []

    def walk(prefix: str, node: dict) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict) and value:
                walk(name + ".", value)
            else:
                try:
                    out.append(f"{name}={_value(value)}")
                except TypeError as exc:
                    what = f"cannot write {exc.args[0]} as an override"
                    raise ValueError(f"{where}: key {name!r}: {what}") from None

    walk("", doc)
    return out


def _read_config_file(command: str, path: Path) -> list[str]:
    """The overrides of one ``--config`` file; a problem is a :class:`SystemExit` naming it."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        what = f"cannot read it ({exc.strerror or exc})"
        raise SystemExit(f"proute {command}: --config {path}: {what}") from None
    except yaml.YAMLError as exc:
        raise SystemExit(f"proute {command}: --config {path}: not valid YAML ({exc})") from None
    try:
        overrides = file_overrides({} if doc is None else doc, f"--config {path}")
    except ValueError as exc:
        raise SystemExit(f"proute {command}: {exc}") from None
    shown = " ".join(overrides) or "(no overrides)"
    print(f"proute {command}: --config {path}: {shown}", file=sys.stderr)
    return overrides


def _is_override(arg: str) -> bool:
    return not arg.startswith("-") and ("=" in arg or arg.startswith("~"))


def expand_config_files(command: str, argv: list[str]) -> list[str]:
    """``argv`` without its ``--config FILE`` (or ``--config=FILE``) options and with the
    files' overrides (in their order) just before the command line's first override, so
    that Hydra reads all overrides as one list and the command line's come last (win)."""
    rest: list[str] = []
    from_files: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == CONFIG_OPTION:
            if i + 1 >= len(argv):
                raise SystemExit(f"proute {command}: --config needs a YAML file (--config FILE.yaml)")
            from_files += _read_config_file(command, Path(argv[i + 1]))
            i += 2
        elif arg.startswith(CONFIG_OPTION + "="):
            from_files += _read_config_file(command, Path(arg.partition("=")[2]))
            i += 1
        else:
            rest.append(arg)
            i += 1
    at = next((k for k, arg in enumerate(rest) if _is_override(arg)), len(rest))
    return rest[:at] + from_files + rest[at:]


def run_hydra(command: str, argv: list[str]) -> int:
    """Run ``python -m proute.<command>`` in this process with ``argv`` (``--config``
    files expanded); ``sys.argv[0]`` names the command for Hydra's messages."""
    import runpy

    argv = expand_config_files(command, argv)
    sys.argv = [f"proute {command}"] + argv
    runpy.run_module(f"proute.{command}", run_name="__main__")
    return 0
