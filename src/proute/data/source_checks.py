"""Checks a reader makes on a source beyond the table contract (:mod:`proute.data.table`):
column names that would be misread (:func:`check_column_names`) and costs that look like
another unit than dollars per call (:func:`check_cost_units`)."""

from __future__ import annotations

import logging
from typing import Iterable

import numpy as np
import pandas as pd

from proute.data.table import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, RESERVED_COLUMNS, USER_COLUMN, DataError

log = logging.getLogger(__name__)

#: How many tokens one call plausibly uses, for :func:`check_cost_units`.
PLAUSIBLE_TOKENS_PER_CALL = (1.0, 10_000.0)


def check_column_names(columns: Iterable, source: str) -> None:
    """Reject input columns that would silently change what a run does.

    - a reserved name (:data:`RESERVED_COLUMNS`: the pipeline writes these itself);
    - a known column's name up to case and surrounding spaces (``Split``, ``" cost"``) when
      the exact column is absent: proute would ignore it (an optional column) or report it
      missing without saying why.
    """
    names = [str(c) for c in columns]
    known = (USER_COLUMN,) + REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    for name in names:
        if name in RESERVED_COLUMNS:
            raise DataError(
                f"{source}: column {name!r} is reserved: {RESERVED_COLUMNS[name]}; expected no "
                f"input column of that name: rename it (e.g. to 'input_{name}') or drop it"
            )
        like = [k for k in known if name != k and name.strip().lower() == k and k not in names]
        if like:
            raise DataError(
                f"{source}: column {name!r} looks like {like[0]!r} but is not spelled the same "
                f"(column names are exact and lower case); expected {like[0]!r}: rename it"
            )


def check_cost_units(table: pd.DataFrame, llms: pd.DataFrame, source: str) -> str | None:
    """A warning (logged and returned) when costs look like another unit than dollars per call.

    Only possible where the LLM table lists prices (dollars per million tokens): a row's
    cost then implies ``cost * 1e6 / price`` tokens, ``price`` the mean of the LLM's input
    and output price (rows with cost 0 or an LLM without a price are left out). The
    heuristic warns when

    - the median call over all such rows implies fewer than 1 or more than 10,000 tokens
      (:data:`PLAUSIBLE_TOKENS_PER_CALL`; the bundled benchmark implies about 140): the
      whole column is in another unit, e.g. cents (x100), micro-dollars (x1e6) or a price
      per thousand tokens (x1000);
    - the LLMs' medians are over 10 times apart: some LLMs' costs are in another unit than
      the others' (this one also changes training, since cost is min-max normalised within a
      task across LLMs). Real verbosity differences stay well inside 10x (the bundled NQ
      data, with real costs: 3.6x).

    A blind spot: a whole column 100x off on short calls (100 tokens in cents imply
    10,000) stays inside the bounds.

    Returns ``None`` when nothing looks wrong or nothing can be checked.
    """
    if not {"input_price", "output_price"} <= set(llms.columns):
        return None
    price = (llms["input_price"].astype(float) + llms["output_price"].astype(float)) / 2
    price = price[price > 0]
    row_price = table["llm"].astype(str).map(price).to_numpy(dtype=float)
    cost = table["cost"].to_numpy(dtype=float)
    sel = np.isfinite(row_price) & (cost > 0)
    if not sel.any():
        return None
    tokens = pd.Series(cost[sel] * 1e6 / row_price[sel])
    per_llm = tokens.groupby(table["llm"].astype(str).to_numpy()[sel]).median()
    found = [f for f in (_column_unit(tokens), _llm_units(per_llm)) if f]
    if not found:
        return None
    msg = (
        f"{source}: field 'cost' may not be in dollars per call: {'; '.join(found)} "
        "(heuristic: proute.data.source_checks.check_cost_units)"
    )
    log.warning(msg)
    return msg


def _column_unit(tokens: pd.Series) -> str | None:
    """What the median call's implied tokens say about the whole column's unit, if off."""
    median = float(tokens.median())
    lo, hi = PLAUSIBLE_TOKENS_PER_CALL
    if lo <= median <= hi:
        return None
    n_out = int(((tokens < lo) | (tokens > hi)).sum())
    return (
        f"at the LLM table's prices (dollars per million tokens) the median call would use "
        f"{median:.3g} tokens ({n_out} of {len(tokens)} priced rows imply fewer than {lo:g} or "
        f"more than {hi:g}); costs in dollars per call imply {lo:g} to {hi:g}. One unit for "
        "all rows does not change training (costs are compared within a task), but the "
        "reported costs keep it"
    )


def _llm_units(per_llm: pd.Series) -> str | None:
    """What the LLMs' median implied tokens say when they are over 10x apart."""
    if not per_llm.max() > 10 * per_llm.min():
        return None
    far = np.abs(np.log(per_llm / float(per_llm.median()))).sort_values(ascending=False)
    shown = ", ".join(f"{k!r} ({per_llm[k]:.3g} tokens)" for k in far.index[:3])
    return (
        f"the LLMs' costs imply {per_llm.min():.3g} to {per_llm.max():.3g} tokens per call, over "
        f"10x apart (farthest from the median LLM: {shown}): some LLMs' costs look like "
        "another unit than the others', which does change training (cost is normalised "
        "across the LLMs of a task)"
    )
