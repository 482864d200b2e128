"""The README's Serving section runs as written.

Every command of its ```bash blocks runs here, in order, from the repository root, with
these substitutions and no others (:data:`PROGRAM`, :func:`substitutions`):

- ``proute`` is ``python -m proute.cli`` of this interpreter (the venv's ``proute``);
- ``ROUTER`` is a tiny router trained on the test fixtures;
- the ports 8000, 8001 and 7860 are free ports (another process may hold the documented
  ones), so ``conf/upstreams.local.yaml`` is a copy with its port replaced.

A command ending in ``&`` is started in the background and waited for until its
``--port`` accepts connections; ``curl`` runs through httpx (the options the README uses:
``-s``, ``-H``, ``-d``, ``--retry*``; any other fails the test); ``kill %N`` stops the
N-th background command; anything else must exit 0. The answers are then checked against
the router's own decision (the Python API) and the stub upstream's echo.
"""

import json
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from conftest import ROOT  # noqa: E402
from proute.serving.loadtest import free_port  # noqa: E402
from serving_fixtures import train_tiny_router  # noqa: E402

PROGRAM = [sys.executable, "-m", "proute.cli"]
PORTS = ("8000", "8001", "7860")
LOCAL = "conf/upstreams.local.yaml"


def serving_commands(readme: Path = ROOT / "README.md") -> list[list[str]]:
    """The shell commands of the ```bash blocks of the README's ``## Serving`` section, each
    as its words (comments dropped, ``\\`` continuations joined)."""
    text = readme.read_text(encoding="utf-8")
    start = text.index("\n## Serving\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end > 0 else len(text)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's Serving section has no ```bash block"
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def substitutions(router_dir: Path, tmp: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``(whole words, inside words)``: what replaces what in the README's commands."""
    ports = {p: str(free_port()) for p in PORTS}
    local = tmp / "upstreams.local.yaml"
    text = (ROOT / LOCAL).read_text()
    assert "127.0.0.1:8001" in text, f"{LOCAL} no longer points at the stub's documented port"
    local.write_text(text.replace("127.0.0.1:8001", f"127.0.0.1:{ports['8001']}"))
    words = {"ROUTER": str(router_dir), LOCAL: str(local), **ports}
    inside = {f"127.0.0.1:{p}": f"127.0.0.1:{q}" for p, q in ports.items()}
    return words, inside


def substituted(words: list[str], whole: dict[str, str], inside: dict[str, str]) -> list[str]:
    out = []
    for w in words:
        w = whole.get(w, w)
        for old, new in inside.items():
            w = w.replace(old, new)
        out.append(w)
    return PROGRAM + out[1:] if out[0] == "proute" else out


def curl(words: list[str]) -> httpx.Response:
    """``curl`` with the options the README uses, through httpx."""
    args, headers, data, url = iter(words[1:]), {}, None, None
    retries, delay, refused = 0, 1.0, False
    for w in args:
        if w in ("-s", "--silent", "-N", "--no-buffer"):
            continue
        if w in ("-H", "--header"):
            name, value = next(args).split(":", 1)
            headers[name.strip()] = value.strip()
        elif w in ("-d", "--data"):
            data = next(args)
        elif w == "--retry":
            retries = int(next(args))
        elif w == "--retry-delay":
            delay = float(next(args))
        elif w == "--retry-connrefused":
            refused = True
        elif w.startswith("http://"):
            url = w
        else:
            raise AssertionError(f"the README's curl uses {w!r}, an option this test does not run")
    assert url is not None, words
    for attempt in range(retries + 1):
        try:
            return httpx.request("POST" if data else "GET", url, headers=headers, content=data, timeout=60)
        except httpx.ConnectError:
            if not refused or attempt == retries:
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")


def wait_for_port(proc: subprocess.Popen, port: int, log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited {proc.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{proc.args} did not listen on {port} within {seconds:g} s:\n{log.read_text()}")


@dataclass
class Started:
    """A background command and what its ``/`` answered once it listened."""

    proc: subprocess.Popen
    root: httpx.Response


def run_commands(commands: list[list[str]], tmp: Path) -> list[tuple[list[str], object]]:
    """Run the commands (see the module docstring): ``(words, what it gave)`` for each."""
    jobs: list[subprocess.Popen] = []
    done: list[tuple[list[str], object]] = []
    try:
        for words in commands:
            if words[-1] == "&":
                log = tmp / f"job{len(jobs) + 1}.log"
                with log.open("w") as fh:
                    proc = subprocess.Popen(words[:-1], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
                jobs.append(proc)
                port = int(words[words.index("--port") + 1])
                wait_for_port(proc, port, log)
                done.append((words, Started(proc, httpx.get(f"http://127.0.0.1:{port}/", timeout=60))))
            elif words[0] == "curl":
                done.append((words, curl(words)))
            elif words[0] == "kill":
                for job in words[1:]:
                    proc = jobs[int(job.lstrip("%")) - 1]
                    proc.terminate()
                    proc.wait(30)
                done.append((words, None))
            else:
                out = subprocess.run(words, cwd=ROOT, capture_output=True, text=True, timeout=300)
                assert out.returncode == 0, f"{words} exited {out.returncode}:\n{out.stderr}"
                done.append((words, out))
    finally:
        for proc in jobs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    return done


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory, cache_dir) -> Path:
    return train_tiny_router(tmp_path_factory, cache_dir)


def test_readme_serving_commands_run_as_written(router_dir, tmp_path):
    from proute.router import PersonalizedRouter

    router = PersonalizedRouter.load(router_dir)

    def expected(query: str, user) -> str:
        return router.route_single({"query": query, "user_id": user})["model_name"]

    commands = serving_commands()
    whole, inside = substitutions(router_dir, tmp_path)
    done = run_commands([substituted(c, whole, inside) for c in commands], tmp_path)
    seen = set()
    for (words, result), readme in zip(done, commands, strict=True):
        if isinstance(result, httpx.Response):
            assert result.status_code == 200, (readme, result.text)
            body = json.loads(words[words.index("-d") + 1]) if "-d" in words else None
            url = next(w for w in readme if w.startswith("http://"))
            if url.endswith("/v1/chat/completions"):
                query = body["messages"][-1]["content"]
                llm = expected(query, body["user"])
                assert result.json()["choices"][0]["message"]["content"] == f"stub {llm}: {query}"
                assert result.json()["proute"]["model_name"] == result.headers["x-proute-model"] == llm
                seen.add("chat completion")
            elif url.endswith("/v1/route"):
                assert result.json()["model_name"] == expected(body["query"], body["user"])
                seen.add("route")
            else:
                assert result.json()["status"] == "ok"
        elif isinstance(result, subprocess.CompletedProcess) and readme[:2] == ["proute", "infer"]:
            query, user = readme[readme.index("--query") + 1], readme[readme.index("--user") + 1]
            assert result.stdout.strip() == f"stub {expected(query, int(user))}: {query}", result.stderr
            seen.add("infer")
        elif isinstance(result, Started):
            seen.add(readme[1])
            if readme[1] == "chat":  # the page, as a browser gets it
                assert result.root.status_code == 200 and "proute chat" in result.root.text
    assert seen == {"stub-upstream", "serve", "chat completion", "route", "infer", "chat"}, seen
