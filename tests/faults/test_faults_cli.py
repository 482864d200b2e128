"""Fault matrix of ``proute infer``: unreadable or malformed request files, bad fields,
missing or edited routers. Each ends in one ``proute infer: <where>: <what>`` line and a
non-zero exit, never a traceback, and prints no partial results.

The router is one tiny trained router per module (fixture ``trained`` of conftest.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from proute.cli import main

ROOT = Path(__file__).resolve().parents[2]
GOOD = '{"query": "What is 2 + 2?", "user_id": 0}'


def requests_file(*lines: str, encoding: str = "utf-8"):
    """A fault that writes ``requests.jsonl`` and routes it with the trained router."""

    def make(tmp: Path, router: Path):
        path = tmp / "requests.jsonl"
        path.write_bytes("\n".join(lines).encode(encoding) + b"\n")
        return [str(router), "--file", str(path)], path

    return make


def missing_file(tmp: Path, router: Path):
    return [str(router), "--file", str(tmp / "absent.jsonl")], tmp / "absent.jsonl"


def directory_as_file(tmp: Path, router: Path):
    (tmp / "a-folder").mkdir()
    return [str(router), "--file", str(tmp / "a-folder")], tmp / "a-folder"


def missing_router(tmp: Path, router: Path):
    return [str(tmp / "no-router"), "--query", "hi", "--user", "0"], tmp / "no-router"


def edited_router(tmp: Path, router: Path):
    copy = Path(shutil.copytree(router, tmp / "router"))
    meta = json.loads((copy / "router.json").read_text())
    meta["llms"] = meta["llms"][::-1]
    (copy / "router.json").write_text(json.dumps(meta))
    return [str(copy), "--query", "hi", "--user", "0"], copy / "router.json"


def empty_query_option(tmp: Path, router: Path):
    return [str(router), "--query", " ", "--user", "0"], None


# id -> (fault, where the message must point, what it must say)
FAULTS = {
    "file-missing": (missing_file, "", "No such file"),
    "file-is-a-directory": (directory_as_file, "", "Is a directory"),
    "query-null": (
        requests_file(GOOD, '{"query": null, "user_id": 1}'),
        ", line 2",
        "'query' must be a string",
    ),
    "query-number": (requests_file('{"query": 7, "user_id": 1}'), ", line 1", "'query' must be a string"),
    "query-empty": (requests_file(GOOD, "", '{"query": "", "user_id": 1}'), ", line 3", "'query' is empty"),
    "query-missing": (requests_file(GOOD, '{"user_id": 1}'), ", line 2", "missing field 'query'"),
    "user-missing": (requests_file('{"query": "hi"}'), ", line 1", "missing field 'user_id'"),
    "user-unknown": (
        requests_file(GOOD, "", "", '{"query": "hi", "user_id": "zed"}'),
        ", line 4",
        "unknown user_id 'zed'",
    ),
    "task-unknown": (
        requests_file('{"query": "hi", "user_id": 0, "task": "poetry"}'),
        ", line 1",
        "unknown task 'poetry'",
    ),
    "not-an-object": (requests_file(GOOD, "[1, 2]"), ", line 2", "expected an object"),
    "invalid-json": (requests_file(GOOD, "{not json"), ", line 2", "invalid JSON"),
    "latin-1": (
        requests_file(GOOD, '{"query": "Où est le café?", "user_id": 1}', encoding="latin-1"),
        ", line 2",
        "not UTF-8",
    ),
    "router-missing": (missing_router, "", "no such router directory"),
    "router-edited": (edited_router, "", "field 'llms'"),
    "query-option-empty": (empty_query_option, None, "'query' is empty"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_infer_fault_is_one_clear_line(trained, tmp_path, unchanged, capsys, fault):
    make, where, what = FAULTS[fault]
    argv, path = make(tmp_path, trained)
    with unchanged(tmp_path), unchanged(trained), pytest.raises(SystemExit) as err:
        main(["infer", *argv])
    message = err.value.code
    assert isinstance(message, str) and message.startswith("proute infer: "), message  # exit status 1
    if where is not None:
        assert f"{path}{where}: " in message, message
    assert what in message, message
    assert capsys.readouterr().out == ""  # nothing routed before the error


def test_infer_reads_utf8_with_bom_and_crlf(trained, tmp_path, capsys):
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + f'{GOOD}\r\n\r\n{{"query": "Caf\u00e9?", "user_id": 1}}\r\n'.encode())
    assert main(["infer", str(trained), "--file", str(path)]) == 0
    assert [json.loads(line)["user_id"] for line in capsys.readouterr().out.splitlines()] == [0, 1]


@pytest.mark.parametrize("fault", ["file-missing", "query-null", "latin-1", "router-missing"])
def test_infer_fault_in_a_subprocess_has_no_traceback(trained, tmp_path, fault):
    make, where, what = FAULTS[fault]
    argv, path = make(tmp_path, trained)
    proc = subprocess.run(
        [sys.executable, "-m", "proute.cli", "infer", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"proute infer: {path}{where}: " in proc.stderr and what in proc.stderr, proc.stderr
