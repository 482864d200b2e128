"""Baselines exported as routers (proute.baselines.export, ``export_baselines=``) and loaded by
``proute.router.load_router`` with the GNN router's routing interface.

One tiny run on a table of two opposite users: ``likes_big`` gets reward 1 from ``big-llama``
only, ``likes_small`` from ``small-qwen`` only, on the same queries.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from proute.baselines.export import ExportedBaseline, NotAdaptable
from proute.baselines.select import fit_on_validation
from proute.router import PersonalizedRouter, RouterFormatError, load_router, router_kind

LLMS = ("big-llama", "small-qwen", "mid-gemma")
TOPICS = ["algebra", "geography", "poetry", "chemistry"]
USERS = {"likes_big": "big-llama", "likes_small": "small-qwen"}
EXPORTED = ("best_llm", "per_user", "per_user_task", "knn", "mlp", "mf")


def text(i: int) -> str:
    return f"A question about {TOPICS[i % 4]} number {i}: what is {i * 7 % 1000}?"


def write_table(path: Path, n_queries: int = 30) -> Path:
    rows = [
        {
            "user_id": user,
            "query_id": f"id{i}",
            "query": text(i),
            "task": TOPICS[i % 2],
            "llm": llm,
            "performance": float(llm == good),
            "cost": 1.0,
            "reward": float(llm == good),
            "split": "train" if i % 5 < 3 else ("val" if i % 5 == 3 else "test"),
        }
        for i in range(n_queries)
        for user, good in USERS.items()
        for llm in LLMS
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cache_dir) -> Path:
    from conftest import train_overrides
    from proute.config import compose
    from proute.train import run

    tmp = tmp_path_factory.mktemp("baseline_routers")
    overrides = train_overrides(tmp / "run", cache_dir) + [
        "dataset=table",
        f"dataset.path={write_table(tmp / 'users.csv')}",
        "users=from_data",
        "split=provided",
        "train_epoch=1",
        "export_baselines=[knn,mf]",
    ]
    run(compose("train", overrides), tmp / "run")
    return tmp / "run"


def requests(user: str) -> list[dict]:
    return [{"query": text(i), "user_id": user} for i in range(100, 104)]


def test_training_exports_baselines_that_route_each_user_to_its_llm(run_dir):
    assert router_kind(run_dir / "router") == "gnn"
    assert isinstance(load_router(run_dir / "router"), PersonalizedRouter)
    for name in ("knn", "mf"):
        router = load_router(run_dir / "baselines" / name)
        assert isinstance(router, ExportedBaseline) and router.kind == f"baseline/{name}"
        assert router.meta["config"]["export_baselines"] == ["knn", "mf"]  # the run's config, recorded
        for user, good in USERS.items():
            for r in router.route_batch(requests(user)):
                assert r["model_name"] == max(r["scores"], key=r["scores"].get) == good, (name, user, r)
                assert r["task"] in TOPICS[:2]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"knn", "mf", "per_user"} <= set(metrics["baselines"]["test"])  # exported: also reported


def test_baseline_router_refuses_unknown_users_and_adaptation(run_dir):
    router = load_router(run_dir / "baselines" / "knn")
    with pytest.raises(KeyError, match="request 0: unknown user_id 'stranger'"):
        router.route_batch(requests("stranger"))
    mixed = router.route_batch([*requests("likes_big")[:1], *requests("stranger")[:1]], errors="return")
    assert mixed[0]["routed_as"] == "user" and mixed[1]["code"] == "unknown_user" and mixed[1]["index"] == 1
    router.unknown_user = "average"
    routed = router.route_batch(requests("stranger"))  # the baseline's own fallback
    assert len(routed) == 4 and {r["routed_as"] for r in routed} == {"average"}
    with pytest.raises(NotAdaptable, match="'baseline/knn' cannot feedback"):
        router.feedback("likes_big", text(1), "big-llama", 1.0)
    assert isinstance(NotAdaptable("x"), NotImplementedError)
    assert getattr(router, "add_user", None) is None  # the server's check: 501, not available


@pytest.mark.parametrize("name", EXPORTED)
def test_a_reloaded_baseline_router_scores_as_the_fitted_baseline(run_dir, tmp_path, name):
    from proute.config import compose
    from proute.data.pipeline import prepare_from_config

    cfg = compose("train", [f"{k}={v}" for k, v in _data_overrides(run_dir).items()])
    prepared = prepare_from_config(cfg)
    table, emb = prepared.table, prepared.query_embedding_dict()
    baseline, info = fit_on_validation(name, list(LLMS), table[table["split"] == "train"], query_emb=emb)
    gnn = PersonalizedRouter.load(run_dir / "router")
    ExportedBaseline.from_fitted(baseline, gnn, info).save(tmp_path / name)
    loaded = load_router(tmp_path / name)
    pairs = table[table["split"] == "test"].drop_duplicates(["user_id", "query_id"])[
        ["user_id", "query_id", "task"]
    ]
    q = np.stack([emb[str(i)] for i in pairs["query_id"]])
    scores, used = loaded.score(None, list(pairs["user_id"]), list(pairs["task"]), query_emb=q)
    np.testing.assert_array_equal(scores, baseline.score(pairs.reset_index(drop=True)))
    assert used == list(pairs["task"])
    again, _ = load_router(tmp_path / name).score(
        None, list(pairs["user_id"]), list(pairs["task"]), query_emb=q
    )
    np.testing.assert_array_equal(again, scores)
    resaved = load_router(tmp_path / name).save(tmp_path / f"{name}_again")  # a loaded router saves as it was
    assert (resaved / "state.safetensors").read_bytes() == (
        tmp_path / name / "state.safetensors"
    ).read_bytes()


@pytest.mark.parametrize("name", ["knn", "mf"])
def test_an_exported_baseline_scores_the_test_split_as_training_reported(run_dir, name):
    """The exported router is the fitted baseline training evaluated: through the router
    interface (RouterScorer, as `proute evaluate` scores) its test metrics are the reported ones."""
    from proute.config import compose
    from proute.data.pipeline import prepare_from_config
    from proute.evaluation.scorers import RouterScorer
    from proute.evaluation.scoring import dense_block, evaluate

    prepared = prepare_from_config(
        compose("train", [f"{k}={v}" for k, v in _data_overrides(run_dir).items()])
    )
    test = prepared.table[prepared.table["split"] == "test"]
    pairs = test.drop_duplicates(["user_id", "query_id"])[["user_id", "query_id", "task"]].reset_index(
        drop=True
    )
    router = load_router(run_dir / "baselines" / name)
    got = evaluate(
        RouterScorer(router, prepared.query_embedding_dict(), gold_tasks=True),
        (pairs, dense_block(test, pairs, router.llms)),
    )
    reported = json.loads((run_dir / "metrics.json").read_text())["baselines"]["test"][name]["overall"]
    assert got["overall"]["n"] == reported["n"]
    assert got["overall"]["reward"] == pytest.approx(reported["reward"], abs=1e-12)


def _data_overrides(run_dir: Path) -> dict:
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    return {
        "dataset": "table",
        "dataset.path": cfg["dataset"]["path"],
        "users": "from_data",
        "split": "provided",
        "paths.cache_dir": cfg["paths"]["cache_dir"],
    }


def _edited(src: Path, dst: Path, **fields) -> Path:
    import shutil

    shutil.copytree(src, dst)
    meta = json.loads((dst / "router.json").read_text())
    meta.update(fields)
    (dst / "router.json").write_text(json.dumps(meta))
    return dst


def test_a_corrupt_or_unknown_baseline_router_is_refused_naming_file_and_field(run_dir, tmp_path):
    src = run_dir / "baselines" / "knn"
    with pytest.raises(RouterFormatError, match=r"router\.json: field 'kind' is 'forest'"):
        load_router(_edited(src, tmp_path / "a", kind="forest"))
    with pytest.raises(RouterFormatError, match=r"router\.json: field 'kind' is 'baseline/oracle'"):
        load_router(_edited(src, tmp_path / "b", kind="baseline/oracle"))
    meta = json.loads((src / "router.json").read_text())
    with pytest.raises(RouterFormatError, match=r"router\.json: field 'llms' does not match its sha256"):
        load_router(_edited(src, tmp_path / "c", llms=meta["llms"][::-1]))
    broken = _edited(src, tmp_path / "d")
    (broken / "state.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(RouterFormatError, match=r"state\.safetensors: its sha256"):
        load_router(broken)
    with pytest.raises(RouterFormatError, match=r"state\.safetensors: not a readable"):
        ExportedBaseline.load(broken, verify=False)
    with pytest.raises(
        RouterFormatError, match=r"knn/router\.json: field 'kind' is 'baseline/knn', not a GNN"
    ):
        PersonalizedRouter.load(src)
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "router.json").write_text("{")
    with pytest.raises(RouterFormatError, match=r"e/router\.json: not valid JSON"):
        load_router(tmp_path / "e")


def test_export_baselines_names_are_checked_before_training(train_cfg):
    from proute.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match="export_baselines"):
        validate_config(train_cfg("export_baselines=[oracle]"))


def test_a_baseline_router_is_served(run_dir):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import httpx

    from proute.serving.app import create_app
    from serving_fixtures import ServerThread

    router = load_router(run_dir / "baselines" / "mf")
    with ServerThread(create_app(router, None, unknown_user="error", warmup=False)) as s:
        for user, good in USERS.items():
            d = httpx.post(s.url + "/v1/route", json={"query": text(101), "user": user}).json()
            assert d["model_name"] == good and d["user_id"] == user
        assert httpx.post(s.url + "/v1/route", json={"query": text(1), "user": "nobody"}).status_code == 404
        fb = {"user": "likes_big", "query": text(1), "llm": "big-llama", "outcome": 1.0}
        assert httpx.post(s.url + "/v1/feedback", json=fb).status_code == 501
        assert httpx.get(s.url + "/health").json()["features"] == dict.fromkeys(
            ("feedback", "add_user", "add_llm"), False
        )


def test_proute_evaluate_scores_a_baseline_router(run_dir):
    """What `proute evaluate ROUTER` computes (proute.cli.evaluate.evaluate_router), on a
    baseline router: its test reward is the one training reported, the split is checked to
    be held out with the run's recorded config, tasks are inferred by centroid."""
    from proute.cli.evaluate import evaluate_router
    from proute.config import compose

    cfg = compose("train", [f"{k}={v}" for k, v in _data_overrides(run_dir).items()])
    result = evaluate_router(load_router(run_dir / "baselines" / "knn"), cfg, "test", log=lambda m: None)
    reported = json.loads((run_dir / "metrics.json").read_text())["baselines"]["test"]["knn"]["overall"]
    assert result["gold"]["overall"]["reward"] == pytest.approx(reported["reward"], abs=1e-12)
    assert result["held_out"] is True and result["task_inference"] == "centroid"


def test_proute_infer_routes_with_a_baseline_router(run_dir, capsys):
    """`proute infer baselines/<name>` loads the baseline router (load_router) and prints
    the LLM it picks, as for a GNN router."""
    from proute.cli import main

    router = load_router(run_dir / "baselines" / "knn")
    user = router.users[0]
    expected = router.route_single({"query": text(100), "user_id": user})["model_name"]
    code = main(["infer", str(run_dir / "baselines" / "knn"), "--query", text(100), "--user", str(user)])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["model_name"] == expected
