"""A query's task when the request does not say it (the *live* protocol).

Evaluation in the paper's setting gives every test query its gold task label; live
traffic has none, so the exported router infers it from the query embedding. The first
router took the nearest training-task centroid (79% of the bundled test queries right);
:class:`TaskClassifier` is a softmax regression over L2-normalised embeddings fitted on
the training queries, its L2 strength chosen on the validation queries (86%).

The router can use the classifier two ways (``task_mode``): ``hard`` scores the query
under its most probable task; ``soft`` averages the router's scores under every task,
weighted by the task's probability, so an ambiguous query is not routed as if its guess
were certain. Which one a router uses by default is chosen on validation reward at export
(:func:`proute.train`), and both protocols are reported for the test split.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

TASK_MODES = ("hard", "soft")


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=1)


class TaskClassifier:
    """``p(task | query embedding)``: softmax regression, ``weight [T, D]``, ``bias [T]``."""

    #: L2 penalties tried, on the mean cross-entropy (chosen by validation accuracy).
    GRID = (1e-2, 1e-3, 1e-4, 1e-5)

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise ValueError(f"task classifier: weight {tuple(weight.shape)} and bias {tuple(bias.shape)}")
        self.weight, self.bias = weight.float(), bias.float()

    @property
    def num_tasks(self) -> int:
        return self.weight.shape[0]

    def to(self, device) -> "TaskClassifier":
        return TaskClassifier(self.weight.to(device), self.bias.to(device))

    def proba(self, query_emb: torch.Tensor) -> torch.Tensor:
        """``[n, T]`` task probabilities of raw query embeddings ``[n, D]``."""
        return torch.softmax(_normalise(query_emb) @ self.weight.T + self.bias, dim=1)

    def predict(self, query_emb: torch.Tensor) -> torch.Tensor:
        return self.proba(query_emb).argmax(dim=1)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "task_classifier.weight": self.weight.contiguous(),
            "task_classifier.bias": self.bias.contiguous(),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "TaskClassifier | None":
        """The classifier saved by :meth:`tensors` (popped from ``tensors``), or None."""
        if "task_classifier.weight" not in tensors:
            return None
        return cls(tensors.pop("task_classifier.weight"), tensors.pop("task_classifier.bias"))

    @classmethod
    def _fit_one(cls, x: torch.Tensor, y: torch.Tensor, num_tasks: int, l2: float) -> "TaskClassifier":
        w = torch.zeros(num_tasks, x.shape[1], requires_grad=True)
        b = torch.zeros(num_tasks, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ w.T + b, y) + l2 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return cls(w.detach(), b.detach())

    @classmethod
    def fit(
        cls,
        train_emb: np.ndarray,
        train_tasks: Sequence[int],
        num_tasks: int,
        val_emb: np.ndarray | None = None,
        val_tasks: Sequence[int] | None = None,
    ) -> tuple["TaskClassifier", dict]:
        """Fit on the training queries; choose the L2 penalty on validation accuracy (the
        middle of :attr:`GRID` without validation queries). Returns the classifier and
        ``{"l2", "val_accuracy", "train_accuracy"}``."""
        x = _normalise(torch.as_tensor(np.asarray(train_emb, dtype=np.float32)))
        y = torch.as_tensor(np.asarray(train_tasks, dtype=np.int64))
        if len(x) == 0:
            raise ValueError("task classifier: no training queries")
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            torch.manual_seed(0)
            if val_emb is None or len(val_emb) == 0:
                best, l2, val_acc = cls._fit_one(x, y, num_tasks, cls.GRID[1]), cls.GRID[1], None
            else:
                xv = torch.as_tensor(np.asarray(val_emb, dtype=np.float32))
                yv = torch.as_tensor(np.asarray(val_tasks, dtype=np.int64))
                scored = []
                for penalty in cls.GRID:
                    clf = cls._fit_one(x, y, num_tasks, penalty)
                    scored.append((float((clf.predict(xv) == yv).float().mean()), -penalty, clf))
                val_acc, neg_l2, best = max(scored, key=lambda s: (s[0], s[1]))
                l2 = -neg_l2
        train_acc = float((best.predict(x) == y).float().mean())
        return best, {"l2": l2, "val_accuracy": val_acc, "train_accuracy": train_acc}
