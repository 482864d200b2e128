"""``proute evaluate`` (issue 16, item 4): its live numbers infer tasks as the server does
for a text request (the router's text classifier), and a split that holds queries the
router trained on is refused unless ``--allow-overlap`` (then marked as not held out)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import FIXTURES, train_tiny_router
from proute.cli import evaluate_router, main


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory, cache_dir):
    return train_tiny_router(tmp_path_factory.mktemp("run"), cache_dir)


@pytest.fixture
def data(cache_dir) -> list[str]:
    return [f"paths.data_dir={FIXTURES}", f"paths.cache_dir={cache_dir}", "text_encoder.show_progress=false"]


def _pairs(overrides: list[str], splits: list[str]):
    """The (user, query) pairs of ``splits`` in the data ``overrides`` describe."""
    from proute.config import compose
    from proute.data.pipeline import prepare_from_config

    table = prepare_from_config(compose("train", overrides), encode=False).table
    return table[table["split"].isin(splits)].drop_duplicates(["user_id", "query_id"])


class _OneTask:
    """A stand-in text classifier that puts every query in task ``k``."""

    def __init__(self, k: int, num_tasks: int):
        self.k, self.num_tasks = k, num_tasks

    def to(self, device):
        return self

    def proba(self, query_emb, texts):
        assert texts is not None and len(texts) == len(query_emb)  # it got the texts
        out = torch.zeros(len(query_emb), self.num_tasks)
        out[:, self.k] = 1.0
        return out


def test_live_numbers_infer_tasks_with_the_text_classifier_as_the_server(router_dir, data):
    from proute.config import compose
    from proute.router import PersonalizedRouter

    router = PersonalizedRouter.load(router_dir)
    assert router.text_task_classifier is not None  # the exported router has one
    test = _pairs(data, ["test"])
    # a task of no test pair (else the rarest): the stub's accuracy is then 0, far from the real one
    absent = [t for t in router.tasks if t not in set(test["task"])]
    task = absent[0] if absent else test["task"].value_counts().index[-1]
    router.text_task_classifier = _OneTask(list(router.tasks).index(task), len(router.tasks))
    result = evaluate_router(router, compose("train", data), "test", log=lambda m: None)
    assert result["task_accuracy"] == pytest.approx((test["task"] == task).mean())
    assert result["task_inference"] == "text"
    # the server's path for text requests picks the same tasks
    requests = [{"query": q, "user_id": u} for q, u in zip(test["query"], test["user_id"], strict=True)]
    routed = router.route_batch(requests)
    assert {r["task"] for r in routed} == {task}


def _evaluate(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main(["evaluate", *map(str, argv)])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        print(exc.code, file=__import__("sys").stderr)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_evaluate_refuses_a_split_overlapping_training_unless_allowed(router_dir, data, capsys, tmp_path):
    seen = set(_pairs(data, ["train", "val"])["query"])  # the router's training: the default seed
    redrawn = _pairs([*data, "random_state=7"], ["test"])
    expected = int(redrawn["query"].isin(seen).sum())
    assert expected > 0  # the fixture: another seed redraws the split
    code, out, err = _evaluate(capsys, router_dir, *data, "random_state=7")
    assert code == 1 and out == ""
    assert f"{expected} of the {len(redrawn)} (user, query) pairs of the 'test' split" in err, err
    assert "not held out" in err and "--allow-overlap" in err and "Traceback" not in err

    metrics = tmp_path / "metrics.json"
    allowed = ["random_state=7", "--allow-overlap", "--output", metrics]
    code, out, err = _evaluate(capsys, router_dir, *data, *allowed)
    assert code == 0, err
    assert "NOT HELD OUT" in out and "WARNING: NOT HELD OUT" in err
    result = json.loads(metrics.read_text())
    assert result["held_out"] is False and result["overlap"]["pairs"] == expected

    # the router's own split (--router: the option form, before the overrides)
    code, out, err = _evaluate(capsys, "--router", router_dir, *data, "--output", metrics)
    assert code == 0, err
    result = json.loads(metrics.read_text())
    assert result["held_out"] is True and result["overlap"]["pairs"] == 0 and "NOT HELD OUT" not in out
    assert "by the text classifier" in out
