"""Task inference for requests without a task label (the live protocol)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from proute.router import PersonalizedRouter, RouterFormatError
from proute.router.task_inference import TEXT_FEATURES, TaskClassifier, TextTaskClassifier, text_features


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


def _worded(n_per: int, seed: int):
    """Four tasks whose embeddings are pure noise (nothing for an embedding classifier to
    find) and whose texts differ by the style of the question: a task's marker word and
    casing, inside shared filler."""
    rng = np.random.default_rng(seed)
    filler = "the a of which what is in to answer question following choose".split()
    styles = [
        lambda w: "Question: " + " ".join(w) + "?",
        lambda w: " ".join(w).lower(),
        lambda w: "Q: " + " ".join(w).upper() + " (A) (B) (C)",
        lambda w: "def solve(): # " + " ".join(w),
    ]
    texts, y = [], []
    for k, style in enumerate(styles):
        for _ in range(n_per):
            texts.append(style(list(rng.choice(filler, size=8))))
            y.append(k)
    x = rng.normal(size=(len(texts), 16)).astype(np.float32)
    return x, texts, np.array(y)


def test_text_features_are_stateless_normalised_and_case_sensitive():
    rows, cols, vals = text_features(["Which is it?", "which is it?", ""])
    assert rows.max() == 1  # the empty text has no features
    for r in (0, 1):
        v = vals[rows == r]
        assert torch.allclose((v[cols[rows == r] < TEXT_FEATURES["dim"]] ** 2).sum(), torch.tensor(1.0))
        assert torch.allclose((v[cols[rows == r] >= TEXT_FEATURES["dim"]] ** 2).sum(), torch.tensor(1.0))
    assert set(cols[rows == 0].tolist()) != set(cols[rows == 1].tolist())
    again = text_features(["Which is it?"])
    assert torch.equal(again[1], cols[rows == 0]) and torch.equal(again[2], vals[rows == 0])
    with pytest.raises(ValueError, match="spec"):
        text_features(["x"], {"hash": "md5", "dim": 8})


def test_text_features_of_a_batch_are_each_texts_own():
    """Features are computed for a whole batch at once (vectorised); a text's features
    must not depend on its batchmates (empty texts, unicode, one-letter words included)."""
    texts = ["Which is it?", "", "a b", "Ünïcode ☃ wörds 漢字", "   ", "x" * 50 + " y", "Which is it?"]
    rows, cols, vals = text_features(texts)
    for i, text in enumerate(texts):
        _, c, v = text_features([text])
        assert torch.equal(c, cols[rows == i]) and torch.allclose(v, vals[rows == i]), text
    assert torch.equal(cols[rows == 0], cols[rows == 6])
    assert not (rows == 1).any() and not (rows == 4).any()
    # "a b": 2 + 1 char n-grams per word, two words and one bigram
    assert int((rows == 2).sum()) <= 9 and int((cols[rows == 2] >= TEXT_FEATURES["dim"]).sum()) == 3


def test_text_logits_are_the_dense_product():
    """The sparse product behind the text classifier's logits equals the dense one."""
    rng = np.random.default_rng(0)
    texts = ["Which is it?", "", "Solve 2 + 2 step by step", "a b c"]
    dim = TEXT_FEATURES["dim"]
    clf = TextTaskClassifier(
        torch.randn(3, 16),
        torch.from_numpy(rng.normal(size=(3, 2 * dim)).astype(np.float32)),
        torch.randn(3),
        TEXT_FEATURES,
    )
    emb = torch.randn(len(texts), 16)
    rows, cols, vals = text_features(texts)
    dense = torch.zeros(len(texts), 2 * dim).index_put_((rows, cols), vals)
    want = torch.nn.functional.normalize(emb, dim=1) @ clf.weight.T + clf.bias + dense @ clf.text_weight.T
    assert torch.allclose(clf.logits(emb, texts), want, atol=1e-5)


def test_text_classifier_recovers_tasks_the_embedding_cannot():
    xt, tt, yt = _worded(40, 0)
    xv, tv, yv = _worded(20, 1)
    xs, ts, ys = _worded(20, 2)
    emb_only, _ = TaskClassifier.fit(xt, yt, 4, xv, yv)
    emb_acc = float((emb_only.predict(torch.from_numpy(xs)).numpy() == ys).mean())
    clf, info = TextTaskClassifier.fit(xt, tt, yt, 4, xv, tv, yv)
    assert info["l2"] in TextTaskClassifier.GRID and info["features"] == TEXT_FEATURES
    acc = float((clf.predict(torch.from_numpy(xs), ts).numpy() == ys).mean())
    assert emb_acc < 0.5 and acc >= 0.95, (emb_acc, acc)
    proba = clf.proba(torch.from_numpy(xs), ts)
    assert torch.allclose(proba.sum(1), torch.ones(len(xs)))
    again = TextTaskClassifier.from_tensors(dict(clf.tensors()), info["features"])
    assert torch.equal(again.proba(torch.from_numpy(xs), ts), proba)
    with pytest.raises(KeyError, match="features"):
        TextTaskClassifier.from_tensors(dict(clf.tensors()), None)
    assert TextTaskClassifier.from_tensors({}, None) is None
    with pytest.raises(ValueError, match="texts"):
        clf.proba(torch.from_numpy(xs), ts[:-1])


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


def test_router_infers_tasks_from_text_and_falls_back_to_the_embedding(trained, tmp_path):
    router = PersonalizedRouter.load(trained / "router")
    assert router.text_task_classifier is not None
    assert router.meta["task_inference"]["text"]["features"] == TEXT_FEATURES
    texts = ["What is the capital of France?", "Solve 12 * 7 - 3.", "def add(a, b):"]
    q = np.random.default_rng(1).normal(size=(3, router.meta["query_dim"]))
    q = torch.as_tensor(q, dtype=torch.float32)
    with_text = router.task_proba(q, texts)
    assert torch.equal(with_text, router.text_task_classifier.proba(q, texts))
    assert torch.equal(router.task_proba(q), router.task_classifier.proba(q))
    # a save/load round trip gives identical probabilities
    again = PersonalizedRouter.load(router.save(tmp_path / "again"))
    assert torch.equal(again.task_proba(q, texts), with_text)
    metrics = json.loads((trained / "metrics.json").read_text())
    assert set(metrics["live"]["embedding_only"]) == {"val", "test"}


def test_a_tampered_text_classifier_is_refused_and_old_routers_still_load(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    router = PersonalizedRouter.load(trained / "router")
    path = router.save(tmp_path / "r")
    meta = json.loads((path / "router.json").read_text())
    meta["task_inference"]["text"]["features"]["dim"] = 8
    (path / "router.json").write_text(json.dumps(meta))
    with pytest.raises(RouterFormatError, match="task_inference"):
        PersonalizedRouter.load(path)
    # weights without their feature spec (an edit accepted with verify=False): refused too
    del meta["task_inference"]["text"]
    (path / "router.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning), pytest.raises(RouterFormatError, match="text task classifier"):
        PersonalizedRouter.load(path, verify=False)
    # a router from before the text classifier: no tensors, no spec; embedding-only inference
    ctx = load_file(path / "context.safetensors")
    save_file(
        {k: v for k, v in ctx.items() if not k.startswith(TextTaskClassifier.PREFIX)},
        path / "context.safetensors",
    )
    with pytest.warns(UserWarning):
        old = PersonalizedRouter.load(path, verify=False)
    assert old.text_task_classifier is None
    q = torch.randn(2, old.meta["query_dim"])
    assert torch.equal(old.task_proba(q, ["a b", "c d"]), old.task_classifier.proba(q))
    PersonalizedRouter.load(old.save(tmp_path / "resaved"))  # new hashes: verified again
