"""Training end to end: personalisation works where it must, every config option trains,
runs are reproducible, the exported router scores exactly as evaluation did."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from proute.router import PersonalizedRouter, RouterFormatError
from proute.train import run

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def opposite_users_table(path: Path, n_queries: int = 60) -> Path:
    """Two users who ask the same queries and want opposite LLMs: user 'q' always gets
    reward 1 from `big-llama` and 0 from `small-qwen`; user 'c' the reverse."""
    rng = np.random.default_rng(0)
    topics = ["algebra", "geography", "poetry", "chemistry", "football", "cooking"]
    rows = []
    for i in range(n_queries):
        text = f"A question about {topics[i % 6]} number {i}: what is {rng.integers(1000)}?"
        split = "train" if i % 5 < 3 else ("val" if i % 5 == 3 else "test")
        for user, good in (("q", "big-llama"), ("c", "small-qwen")):
            for llm in ("big-llama", "small-qwen", "mid-gemma"):
                perf = float(rng.random() < 0.5)
                rows.append(
                    {
                        "user_id": user,
                        "query_id": f"id{i}",
                        "query": text,
                        "task": topics[i % 2],
                        "llm": llm,
                        "performance": perf,
                        "cost": 1.0,
                        "reward": 1.0 if llm == good else 0.0,
                        "split": split,
                    }
                )
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def train_opposite(train_cfg, tmp_path, *extra):
    tmp_path.mkdir(parents=True, exist_ok=True)
    table = opposite_users_table(tmp_path / "opposite.csv")
    cfg = train_cfg(
        "dataset=table",
        f"dataset.path={table}",
        "users=from_data",
        "split=provided",
        "train_epoch=40",
        "trainer.steps_per_epoch=2",
        "trainer.patience=40",
        *extra,
    )
    run(cfg, tmp_path / "run")
    return json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_minibatch_router_prefers_each_users_llm(train_cfg, tmp_path):
    """trainer=minibatch (DGL neighbour sampling, small fan-outs) learns the opposite users
    too, and its exported router routes each user to that user's LLM."""
    m = train_opposite(
        train_cfg, tmp_path, "trainer=minibatch", "trainer.batch_nodes=16", "trainer.fanouts=[4,4]"
    )
    per_user = m["test"]["per_user"]
    assert per_user["q"]["accuracy"] >= 0.9 and per_user["c"]["accuracy"] >= 0.9
    router = PersonalizedRouter.load(tmp_path / "run" / "router")
    q = {"query": "A question about algebra number 999: what is 5?"}
    assert router.route_single({**q, "user_id": "q"})["model_name"] == "big-llama"
    assert router.route_single({**q, "user_id": "c"})["model_name"] == "small-qwen"


def test_router_prefers_each_users_llm_and_no_user_graph_cannot(train_cfg, tmp_path):
    m = train_opposite(train_cfg, tmp_path)
    per_user = m["test"]["per_user"]
    assert per_user["q"]["accuracy"] >= 0.9 and per_user["c"]["accuracy"] >= 0.9
    assert m["test"]["overall"]["disagreement"] >= 0.9
    # The exported router routes a new query of each user to that user's LLM.
    router = PersonalizedRouter.load(tmp_path / "run" / "router")
    q = {"query": "A question about algebra number 999: what is 5?"}
    assert router.route_single({**q, "user_id": "q"})["model_name"] == "big-llama"
    assert router.route_single({**q, "user_id": "c"})["model_name"] == "small-qwen"

    flat = train_opposite(train_cfg, tmp_path / "no_users", "graph=no_users")
    accs = [flat["test"]["per_user"][u]["accuracy"] for u in ("q", "c")]
    assert min(accs) <= 0.5 and np.mean(accs) <= 0.6
    assert flat["test"]["overall"]["disagreement"] == 0.0


@pytest.mark.parametrize(
    "group,option", [(g, o) for g in ("graph", "model", "masking", "logger", "trainer") for o in options(g)]
)
def test_every_option_trains_one_epoch(train_cfg, tmp_path, group, option, monkeypatch):
    cfg = train_cfg(f"{group}={option}", "train_epoch=1")
    if option == "wandb_online":  # no account here: a clear error, before any training
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
        monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
        with pytest.raises(RuntimeError, match="WANDB_API_KEY"):
            run(cfg, tmp_path)
        return
    out = run(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["overall"]["accuracy"] <= 1.0
    assert out["epochs"] == 1 and np.isfinite(out["val/reward"])
    assert (tmp_path / "router" / "weights.safetensors").is_file()
    if group != "logger" or option == "none":  # the tests' default: no W&B run
        assert not (tmp_path / "wandb").exists()
    else:
        runs = list((tmp_path / "wandb").glob("offline-run-*"))
        assert len(runs) == 1
        tables = list(runs[0].glob("files/media/table/test/per_user*.table.json"))
        assert tables, "the W&B run holds no per-user table"
        table = json.loads(tables[0].read_text())
        assert "accuracy" in table["columns"] and len(table["data"]) == 9


def test_same_seed_same_metrics_other_seed_differs(train_cfg, tmp_path):
    """Bit-identical with trainer.deterministic=true (one thread, deterministic kernels):
    with two threads the order of floating-point reductions in backward varies run to run
    (docs/DESIGN.md §8)."""
    a = run(train_cfg("train_epoch=3", "trainer.deterministic=true"), tmp_path / "a")
    b = run(train_cfg("train_epoch=3", "trainer.deterministic=true"), tmp_path / "b")
    keys = [k for k in a if k.startswith(("val/", "test/"))]
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
    hist_a = pd.read_csv(tmp_path / "a" / "history.csv")
    hist_b = pd.read_csv(tmp_path / "b" / "history.csv")
    assert hist_a["train/loss"].tolist() == hist_b["train/loss"].tolist()
    c = pd.read_csv(
        run(train_cfg("train_epoch=3", "random_state=1", "trainer.deterministic=true"), tmp_path / "c")
        and tmp_path / "c" / "history.csv"
    )
    assert c["train/loss"].tolist() != hist_a["train/loss"].tolist()


def test_a_deterministic_run_builds_and_fits_on_one_thread_and_restores_the_counts(
    train_cfg, tmp_path, monkeypatch
):
    """DGL's kernels read a thread count of their own, which torch.set_num_threads does not
    reach, and the graph built on two threads gave other numbers once scikit-learn was
    imported first (a cold embedding cache imports it with the text encoder): the default
    run's first loss was 2.0971 instead of 2.0903. A deterministic run holds torch and DGL
    at one thread from the data to the report (the graph's build included) and puts the
    old counts back; a run that is not deterministic leaves them alone."""
    import dgl
    import torch

    import proute.train as train_module

    seen = []
    real_build = train_module.build_graph_from

    def spy(prepared, graph_cfg):
        seen.append((torch.get_num_threads(), dgl.utils.get_num_threads()))
        return real_build(prepared, graph_cfg)

    monkeypatch.setattr(train_module, "build_graph_from", spy)
    torch.set_num_threads(2)
    dgl.utils.set_num_threads(2)
    try:
        run(train_cfg("train_epoch=1", "trainer.deterministic=true"), tmp_path / "a")
        assert seen == [(1, 1)]
        assert (torch.get_num_threads(), dgl.utils.get_num_threads()) == (2, 2)
        run(train_cfg("train_epoch=1"), tmp_path / "b")
        assert seen[1] == (2, 2)
    finally:
        torch.set_num_threads(1)
        dgl.utils.set_num_threads(1)


@pytest.mark.parametrize("trainer", ["fullgraph", "minibatch"])
def test_reloaded_router_scores_exactly_as_evaluation(train_cfg, tmp_path, trainer):
    from proute.data.pipeline import prepare_from_config
    from proute.train import build_graph_from

    cfg = train_cfg("train_epoch=2", f"trainer={trainer}")
    run(cfg, tmp_path)
    router = PersonalizedRouter.load(tmp_path / "router")
    prepared = prepare_from_config(cfg)
    rg = build_graph_from(prepared, cfg.graph)
    test_pairs = rg.pairs.iloc[rg.pairs_of("test").numpy()]
    emb = prepared.query_embedding_dict()
    scores, tasks = router.score(
        None,
        list(test_pairs["user_id"]),
        list(test_pairs["task"]),
        query_emb=np.stack([emb[q] for q in test_pairs["query_id"]]),
    )
    # The same model weights evaluated on the full graph, as the trainer did.
    from safetensors.torch import load_file

    from proute.models import build_model

    model = build_model(**router.meta["model"])
    model.load_state_dict(load_file(str(tmp_path / "router" / "weights.safetensors")))
    model.eval()
    with torch.no_grad():
        h = model(rg.graph)
        nodes = rg.pair_node[rg.pairs_of("test")]
        full = model.score_all(h, nodes, rg.query_user[nodes]).numpy()
    np.testing.assert_allclose(scores, full, atol=1e-5)
    # The trainer's evaluation (blocks whose outputs are the test nodes) is the same pass.
    from proute.training.trainer import Trainer

    np.testing.assert_allclose(Trainer().scores(model, rg, "test"), full, atol=1e-5)
    # Reloading twice gives bit-identical scores.
    again, _ = PersonalizedRouter.load(tmp_path / "router").score(
        None,
        list(test_pairs["user_id"]),
        list(test_pairs["task"]),
        query_emb=np.stack([emb[q] for q in test_pairs["query_id"]]),
    )
    np.testing.assert_array_equal(scores, again)


class _Killed(Exception):
    pass


@pytest.mark.parametrize("trainer", ["fullgraph", "minibatch"])
def test_a_killed_run_resumes_to_the_same_metrics(train_cfg, tmp_path, trainer, monkeypatch):
    """A run killed after epoch 2 and restarted with resume=true ends exactly as a run that
    was never interrupted (every epoch's draws are seeded from (seed, epoch) and the
    checkpoint holds the model, optimizer and early-stopping state)."""
    import proute.training.trainer as trainer_mod

    extra = [
        "train_epoch=5",
        "trainer.patience=5",
        f"trainer={trainer}",
        "logger=none",
        "trainer.deterministic=true",
    ]
    whole = run(train_cfg(*extra, f"hydra.run.dir={tmp_path / 'whole'}"), tmp_path / "whole")
    fit = trainer_mod.Trainer.fit

    def killed_fit(self, *args, on_epoch=None, **kwargs):
        def kill(epoch, record):
            on_epoch(epoch, record)
            if epoch == 2:
                raise _Killed()

        return fit(self, *args, on_epoch=kill, **kwargs)

    monkeypatch.setattr(trainer_mod.Trainer, "fit", killed_fit)
    with pytest.raises(_Killed):
        run(train_cfg(*extra), tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    state = json.loads((tmp_path / "resumed" / "checkpoint" / "trainer.json").read_text())
    assert state["epoch"] == 2
    monkeypatch.setattr(trainer_mod.Trainer, "fit", fit)
    resumed = run(train_cfg(*extra, "resume=true"), tmp_path / "resumed")
    keys = [k for k in whole if k.startswith(("val/", "test/"))] + ["best_epoch", "epochs"]
    assert {k: resumed[k] for k in keys} == {k: whole[k] for k in keys}
    hist_w = pd.read_csv(tmp_path / "whole" / "history.csv")
    hist_r = pd.read_csv(tmp_path / "resumed" / "history.csv")
    assert hist_r["train/loss"].tolist() == hist_w["train/loss"].tolist()


def test_corrupt_router_files_give_clear_errors(train_cfg, tmp_path):
    run(train_cfg("train_epoch=1"), tmp_path)
    d = tmp_path / "router"
    (d / "weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(RouterFormatError, match="weights.safetensors"):
        PersonalizedRouter.load(d)
    (d / "router.json").write_text("{ broken")
    with pytest.raises(RouterFormatError, match="router.json.*not valid JSON"):
        PersonalizedRouter.load(d)
    (d / "context.safetensors").unlink()
    with pytest.raises(RouterFormatError, match="missing context.safetensors"):
        PersonalizedRouter.load(d)


def test_unknown_user_is_a_clear_error(train_cfg, tmp_path):
    run(train_cfg("train_epoch=1"), tmp_path)
    router = PersonalizedRouter.load(tmp_path / "router")
    with pytest.raises(KeyError, match="unknown user_id 'zed'"):
        router.route_single({"query": "hello", "user_id": "zed"})


def test_declared_sizes_must_match_the_data(train_cfg, tmp_path):
    with pytest.raises(ValueError, match="user_num=3.*data has 9"):
        run(train_cfg("user_num=3"), tmp_path)


def test_cuda_without_cuda_is_a_clear_error(train_cfg, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        run(train_cfg("device=cuda"), tmp_path)


def test_failed_run_still_finishes_the_wandb_run(train_cfg, tmp_path, monkeypatch):
    import proute.training.trainer as training

    def boom(*a, **k):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(training.Trainer, "fit", boom)
    with pytest.raises(RuntimeError, match="injected failure"):
        run(train_cfg("logger=wandb"), tmp_path)
    import wandb

    assert wandb.run is None


@pytest.mark.slow
@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_preset_trains_one_epoch(train_cfg, tmp_path, experiment):
    small = {
        "sparse_users": ["users.queries_per_user=5"],
        "scale": ["users.queries_per_user=5", "users.num_users=4"],
    }.get(experiment, [])
    out = run(train_cfg(f"experiment={experiment}", "train_epoch=1", *small), tmp_path)
    assert np.isfinite(out["test/reward"])
    if experiment == "new_users":
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        assert metrics["test"]["new_users"]["n"] > 0


def test_a_finished_run_is_never_overwritten(train_cfg, tmp_path):
    run(train_cfg("train_epoch=1"), tmp_path)
    before = (tmp_path / "metrics.json").read_text()
    with pytest.raises(FileExistsError, match="already holds a finished run"):
        run(train_cfg("train_epoch=1", "random_state=3"), tmp_path)
    assert (tmp_path / "metrics.json").read_text() == before
    run(train_cfg("train_epoch=1", "random_state=3", "overwrite=true"), tmp_path)


def test_cuda_with_a_cpu_only_dgl_names_the_fix(monkeypatch):
    """With CUDA visible to torch but DGL built without CUDA (the PyPI wheel), the error
    says so and how to install a CUDA build; device=auto falls back to the CPU."""
    from proute.training.trainer import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    import dgl

    def cpu_only(self, device, **kwargs):
        raise dgl.DGLError("Device API cuda is not enabled. Please install the cuda version of dgl.")

    monkeypatch.setattr(dgl.DGLGraph, "to", cpu_only)
    with pytest.raises(RuntimeError, match="no CUDA support.*CUDA build of DGL"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
