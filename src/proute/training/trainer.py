"""The training loop: edge masking, early stopping on validation, one test evaluation.

:class:`MiniBatchTrainer` (``trainer=minibatch``, the default) trains on message-flow blocks
from DGL's neighbour sampler, so a step's cost depends on the batch, not on the graph
(:mod:`proute.graph.sampling`). :class:`Trainer` (``trainer=fullgraph``, the paper's scheme,
and what every masking strategy other than ``masking=query`` selects) trains on the full
graph: each gradient step is one masked sample of the training graph (the masking strategy
decides which query→llm edges are hidden and scored), one forward and one backward pass
(``batch_size`` > 1 averages the gradient of several samples, one pass each). An epoch
is ``steps_per_epoch`` steps followed by one exact validation pass (full neighbourhoods).
Training stops after ``patience`` epochs without a better validation ``monitor`` value, the
best validation weights are restored, and the test split is evaluated exactly once — by the
caller, after :meth:`Trainer.fit` (never model selection on test: docs/DESIGN.md §3 and
§4, flaw 2).

Every random draw of epoch ``e`` (masks, dropout, neighbour samples) is seeded from
``(seed, e)``, and with ``checkpoint_dir`` the trainer writes its whole state after every
epoch (atomically, safetensors + JSON): a killed run restarted with ``resume=True`` ends
with the same metrics as an uninterrupted one.

The losses are :mod:`proute.training.losses` (``trainer.loss``); the evaluation is
:func:`proute.evaluation.scoring.evaluate` of the model as a
:class:`~proute.evaluation.scorers.GraphScorer`, the one path every router is scored by.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from typing import Any, Callable

import numpy as np
import torch

from proute._deps import import_dgl
from proute.evaluation.scorers import GraphScorer
from proute.evaluation.scoring import evaluate
from proute.graph.masking import QueryMasking
from proute.graph.sampling import MaskedNeighborSampler, full_neighbor_batch
from proute.training.checkpoint import Checkpoint
from proute.training.device import epoch_seed, resolve_device, seed_everything
from proute.training.inputs import query_text_inputs
from proute.training.losses import LISTWISE_TEMPERATURE, LOSSES

# resolve_device, seed_everything, LOSSES and query_text_inputs are imported from here too.
__all__ = [
    "LOSSES",
    "MONITORS",
    "MiniBatchTrainer",
    "Trainer",
    "query_text_inputs",
    "resolve_device",
    "seed_everything",
]

log = logging.getLogger(__name__)

MONITORS = ("reward", "accuracy", "reward_ratio", "macro_f1", "performance")


# ---------------------------------------------------------------------- trainers
class Trainer:
    """Fits a :class:`~proute.models.PersonalizedRouterModel` on a RoutingGraph, full-graph:
    one masked sample, one forward and one backward per gradient step."""

    def __init__(
        self,
        train_epoch: int = 100,
        batch_size: int = 1,
        steps_per_epoch: int = 2,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        loss: str = "listwise",
        listwise_temperature: float = LISTWISE_TEMPERATURE,
        monitor: str = "reward",
        patience: int = 20,
        grad_clip: float | None = 1.0,
        deterministic: bool = False,
    ):
        if loss not in LOSSES:
            raise ValueError(f"trainer.loss={loss!r}; expected one of {sorted(LOSSES)}")
        if monitor not in MONITORS:
            raise ValueError(
                f"trainer.monitor={monitor!r}; expected one of {MONITORS} "
                "(validation metrics where higher is better)"
            )
        if batch_size < 1 or steps_per_epoch < 1 or train_epoch < 1:
            raise ValueError("train_epoch, batch_size and steps_per_epoch must be >= 1")
        if not learning_rate > 0 or weight_decay < 0 or patience < 1 or listwise_temperature <= 0:
            raise ValueError(
                f"learning_rate must be > 0 (got {learning_rate}), weight_decay >= 0 (got "
                f"{weight_decay}), patience >= 1 (got {patience}), listwise_temperature > 0 "
                f"(got {listwise_temperature})"
            )
        self.train_epoch, self.batch_size = int(train_epoch), int(batch_size)
        self.steps_per_epoch = int(steps_per_epoch)
        self.learning_rate, self.weight_decay = float(learning_rate), float(weight_decay)
        self.loss_name, self.temperature = loss, float(listwise_temperature)
        self.monitor, self.patience = monitor, int(patience)
        self.grad_clip = grad_clip
        self.deterministic = bool(deterministic)
        self.history: list[dict[str, float]] = []
        self.best_epoch = -1
        self.pairs_trained = 0  # hidden (query node, LLM) pairs scored, for throughput

    # -- losses -------------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, rg, q: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        """Loss on the hidden (query node, llm) pairs ``(q, l)``; logits are raw scores."""
        return LOSSES[self.loss_name](logits, rg, q, l, self.temperature)

    # -- evaluation ---------------------------------------------------------------------
    def scores(self, model, rg, split: str) -> np.ndarray:
        """Logits ``[n_pairs, num_llms]`` for the (user, query) pairs of ``split``
        (:class:`~proute.evaluation.scorers.GraphScorer`: exact, full neighbourhoods)."""
        return GraphScorer(model, rg).score_nodes(rg.pair_node[rg.pairs_of(split)])

    def evaluate(self, model, rg, split: str) -> dict[str, Any]:
        """:func:`proute.evaluation.scoring.evaluate` of the model on ``split``."""
        return evaluate(GraphScorer(model, rg), rg.split_block(split))

    # -- one step -------------------------------------------------------------------------
    def prepare(self, model, rg, masking) -> None:
        """Per-run set-up before the first step (the mini-batch trainer builds its sampler)."""
        self.masking, self._num_layers = masking, model.gnn.num_layers
        # Every sparse format now, not on first use: the neighbour order DGL's samplers see
        # (and so float summation order) then does not depend on what ran before, and a
        # resumed run repeats an uninterrupted one exactly.
        rg.graph.create_formats_()

    def next_batch(self, rg, generator: torch.Generator):
        """One masked sample as message-flow blocks with full neighbourhoods: the same
        scores as a full-graph forward of the masked graph, computed only where the loss
        needs them (:func:`proute.graph.sampling.full_neighbor_batch`)."""
        return full_neighbor_batch(rg, self.masking.sample(rg, generator), self._num_layers)

    def train_step(self, model, rg, generator: torch.Generator) -> float:
        """One gradient step's forward and backward passes; returns the mean loss."""
        total = 0.0
        for _ in range(self.batch_size):
            batch = self.next_batch(rg, generator)
            h = model.gnn.forward_blocks(batch.blocks, batch.node_feat, query_text_inputs(rg))
            q, l = batch.target_query, batch.target_llm  # ids in rg; rows of h via *_pos
            # every LLM is an output, in id order: an LLM's row is its id
            logits = model.score_pairs(h, batch.target_pos, l, batch.target_user_pos)
            loss = self.loss(logits, rg, q, l)
            (loss / self.batch_size).backward()
            total += float(loss)
            self.pairs_trained += int(q.shape[0])
        return total / self.batch_size

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        """Called before an epoch's first step, right after ``generator`` (and torch's and
        DGL's generators) were seeded for the epoch."""

    # -- fitting ------------------------------------------------------------------------
    def fit(
        self,
        model,
        rg,
        masking,
        generator: torch.Generator,
        on_epoch: Callable[[int, dict], None] | None = None,
        quiet: bool = False,
        run_dir: str | os.PathLike | None = None,
        resume: bool = False,
        seed: int | None = None,
    ):
        """Train with early stopping; restores the best-validation weights.

        ``seed`` (default: the generator's initial seed) seeds every epoch's draws.
        ``run_dir``: write a checkpoint there after every epoch; ``resume=True`` continues
        from it when it exists.
        """
        if not self.deterministic:
            return self._fit(model, rg, masking, generator, on_epoch, quiet, run_dir, resume, seed)
        # One thread and deterministic kernels: the summation order of every reduction is
        # fixed, so the same seed gives the same numbers run after run. Restored afterwards.
        # DGL's kernels run on an OpenMP pool of their own, which torch's setting does not
        # reach. python -m proute.train also builds the graph on one thread
        # (training.device.single_threaded): two threads there changed the numbers too.
        dgl_utils = import_dgl().utils
        threads, was = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
        dgl_threads = dgl_utils.get_num_threads()
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        dgl_utils.set_num_threads(1)
        try:
            return self._fit(model, rg, masking, generator, on_epoch, quiet, run_dir, resume, seed)
        finally:
            torch.use_deterministic_algorithms(was)
            torch.set_num_threads(threads)
            dgl_utils.set_num_threads(dgl_threads)

    def _fit(self, model, rg, masking, generator, on_epoch, quiet, run_dir, resume, seed):
        from tqdm.auto import tqdm

        seed = int(generator.initial_seed() if seed is None else seed)
        self.prepare(model, rg, masking)
        opt = torch.optim.AdamW(model.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        ckpt = Checkpoint(run_dir) if run_dir is not None else None
        state = {"epoch": -1, "best_value": -np.inf, "waited": 0, "best_epoch": -1, "stopped": False}
        best_state = None
        if resume and ckpt is not None and ckpt.exists():
            best_state, state = ckpt.load(model, opt)
            self.history, self.best_epoch = state.pop("history"), state["best_epoch"]
            log.info("resumed from %s after epoch %d", ckpt.dir, state["epoch"])
        start = self.train_epoch if state["stopped"] else state["epoch"] + 1
        bar = tqdm(range(start, self.train_epoch), desc="epochs", disable=quiet, unit="epoch")
        for epoch in bar:
            record = self._epoch(model, rg, opt, generator, seed, epoch)
            value = record[f"val/{self.monitor}"]
            if value > state["best_value"] + 1e-9:
                best_state = copy.deepcopy(model.state_dict())
                state.update(best_value=value, waited=0, best_epoch=epoch)
                self.best_epoch = epoch
            else:
                state["waited"] += 1
            state.update(epoch=epoch, stopped=state["waited"] >= self.patience)
            if ckpt is not None:
                ckpt.save(model, opt, best_state, {**state, "history": self.history})
            bar.set_postfix(
                loss=f"{record['train/loss']:.4f}",
                best=self.best_epoch,
                **{f"val_{self.monitor}": f"{value:.4f}"},
            )
            if on_epoch is not None:
                on_epoch(epoch, record)
            if state["stopped"]:
                log.info("early stop at epoch %d (best %d)", epoch, self.best_epoch)
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        return self.history

    def _epoch(self, model, rg, opt, generator, seed: int, epoch: int) -> dict:
        """One epoch (its draws seeded from ``(seed, epoch)``) and its validation; the
        epoch's record, also appended to :attr:`history`."""
        generator.manual_seed(epoch_seed(seed, epoch))
        torch.manual_seed(epoch_seed(seed, epoch) + 1)
        import_dgl().seed((epoch_seed(seed, epoch) + 2) % (2**31 - 1))
        self.start_epoch(epoch, generator)
        t0, pairs = time.perf_counter(), self.pairs_trained
        model.train()
        losses = []
        for _ in range(self.steps_per_epoch):
            opt.zero_grad()
            losses.append(self.train_step(model, rg, generator))
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(self.grad_clip))
            opt.step()
        train_time = time.perf_counter() - t0
        val = self.evaluate(model, rg, "val")["overall"]
        record = {
            "epoch": epoch,
            "train/loss": float(np.mean(losses)),
            "train/epoch_seconds": train_time,
            "train/pairs": self.pairs_trained - pairs,
            "val/seconds": time.perf_counter() - t0 - train_time,
            **{f"val/{k}": v for k, v in val.items()},
        }
        self.history.append(record)
        return record


class MiniBatchTrainer(Trainer):
    """Mini-batch training on message-flow blocks from DGL's neighbour sampler
    (:class:`proute.graph.sampling.MaskedNeighborSampler`): each step takes
    ``batch_nodes`` random train query nodes as seeds, hides their outcome edges (so they
    look like val/test queries, as :class:`~proute.graph.masking.QueryMasking` does),
    samples ``fanouts`` in-neighbours per layer and relation, and scores the seeds' hidden
    (query, LLM) pairs. ``steps_per_epoch=None``: one pass over the train query nodes.
    Validation and test stay exact (full neighbourhoods). ``masking`` must hide whole query
    nodes (``masking=query``, the default); its rate is not used: the batch is the mask.

    ``max_users``: every user of a batch's seeds is an output node with ``fanouts`` sampled
    queries, so a batch of random seeds from ``U`` users costs ``O(min(U, batch_nodes))``
    user neighbourhoods and an epoch ``O(queries x U)``: quadratic in the number of users.
    With more users than ``max_users``, each epoch deals the users into random groups of
    ``max_users`` and draws each batch's seeds from one group (every train query node still
    once per epoch; batch order shuffled), so a step's cost no longer grows with ``U``.
    With ``U <= max_users`` (the bundled data) the batches are plain random chunks.
    """

    def __init__(
        self,
        batch_nodes: int = 4096,
        fanouts=(64, 64),
        steps_per_epoch: int | None = None,
        max_users: int | None = 64,
        **kwargs,
    ):
        super().__init__(steps_per_epoch=1, **kwargs)
        if batch_nodes < 1:
            raise ValueError(f"trainer.batch_nodes must be >= 1; got {batch_nodes}")
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ValueError(f"trainer.steps_per_epoch must be >= 1 or null; got {steps_per_epoch}")
        if max_users is not None and max_users < 1:
            raise ValueError(f"trainer.max_users must be >= 1 or null; got {max_users}")
        self.batch_nodes, self.fanouts = int(batch_nodes), fanouts
        self.max_users = None if max_users is None else int(max_users)
        self._steps = steps_per_epoch

    def prepare(self, model, rg, masking) -> None:
        if not isinstance(masking, QueryMasking):
            raise ValueError(
                f"trainer=minibatch hides the outcome edges of whole seed query nodes; "
                f"masking={type(masking).__name__} is for full-graph training (trainer=fullgraph; "
                f"the masking configs other than masking=query select it)"
            )
        super().prepare(model, rg, masking)
        self.sampler = MaskedNeighborSampler(rg, self.fanouts, num_layers=model.gnn.num_layers)
        nodes = self.sampler.train_nodes
        self._node_user = rg.query_user[nodes].cpu() if rg.has_users else None
        grouped = self._node_user is not None and self.max_users is not None and rg.num_users > self.max_users
        self._grouped, self._num_users = grouped, rg.num_users
        self._batches: list[torch.Tensor] = []
        # exact without grouping; with it, each epoch's own deal sets the count (start_epoch)
        self.steps_per_epoch = self._steps or max(1, -(-len(nodes) // self.batch_nodes))

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        """Deal the epoch's batches. Grouped by users of different sizes, their number
        depends on the grouping, so with ``steps_per_epoch=None`` the epoch is exactly
        these batches: every train query node once."""
        self._batches = self._deal(generator)[::-1]
        if self._steps is None:
            self.steps_per_epoch = len(self._batches)

    def _deal(self, generator) -> list[torch.Tensor]:
        """One pass over the train query nodes, as a list of seed batches."""
        nodes, size = self.sampler.train_nodes, self.batch_nodes
        order = torch.randperm(len(nodes), generator=generator)
        if not self._grouped:
            return list(nodes[order].split(size))
        num_users, node_user = self._num_users, self._node_user
        assert node_user is not None  # grouped only with user nodes
        group = torch.empty(num_users, dtype=torch.int64)
        group[torch.randperm(num_users, generator=generator)] = torch.arange(num_users) // self.max_users
        order = order[torch.sort(group[node_user[order]], stable=True).indices]
        counts = torch.bincount(group[node_user[order]]).tolist()
        batches = [b for chunk in nodes[order].split(counts) for b in chunk.split(size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def _next_seeds(self, generator) -> torch.Tensor:
        if not self._batches:  # steps_per_epoch set beyond one pass: deal another
            self._batches = self._deal(generator)[::-1]
        return self._batches.pop()

    def next_batch(self, rg, generator: torch.Generator):
        return self.sampler.sample(self._next_seeds(generator), generator)
