"""Options of ``proute`` that users of other routers reach for (issue 16): ``--user-id``,
``--input`` and ``--router`` for ``infer``, ``--output`` as JSON or JSONL with the query,
``proute train --config FILE.yaml``, and help texts that read as plain text naming the
command. The router is one tiny trained router per module."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, train_tiny_router
from proute.cli import main
from proute.cli.hydra_commands import expand_config_files, file_overrides


@pytest.fixture(scope="module")
def router(tmp_path_factory, cache_dir):
    return train_tiny_router(tmp_path_factory.mktemp("run"), cache_dir)


def proute(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "proute.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_infer_takes_user_id_input_and_router_aliases(router, tmp_path, capsys):
    assert main(["infer", "--router", str(router), "--query", "What is 2 + 2?", "--user-id", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["user_id"] == 3 and result["query"] == "What is 2 + 2?"
    requests = tmp_path / "in.jsonl"
    requests.write_text('{"query": "Capital of France?", "user_id": 1}\n')
    assert main(["infer", "--router", str(router), "--input", str(requests)]) == 0
    assert json.loads(capsys.readouterr().out)["user_id"] == 1
    with pytest.raises(SystemExit) as err:  # two different routers: a usage error (status 2)
        main(["infer", str(router), "--router", str(tmp_path), "--query", "hi", "--user", "0"])
    assert err.value.code == 2 and "give the router once" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["infer", "--query", "hi", "--user", "0"])
    assert err.value.code == 2 and "router directory is required" in capsys.readouterr().err


def test_infer_output_is_json_or_jsonl_by_suffix_and_has_the_query(router, tmp_path, capsys):
    requests = tmp_path / "in.jsonl"
    asked = [{"query": "What is 2 + 2?", "user_id": 0}, {"query": "Capital of France?", "user_id": 1}]
    requests.write_text("".join(json.dumps(r) + "\n" for r in asked))
    as_json, as_jsonl = tmp_path / "results.json", tmp_path / "results.jsonl"
    assert main(["infer", str(router), "--file", str(requests), "--output", str(as_json)]) == 0
    assert main(["infer", str(router), "--file", str(requests), "--output", str(as_jsonl)]) == 0
    array = json.loads(as_json.read_text())  # one JSON document, not lines
    lines = [json.loads(x) for x in as_jsonl.read_text().splitlines()]
    assert isinstance(array, list) and array == lines
    assert [(r["query"], r["user_id"]) for r in array] == [(r["query"], r["user_id"]) for r in asked]
    assert all(r["model_name"] and "score" in r for r in array)


def test_train_config_file_is_overrides_on_top_of_train_yaml(tmp_path):
    from proute.config import compose

    path = tmp_path / "mine.yaml"
    path.write_text("model: gat\ntrain_epoch: 20\ntrainer:\n  loss: bce\ntags: [a b, '1']\n")
    overrides = expand_config_files("train", ["--config", str(path), "train_epoch=7"])
    cfg = compose("train", overrides)
    assert cfg.model.conv == "gat" and cfg.trainer.loss == "bce" and list(cfg.tags) == ["a b", "1"]
    assert cfg.train_epoch == 7  # the command line comes after the file: it wins
    flags = expand_config_files("train", ["-m", f"--config={path}", "--cfg", "job", "seed=1"])
    assert flags[:3] == ["-m", "--cfg", "job"] and flags[-1] == "seed=1" and "model='gat'" in flags
    assert file_overrides(["model=sage", "train_epoch=3"]) == ["model=sage", "train_epoch=3"]
    with pytest.raises(ValueError, match="'defaults' list is not needed"):
        file_overrides({"defaults": ["train", "_self_"]})
    with pytest.raises(SystemExit, match=r"--config .*absent.yaml: cannot read it"):
        expand_config_files("train", ["--config", str(tmp_path / "absent.yaml")])


def test_proute_train_config_composes_without_hydras_ambiguity(tmp_path):
    """``proute train --config F`` was Hydra's "ambiguous option: --config could match
    --config-path, --config-name, --config-dir"; ``--cfg job`` prints the composed config
    without training."""
    path = tmp_path / "mine.yaml"
    path.write_text("model: gat\ntrain_epoch: 20\n")
    out = proute("train", f"--config={path}", "--cfg", "job", "train_epoch=5")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "conv: gat" in out.stdout and "train_epoch: 5" in out.stdout


def test_help_is_plain_text_naming_the_command():
    top = proute("--help")
    assert top.returncode == 0 and "``" not in top.stdout and "personalized LLM routing" in top.stdout
    assert "--config FILE.yaml" in top.stdout
    for command in ("train", "data"):
        out = proute(command, "--help")
        assert out.returncode == 0, out.stderr[-2000:]
        assert f"proute {command}:" in out.stdout and "__main__" not in out.stdout
        assert "--config FILE.yaml" in out.stdout


def test_infer_unknown_user_policy_comes_from_the_router_and_defaults_to_error(router, capsys):
    from proute.router import UNKNOWN_USER_POLICIES

    with pytest.raises(SystemExit):
        main(["infer", "--help"])
    assert "--unknown-user {" + ",".join(UNKNOWN_USER_POLICIES) + "}" in capsys.readouterr().out
    ask = ["infer", str(router), "--query", "What is 2 + 2?", "--user", "77"]
    with pytest.raises(SystemExit) as err:
        main(ask)
    message = str(err.value.code)
    assert "unknown user_id 77" in message and "--unknown-user average" in message, message
    assert main([*ask, "--unknown-user", "average"]) == 0
    result = json.loads(capsys.readouterr().out)
    llms = json.loads((router / "router.json").read_text())["llms"]
    assert result["user_id"] == 77 and result["model_name"] in llms


def test_infer_reads_an_integral_decimal_user_id_as_the_integer(router, capsys):
    ask = ["infer", str(router), "--query", "What is 2 + 2?", "--user"]
    assert main([*ask, "3.0"]) == 0
    assert json.loads(capsys.readouterr().out)["user_id"] == 3
    with pytest.raises(SystemExit) as err:
        main([*ask, "3.5"])
    message = str(err.value.code)
    assert "field '--user'" in message and "the number 3.5, which is not an integer" in message, message
