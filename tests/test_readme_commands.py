"""Every command README.md shows runs as written, or as far as CI can run it.

Each command of the README's ```bash blocks and of its inline code (``proute …``,
``python -m proute.…``, ``make …``, ``scripts/…``) is checked by what it is:

- ``python -m proute.data …``: **run** (a subprocess on the bundled data; a few seconds);
- ``python -m proute.train …`` / ``proute train …`` (training takes minutes on the bundled
  data): **composed and validated** exactly as the run would be before it reads any data
  (``proute.config.validate_config``), every job of a ``-m`` sweep, ``--config FILE`` read
  as ``proute train`` reads it; the training tests run the same code on small data;
- ``proute infer|evaluate|serve|chat|stub-upstream …``: **parsed** by the ``proute``
  parser (placeholders such as ``ROUTER`` filled in); the Serving section's block is
  **run** against a stub upstream by ``tests/test_readme_serving.py``;
- ``python -m proute.study …``: parsed by its parser; ``make X``: the target exists;
  ``scripts/X``: the script exists.

A command of any other shape fails the test, so a new kind of command gets a check.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PLACEHOLDERS = {"ROUTER": "outputs/router", "FILE": "conf/upstreams.local.yaml", "…": "text"}


def _serving_block(text: str) -> str:
    """The ```bash block that tests/test_readme_serving.py runs."""
    start = text.index("## Serving")
    return text[start : text.index("\n## ", start + 1)]


def bash_commands(text: str) -> list[str]:
    """The commands of the ```bash blocks (continuations joined, comments dropped)."""
    out = []
    serving = _serving_block(text)
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S):
        if block in serving:
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip().rstrip("&").strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def inline_commands(text: str) -> list[str]:
    """Inline code that is a command (the code map names modules, so it is left out)."""
    starts = (".venv/bin/", "proute ", "python -m ", "make ", "scripts/")
    start = text.index("## Where things live")
    text = text[:start] + text[text.index("\n## ", start + 1) :]
    spans = re.findall(r"(?<!`)`([^`\n]+)`(?!`)", text)
    return [s.strip() for s in spans if s.startswith(starts) and s.strip() not in ("scripts/",)]


def all_commands() -> list[str]:
    text = README.read_text()
    return list(dict.fromkeys(bash_commands(text) + inline_commands(text)))


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)
    if argv[0].startswith(".venv/bin/"):
        argv[0] = argv[0].removeprefix(".venv/bin/")
    return [PLACEHOLDERS.get(a, a) for a in argv]


def kind(command: str) -> str:
    argv = _argv(command)
    if argv[0] == "make":
        return "make"
    if argv[0].startswith("scripts/"):
        return "script"
    if argv[:3] == ["python", "-m", "proute.data"] or argv[:2] == ["proute", "data"]:
        return "data"
    if argv[:3] == ["python", "-m", "proute.train"] or argv[:2] == ["proute", "train"]:
        return "train"
    if argv[:3] == ["python", "-m", "proute.study"]:
        return "study"
    if argv[0] == "proute":
        return "cli"
    return "unknown"


def _sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The jobs of a ``-m`` sweep's command-line overrides (``a=x,y b=z`` -> 2 jobs)."""
    jobs: list[list[str]] = [[]]
    for o in overrides:
        key, _, value = o.partition("=")
        values = value.split(",") if "," in value and "[" not in value else [value]
        jobs = [j + [f"{key}={v}"] for j in jobs for v in values]
    return jobs


def _compose_train(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from proute.config import paths, register_resolvers
    from proute.training import lifecycle

    register_resolvers()
    lifecycle.register_resolvers()
    with initialize_config_dir(config_dir=str(paths.config_dir()), version_base="1.3"):
        return compose("train", overrides, return_hydra_config=True)


def check_train(command: str, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from proute.cli.hydra_commands import expand_config_files
    from proute.config import validate_config

    argv = _argv(command)
    args = argv[3:] if argv[0] == "python" else argv[2:]
    if "--config" in args:  # the README's example file: a YAML mapping of overrides
        (tmp_path / "mine.yaml").write_text("model: gat\ntrainer:\n  loss: listwise\n")
        args = [str(tmp_path / a) if a == "mine.yaml" else a for a in args]
        args = expand_config_files("train", args)
    multirun = "-m" in args or "--multirun" in args
    args = [a for a in args if a not in ("-m", "--multirun")]
    jobs = _sweep_jobs(args) if multirun else [args]
    for job in jobs:
        cfg = _compose_train(job)
        sweep = OmegaConf.select(cfg, "hydra.sweeper.params")
        if sweep:  # a preset's sweep (+sweep=conv): the first job of its own parameters
            params = OmegaConf.to_container(sweep)
            first = [f"{k}={str(v).split(',')[0]}" for k, v in params.items()]
            cfg = _compose_train(job + first)
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        validate_config(cfg)


def check_data(command: str, tmp_path: Path) -> None:
    argv = _argv(command)
    args = argv[3:] if argv[0] == "python" else argv[2:]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "proute.data", *args, f"hydra.run.dir={tmp_path / 'data'}"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{command!r} exited {res.returncode}:\n{res.stderr[-3000:]}"
    assert "users" in res.stdout.lower(), res.stdout[-2000:]


def check_cli(command: str) -> None:
    from proute.cli.parser import build_parser

    args = build_parser().parse_args(_argv(command)[1:])  # SystemExit(2) on an unknown flag
    assert args.command == _argv(command)[1]


def check_study(command: str) -> None:
    from proute.study.__main__ import build_parser

    args = build_parser().parse_args(_argv(command)[3:])  # SystemExit(2) on a bad command
    assert args.command == _argv(command)[3]


def check_make(command: str) -> None:
    targets = set(re.findall(r"^([a-zA-Z_-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    missing = [t for t in _argv(command)[1:] if t not in targets]
    assert not missing, f"{command!r}: no Makefile target {missing}"


def test_the_readme_shows_commands_of_every_kind():
    kinds = {kind(c) for c in all_commands()}
    assert {"make", "data", "train", "cli", "study"} <= kinds, kinds


@pytest.mark.parametrize("command", all_commands())
def test_a_readme_command_runs_as_written(command, tmp_path):
    what = kind(command)
    if what == "unknown":
        pytest.fail(f"README command {command!r}: no check knows this kind of command; add one")
    if what == "make":
        check_make(command)
    elif what == "script":
        assert (ROOT / _argv(command)[0]).is_file(), f"{command!r}: no such script"
    elif what == "data":
        check_data(command, tmp_path)
    elif what == "train":
        check_train(command, tmp_path)
    elif what == "cli":
        check_cli(command)
    else:
        check_study(command)


def test_the_checks_can_fail(tmp_path):
    with pytest.raises(SystemExit):
        check_cli("proute infer ROUTER --no-such-flag 1")
    with pytest.raises(Exception, match="model"):
        check_train("python -m proute.train model=no_such_conv", tmp_path)
    with pytest.raises(AssertionError, match="no Makefile target"):
        check_make("make no-such-target")
    assert kind("docker run x") == "unknown"


def test_the_python_example_shows_what_route_single_returns(tmp_path, cache_dir):
    """The README's ``route_single`` example lists the keys the router returns."""
    import ast

    from conftest import train_tiny_router
    from proute.router import PersonalizedRouter

    block = re.search(r"```python\n(.*?)```", README.read_text(), flags=re.S).group(1)
    shown = ast.literal_eval(re.search(r"^# (\{.*\})$", block, flags=re.M).group(1).replace("...", "None"))
    router = PersonalizedRouter.load(train_tiny_router(tmp_path / "run", cache_dir))
    out = router.route_single({"query": "Solve 12 * (3 + 4)", "user_id": router.users[0]})
    assert set(shown) == set(out), f"README shows {sorted(shown)}; route_single returns {sorted(out)}"
