"""Task inference for requests without a task label (the live protocol)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from proute.router import PersonalizedRouter
from proute.task_inference import TaskClassifier


def _clusters(n_per: int, seed: int, spread: float = 0.3):
    """Three tasks whose embeddings are elongated clusters: centroids confuse them where a
    linear classifier does not."""
    rng = np.random.default_rng(seed)
    centers = np.eye(3, 8) * 2.0
    x, y = [], []
    for k in range(3):
        pts = centers[k] + spread * rng.normal(size=(n_per, 8))
        pts[:, 3 + k] += rng.normal(scale=3.0, size=n_per)  # a long axis per task
        x.append(pts)
        y += [k] * n_per
    return np.concatenate(x).astype(np.float32), np.array(y)


def test_classifier_learns_tasks_and_picks_l2_on_validation():
    xt, yt = _clusters(60, 0)
    xv, yv = _clusters(30, 1)
    xs, ys = _clusters(30, 2)
    clf, info = TaskClassifier.fit(xt, yt, 3, xv, yv)
    assert info["l2"] in TaskClassifier.GRID and info["val_accuracy"] >= 0.9
    assert float((clf.predict(torch.from_numpy(xs)) == torch.from_numpy(ys)).float().mean()) >= 0.9
    proba = clf.proba(torch.from_numpy(xs))
    assert torch.allclose(proba.sum(1), torch.ones(len(xs)))
    again = TaskClassifier.from_tensors(dict(clf.tensors()))
    assert torch.equal(again.proba(torch.from_numpy(xs)), proba)
    # the same data gives the same classifier (seeded, full-batch)
    clf2, _ = TaskClassifier.fit(xt, yt, 3, xv, yv)
    assert torch.equal(clf2.weight, clf.weight)


def test_classifier_without_validation_uses_the_default_penalty():
    xt, yt = _clusters(20, 0)
    _, info = TaskClassifier.fit(xt, yt, 3)
    assert info["l2"] == TaskClassifier.GRID[1] and info["val_accuracy"] is None


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    from conftest import train_tiny_router

    return train_tiny_router(tmp_path_factory.mktemp("task_inference"), cache_dir).parent


def test_a_run_reports_both_protocols(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    live = metrics["live"]
    assert live["mode"] in ("hard", "soft")
    for split in ("val", "test"):
        assert 0.0 <= live[split]["task_accuracy"] <= 1.0
        assert np.isfinite(live[split]["overall"]["reward"])
    router = PersonalizedRouter.load(trained / "router")
    info = router.meta["task_inference"]
    assert router.task_mode == live["mode"] == info["mode"]
    assert set(info["val_reward_by_mode"]) == {"hard", "soft"}
    assert router.task_classifier is not None


def test_given_tasks_override_inference_and_soft_equals_hard_when_certain(trained):
    router = PersonalizedRouter.load(trained / "router")
    q = np.random.default_rng(0).normal(size=(4, router.meta["query_dim"])).astype(np.float32)
    users = [router.users[0]] * 4
    tasks = [router.tasks[0]] * 4
    hard, t1 = router.score(None, users, tasks, query_emb=q, task_mode="hard")
    soft, t2 = router.score(None, users, tasks, query_emb=q, task_mode="soft")
    assert np.array_equal(hard, soft) and t1 == t2 == tasks  # every task given: nothing inferred
    # a classifier certain of one task: soft scoring is hard scoring
    certain = PersonalizedRouter.load(trained / "router")
    w = torch.zeros_like(certain.task_classifier.weight)
    b = torch.full((len(certain.tasks),), -50.0)
    b[1] = 50.0
    certain.task_classifier = TaskClassifier(w, b)
    hard, _ = certain.score(None, users, None, query_emb=q, task_mode="hard")
    soft, inferred = certain.score(None, users, None, query_emb=q, task_mode="soft")
    assert inferred == [certain.tasks[1]] * 4
    np.testing.assert_allclose(soft, hard, rtol=1e-5, atol=1e-6)
    # an undecided one averages the per-task scores
    certain.task_classifier = TaskClassifier(w, torch.zeros(len(certain.tasks)))
    soft, _ = certain.score(None, users, None, query_emb=q, task_mode="soft")
    per_task = [certain.score(None, users, [t] * 4, query_emb=q)[0] for t in certain.tasks]
    np.testing.assert_allclose(soft, np.mean(per_task, axis=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="task_mode"):
        certain.score(None, users, None, query_emb=q, task_mode="guess")
