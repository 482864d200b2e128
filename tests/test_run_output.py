"""What a training run tells its user (issue 16, item 3): the run directory at the start and
the end, a readable table of the GNN against the strongest baseline and the oracle, a line
for every phase without a bar, and no bar at all with quiet=true."""

from __future__ import annotations

import json
import logging
import re
import time

from proute.evaluation.reporting import run_summary
from proute.train import run
from proute.training.progress import phase

_BAR = re.compile(r"\d+%\||it/s|epoch/s|text/s|encoding \d+ texts")


def test_a_quiet_run_prints_its_directory_and_a_summary_table_and_no_bar(
    train_cfg, tmp_path, tmp_path_factory, capfd
):
    """A cold embedding cache, text_encoder.show_progress=true and batches of 4 texts (the
    fixtures have 11 queries): before the fix the encoding bar ran despite quiet=true, and
    the run ended on a raw JSON log line."""
    cold = tmp_path_factory.mktemp("cold_cache")
    encoder = ["text_encoder.show_progress=true", "text_encoder.batch_size=4", f"paths.cache_dir={cold}"]
    run(train_cfg("quiet=true", *encoder), tmp_path)
    out, err = capfd.readouterr()
    assert not _BAR.search(out + err), (out + err)[-3000:]
    assert out.splitlines()[0] == f"proute train: run directory {tmp_path}"
    m = json.loads((tmp_path / "metrics.json").read_text())
    test, oracle = m["test"]["overall"], m["test"]["overall"]["oracle_reward"]
    rows = {
        "GNN, gold task labels": test["reward"],
        f"GNN, live (tasks inferred, {m['live']['mode']})": m["live"]["test"]["overall"]["reward"],
        "oracle (each pair's best LLM)": oracle,
    }
    val_b = {n: b for n, b in m["baselines"]["val"].items() if not b.get("upper_bound")}
    best = max(val_b, key=lambda n: val_b[n]["overall"]["reward"])
    rows[f"strongest baseline on val: {best}"] = m["baselines"]["test"][best]["overall"]["reward"]
    for label, reward in rows.items():
        line = f"  {label:<44}{reward:>#9.4g}{reward / oracle:>11.1%}"
        assert line in out.splitlines(), (line, out[-2000:])
    assert out.rstrip().splitlines()[-1].startswith(f"run directory: {tmp_path} ")
    assert '{"n":' not in out + err  # the raw JSON line is gone


def test_a_run_that_is_not_quiet_shows_its_bars(train_cfg, tmp_path, tmp_path_factory, capfd):
    """The check above can fail: without quiet the encoding and epoch bars are there."""
    cold = tmp_path_factory.mktemp("cold_cache")
    encoder = ["text_encoder.show_progress=true", "text_encoder.batch_size=4", f"paths.cache_dir={cold}"]
    run(train_cfg("quiet=false", "train_epoch=1", *encoder), tmp_path)
    out, err = capfd.readouterr()
    assert "epochs" in err and re.search(r"encoding \d+ texts", err), err[-2000:]


def test_a_long_phase_logs_while_it_runs(caplog):
    with caplog.at_level(logging.INFO, logger="proute.train"), phase("fitting things", every=0.05):
        time.sleep(0.3)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "fitting things …" and lines[-1].startswith("fitting things: done in ")
    assert sum("fitting things: still running" in line for line in lines) >= 2


def test_the_summary_says_n_a_for_shares_of_a_non_positive_oracle():
    overall = {"n": 4, "reward": -0.25, "oracle_reward": 0.0}
    report = {"test": {"overall": overall}, "baselines": {}}
    text = run_summary(report, "/runs/x")
    assert "-0.2500" in text and "n/a" in text and "/runs/x" in text


def test_the_strongest_baseline_is_a_method_never_the_oracle():
    """The oracle has the best validation reward by construction: an upper bound, not a
    baseline, so the summary's "strongest baseline" is the best of the others."""

    def block(reward, **extra):
        return {"overall": {"reward": reward}, **extra}

    val = {"oracle": block(0.45, upper_bound=True), "per_user_task": block(0.36), "knn": block(0.35)}
    test = {"oracle": block(0.46, upper_bound=True), "per_user_task": block(0.359), "knn": block(0.347)}
    overall = {"n": 10, "reward": 0.36, "oracle_reward": 0.46}
    report = {"test": {"overall": overall}, "baselines": {"val": val, "test": test}}
    text = run_summary(report, "/runs/x")
    assert "strongest baseline on val: per_user_task" in text and "0.3590" in text
