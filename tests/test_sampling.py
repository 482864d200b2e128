"""Tests of proute.graph.sampling and of how the mini-batch trainer deals its seed batches."""

from __future__ import annotations

import pytest
import torch

from proute.graph import build_graph
from proute.graph.masking import QueryMasking
from proute.graph.sampling import MaskedNeighborSampler
from proute.models import build_model
from proute.schema import QUERY_SENDER_RELATIONS, is_outcome
from proute.training.trainer import MiniBatchTrainer
from synthetic import make_synthetic


@pytest.fixture(scope="module")
def rg():
    return build_graph(*make_synthetic(num_users=12, num_queries=30).graph_inputs())


def _ready(rg, **kwargs) -> MiniBatchTrainer:
    trainer = MiniBatchTrainer(fanouts=[-1, -1], **kwargs)
    model = build_model(rg, embedding_dim=8)
    trainer.prepare(model, rg, QueryMasking())
    return trainer


def _epoch(trainer, seed=0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    trainer.start_epoch(0, g)
    return [trainer._next_seeds(g) for _ in range(trainer.steps_per_epoch)]


@pytest.mark.parametrize("max_users", [None, 100, 5, 1])
def test_an_epoch_visits_every_train_node_once(rg, max_users):
    trainer = _ready(rg, batch_nodes=50, max_users=max_users)
    batches = _epoch(trainer)
    seen = torch.cat(batches).sort().values
    assert torch.equal(seen, trainer.sampler.train_nodes.sort().values)
    assert all(len(b) <= 50 for b in batches)
    users = [torch.unique(rg.query_user[b]).numel() for b in batches]
    assert max(users) <= (max_users or rg.num_users)
    if max_users is None or max_users >= rg.num_users:  # plain random chunks: mixed users
        assert max(users) == rg.num_users


def test_an_epoch_is_its_own_batches_when_users_differ_in_size():
    """Users with different numbers of queries make the number of batches depend on how
    the users were grouped: each epoch's steps are exactly that epoch's batches."""
    syn = make_synthetic(num_users=12, num_queries=30)
    table = syn.table
    keep = table["query_id"].str[1:].astype(int) < 6 + 2 * table["user_id"].astype(int)
    uneven = build_graph(table[keep], syn.query_emb, syn.task_emb, syn.llm_emb)
    trainer = _ready(uneven, batch_nodes=7, max_users=5)
    steps = set()
    for seed in range(20):
        batches = _epoch(trainer, seed)
        steps.add(len(batches))
        assert not trainer._batches, "an epoch left batches undealt"
        seen = torch.cat(batches).sort().values
        assert torch.equal(seen, trainer.sampler.train_nodes.sort().values)
        assert max(torch.unique(uneven.query_user[b]).numel() for b in batches) <= 5
    assert len(steps) > 1  # the grouping did change the count


def test_without_grouping_batches_are_chunks_of_one_permutation(rg):
    """With no more users than max_users, batches are what they were before grouping
    existed: consecutive chunks of one random permutation (resumed runs and published
    numbers of the bundled data depend on it)."""
    trainer = _ready(rg, batch_nodes=64, max_users=64)
    nodes = trainer.sampler.train_nodes
    expected = nodes[torch.randperm(len(nodes), generator=torch.Generator().manual_seed(3))].split(64)
    got = _epoch(trainer, seed=3)
    assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_grouped_epochs_differ_and_repeat_with_the_seed(rg):
    trainer = _ready(rg, batch_nodes=40, max_users=3)
    a, b, c = _epoch(trainer, 1), _epoch(trainer, 1), _epoch(trainer, 2)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_blocks_hide_the_seeds_own_edges(rg):
    """A seed is a receiver only, as a val/test query is: none of its outcome edges and
    none of its asked_by/belongs_to edges appear in any block."""
    sampler = MaskedNeighborSampler(rg, [-1, -1], num_layers=2)
    seeds = sampler.train_nodes[:7]
    batch = sampler.sample(seeds, torch.Generator().manual_seed(0))
    seed_set = set(seeds.tolist())
    for block in batch.blocks:
        for cet in block.canonical_etypes:
            eids = block.edges[cet].data["_ID"]
            if is_outcome(cet):
                query_ends = rg.edge_query[eids].tolist()
                assert not seed_set & set(query_ends), cet
            elif cet[1] in QUERY_SENDER_RELATIONS:
                src = rg.graph.edges(etype=cet)[0][eids].tolist()
                assert not seed_set & set(src), cet
    # the hidden pairs are exactly the seeds' train outcome edges
    assert set(batch.target_query.tolist()) == seed_set
