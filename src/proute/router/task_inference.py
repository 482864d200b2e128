"""A query's task when the request does not say it (the *live* protocol).

Evaluation in the paper's setting gives every test query its gold task label; live
traffic has none, so the exported router infers it from the query embedding. The first
router took the nearest training-task centroid (79% of the bundled test queries right);
:class:`TaskClassifier` is a softmax regression over L2-normalised embeddings fitted on
the training queries, its L2 strength chosen on the validation queries (86%).

With the query's text (every request routed by text), :class:`TextTaskClassifier` adds
hashed character and word n-gram counts of the text to the embedding (stateless hashing:
only a weight matrix is stored); it recovers more of the tasks the embedding confuses
(multiple-choice science sets, open-domain QA sets: 92% vs 86% on the bundled data). A
query given only as an embedding falls back to :class:`TaskClassifier`.

The router can use the classifier two ways (``task_mode``): ``hard`` scores the query
under its most probable task; ``soft`` averages the router's scores under every task,
weighted by the task's probability, so an ambiguous query is not routed as if its guess
were certain. Which one a router uses by default is chosen on validation reward at export
(:func:`proute.train`), and both protocols are reported for the test split.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

HARD, SOFT = "hard", "soft"
TASK_MODES = (HARD, SOFT)


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


# ---------------------------------------------------------------------- text features
#: How a query text becomes features (recorded in router.json ``task_inference.text``, so a
#: router keeps the spec it was fitted with): case-sensitive character n-grams within words
#: (each whitespace-separated word padded with one space, in the spirit of scikit-learn's
#: ``char_wb``; a word has the n-grams that fit inside its padded form) and whitespace-token
#: n-grams, hashed by 64-bit polynomials over code points (vectorised over a whole batch);
#: each block is counted into ``dim`` buckets and L2-normalised.
TEXT_FEATURES: dict[str, Any] = {
    "hash": "poly64",
    "dim": 16384,
    "char_wb": [2, 4],
    "word": [1, 2],
    "lowercase": False,
}

_MULT = np.uint64(0x100000001B3)  # the FNV-1 64-bit prime: the polynomial's base
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads the high bits into buckets
_WORD_CHARS = 32  # a word's hash reads at most its first 32 characters


def _check_spec(spec: Any) -> dict:
    ok = isinstance(spec, dict) and spec.get("hash") == TEXT_FEATURES["hash"]
    try:
        ok = (
            ok
            and int(spec["dim"]) >= 1
            and all(1 <= int(spec[k][0]) <= int(spec[k][1]) for k in ("char_wb", "word"))
        )
    except (KeyError, TypeError, ValueError, IndexError):
        ok = False
    if not ok:
        raise ValueError(f"text features: unsupported spec {spec!r}; expected the form of {TEXT_FEATURES}")
    return spec


def _char_grams(words: list[list[str]], spec: dict, dim: int):
    """``(row, bucket)`` of every character n-gram inside the padded words of each text and
    ``(row, bucket)`` of every word n-gram, for all texts at once without per-gram Python:
    one code-point array (words separated by 0), a polynomial hash of every window without
    a 0 in it; words hashed by the same polynomial over their own characters (capped at
    :data:`_WORD_CHARS`), a word n-gram by chaining its words' hashes."""
    stream = "\0".join("\0".join(f" {w} " for w in ws) for ws in words)
    codes = np.frombuffer(stream.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    # a text with no words still takes one separator, so rows stay aligned with texts
    nwords = np.array([len(ws) for ws in words], np.int64)
    wlen = np.fromiter((len(w) for ws in words for w in ws), np.int64, int(nwords.sum()))
    lengths = np.bincount(np.repeat(np.arange(len(words)), nwords), weights=wlen + 3, minlength=len(words))
    lengths = np.where(nwords > 0, lengths, 1).astype(np.int64)
    row = np.repeat(np.arange(len(words)), lengths)[: len(codes)]
    # a window is inside one padded word when both ends carry its label (each 0 its own)
    label = np.where(codes == 0, -1 - np.arange(len(codes)), np.cumsum(codes == 0))
    with np.errstate(over="ignore"):
        char = _ngrams(codes, label, row, spec["char_wb"], _MULT, dim)
        # words: the first character of word k sits after its text's earlier words
        wrow = np.repeat(np.arange(len(words)), nwords)
        empty_before = np.cumsum(nwords == 0) - (nwords == 0)  # each empty text is one 0
        start = np.cumsum(np.concatenate([[0], wlen + 3]))[:-1] + 1 + empty_before[wrow]
        hw = np.zeros(len(wlen), np.uint64)
        for j in range(min(int(wlen.max(initial=0)), _WORD_CHARS)):
            more = wlen > j
            hw = np.where(more, hw * _MULT + codes[np.minimum(start + j, len(codes) - 1)], hw)
        word = _ngrams(hw, wrow, wrow, spec["word"], _MIX, dim)  # n words of one text
    return char, word


def _ngrams(values, label, row, sizes, mult, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(row, bucket)`` of the polynomial hash (base ``mult``) of every window of ``n``
    consecutive ``values`` (``sizes[0] <= n <= sizes[1]``) whose first and last positions
    have the same non-negative ``label``."""
    rows, hashes = [np.zeros(0, np.int64)], [np.zeros(0, np.uint64)]
    for n in range(int(sizes[0]), int(sizes[1]) + 1):
        m = len(values) - n + 1
        if m <= 0:
            continue
        h = np.zeros(m, np.uint64)
        for j in range(n):
            h = h * mult + values[j : j + m]
        keep = (label[:m] == label[n - 1 : n - 1 + m]) & (label[:m] >= 0)
        rows.append(row[:m][keep])
        hashes.append(h[keep] + np.uint64(n))
    buckets = ((np.concatenate(hashes) * _MIX) >> np.uint64(32)) % np.uint64(dim)
    return np.concatenate(rows), buckets.astype(np.int64)


def text_features(
    texts: Sequence[str], spec: dict | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hashed n-gram features of ``texts``: ``(row, column, value)`` of a sparse
    ``[len(texts), 2 * dim]`` matrix (the character block, then the word block), sorted by
    row and column; each block of a row has unit L2 norm (an empty block has no entries)."""
    spec = _check_spec(TEXT_FEATURES if spec is None else spec)
    dim = int(spec["dim"])
    words = [(str(t).lower() if spec.get("lowercase") else str(t)).split() for t in texts]
    (cr, cb), (wr, wb) = _char_grams(words, spec, dim)
    key = np.concatenate([cr * (2 * dim) + cb, wr * (2 * dim) + dim + wb])
    key, counts = np.unique(key, return_counts=True)
    rows, cols = key // (2 * dim), key % (2 * dim)
    vals = counts.astype(np.float32)
    block = rows * 2 + (cols >= dim)  # (row, block) -> its sum of squares
    norm = np.sqrt(np.bincount(block, weights=vals * vals, minlength=2 * len(texts)))
    vals = (vals / norm[block]).astype(np.float32)
    return tuple(torch.from_numpy(a) for a in (rows, cols, vals))  # type: ignore[return-value]


def _csr(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape: tuple[int, int]):
    """The scipy CSR matrix of :func:`text_features`' output (its rows come sorted, so the
    row pointers are a cumulative count; no COO conversion)."""
    import scipy.sparse

    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows.numpy(), minlength=shape[0]))])
    return scipy.sparse.csr_matrix((vals.numpy(), cols.numpy(), indptr), shape=shape)


class TextTaskClassifier:
    """``p(task | query embedding, query text)``: softmax regression over the L2-normalised
    embedding (``weight [T, D]``) and the hashed n-gram features of the text
    (:func:`text_features`, ``text_weight [T, 2 * dim]``), ``bias [T]``."""

    #: L2 penalties tried, on the mean cross-entropy (chosen by validation accuracy).
    GRID = (1e-4, 3e-5, 1e-5)
    PREFIX = "task_classifier.text."

    def __init__(self, weight: torch.Tensor, text_weight: torch.Tensor, bias: torch.Tensor, spec: dict):
        self.spec = _check_spec(spec)
        t = weight.shape[0] if weight.ndim == 2 else -1
        if bias.shape != (t,) or text_weight.shape != (t, 2 * int(spec["dim"])):
            raise ValueError(
                f"text task classifier: weight {tuple(weight.shape)}, text_weight "
                f"{tuple(text_weight.shape)} and bias {tuple(bias.shape)} do not fit features of "
                f"dim {spec['dim']}"
            )
        self.weight, self.text_weight, self.bias = weight.float(), text_weight.float(), bias.float()
        self._columns = self.text_weight.T.contiguous()  # [F, T]: a text gathers its rows

    @property
    def num_tasks(self) -> int:
        return self.weight.shape[0]

    def to(self, device) -> "TextTaskClassifier":
        return TextTaskClassifier(
            self.weight.to(device), self.text_weight.to(device), self.bias.to(device), self.spec
        )

    def logits(self, query_emb: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        if len(texts) != len(query_emb):
            raise ValueError(f"{len(query_emb)} query embeddings and {len(texts)} texts")
        rows, cols, vals = text_features(texts, self.spec)
        out = _normalise(query_emb) @ self.weight.T + self.bias
        if self.weight.device.type == "cpu":  # scipy's sparse x dense: ~5x torch's gather here
            x = _csr(rows, cols, vals, (len(texts), self.text_weight.shape[1]))
            return out + torch.from_numpy(np.asarray(x @ self._columns.numpy(), dtype=np.float32))
        rows, cols, vals = (t.to(self.weight.device) for t in (rows, cols, vals))
        return out.index_add_(0, rows, self._columns[cols] * vals[:, None])

    def proba(self, query_emb: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """``[n, T]`` task probabilities of raw query embeddings ``[n, D]`` and their texts."""
        return torch.softmax(self.logits(query_emb, texts), dim=1)

    def predict(self, query_emb: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        return self.logits(query_emb, texts).argmax(dim=1)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            self.PREFIX + "weight": self.weight.contiguous(),
            self.PREFIX + "text_weight": self.text_weight.contiguous(),
            self.PREFIX + "bias": self.bias.contiguous(),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], spec: dict | None) -> "TextTaskClassifier | None":
        """The classifier saved by :meth:`tensors` (popped from ``tensors``) with its feature
        spec, or None when there is none. A missing tensor or spec is a ``KeyError``."""
        names = [k for k in tensors if k.startswith(cls.PREFIX)]
        if not names and spec is None:
            return None
        if spec is None:
            raise KeyError("task_inference.text.features (the text classifier's feature spec)")
        parts = {}
        for name in ("weight", "text_weight", "bias"):
            if cls.PREFIX + name not in tensors:
                raise KeyError(cls.PREFIX + name)
            parts[name] = tensors.pop(cls.PREFIX + name)
        return cls(parts["weight"], parts["text_weight"], parts["bias"], spec)

    @classmethod
    def _fit_one(cls, x, xt, y, num_tasks: int, l2: float, spec: dict, start=None) -> "TextTaskClassifier":
        """One fit; ``xt`` a scipy CSR matrix (its products are several times faster than
        torch's sparse ones on CPU), ``start`` the previous penalty's solution."""
        xt_t = xt.T.tocsr()

        class _TextMM(torch.autograd.Function):
            @staticmethod
            def forward(ctx, wt):
                return torch.from_numpy(np.asarray(xt @ wt.detach().numpy().T, dtype=np.float32))

            @staticmethod
            def backward(ctx, grad):
                return torch.from_numpy(np.asarray(xt_t @ grad.numpy(), dtype=np.float32).T.copy())

        if start is None:
            w, wt, b = (
                torch.zeros(num_tasks, x.shape[1]),
                torch.zeros(num_tasks, xt.shape[1]),
                torch.zeros(num_tasks),
            )
        else:
            w, wt, b = start.weight.clone(), start.text_weight.clone(), start.bias.clone()
        w, wt, b = (t.requires_grad_(True) for t in (w, wt, b))
        opt = torch.optim.LBFGS([w, wt, b], lr=1.0, max_iter=150, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            logits = x @ w.T + _TextMM.apply(wt) + b
            loss = torch.nn.functional.cross_entropy(logits, y) + l2 * ((w * w).sum() + (wt * wt).sum())
            loss.backward()
            return loss

        opt.step(closure)
        return cls(w.detach(), wt.detach(), b.detach(), spec)

    @classmethod
    def fit(
        cls,
        train_emb: np.ndarray,
        train_texts: Sequence[str],
        train_tasks: Sequence[int],
        num_tasks: int,
        val_emb: np.ndarray | None = None,
        val_texts: Sequence[str] | None = None,
        val_tasks: Sequence[int] | None = None,
        spec: dict | None = None,
    ) -> tuple["TextTaskClassifier", dict]:
        """Fit on the training queries; choose the L2 penalty on validation accuracy (the
        middle of :attr:`GRID` without validation queries). Returns the classifier and
        ``{"features", "l2", "val_accuracy", "train_accuracy"}``."""
        spec = dict(_check_spec(TEXT_FEATURES if spec is None else spec))
        x = _normalise(torch.as_tensor(np.asarray(train_emb, dtype=np.float32)))
        y = torch.as_tensor(np.asarray(train_tasks, dtype=np.int64))
        if len(x) == 0 or len(train_texts) != len(x):
            raise ValueError(
                f"text task classifier: {len(x)} training embeddings and {len(train_texts)} texts"
            )
        rows, cols, vals = text_features(train_texts, spec)
        xt = _csr(rows, cols, vals, (len(x), 2 * int(spec["dim"])))
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            torch.manual_seed(0)
            if val_emb is None or len(val_emb) == 0:
                l2, val_acc = cls.GRID[len(cls.GRID) // 2], None
                best = cls._fit_one(x, xt, y, num_tasks, l2, spec)
            else:
                xv = torch.as_tensor(np.asarray(val_emb, dtype=np.float32))
                yv = torch.as_tensor(np.asarray(val_tasks, dtype=np.int64))
                scored, clf = [], None
                for penalty in cls.GRID:  # strongest first, each fit starting from the last
                    clf = cls._fit_one(x, xt, y, num_tasks, penalty, spec, start=clf)
                    accuracy = float((clf.predict(xv, val_texts or []) == yv).float().mean())
                    scored.append((accuracy, -penalty, clf))
                val_acc, neg_l2, best = max(scored, key=lambda s: (s[0], s[1]))
                l2 = -neg_l2
        train_acc = float((best.predict(x, train_texts) == y).float().mean())
        return best, {"features": spec, "l2": l2, "val_accuracy": val_acc, "train_accuracy": train_acc}
