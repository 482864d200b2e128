"""RouterBench's AIQ: the non-decreasing convex hull frontier of (cost, performance) points
and the average quality under it, per user of a points frame."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def frontier(points) -> np.ndarray:
    """Vertices ``[k, 2]`` (cost, performance) of the non-decreasing convex hull of
    ``points``, by increasing cost; see :func:`aiq`."""
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    if len(p) == 0 or not np.isfinite(p).all():
        raise ValueError("frontier needs at least one finite (cost, performance) point")
    p = p[np.lexsort((-p[:, 1], p[:, 0]))]  # by cost, then best performance first
    pareto: list[tuple[float, float]] = []  # strictly increasing in both cost and performance
    for c, q in p:
        if not pareto or q > pareto[-1][1]:
            pareto.append((c, q))
    hull: list[tuple[float, float]] = []  # upper hull: keep only right turns
    for pt in pareto:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (pt[1] - y1) - (y2 - y1) * (pt[0] - x1) >= 0:  # hull[-1] on or below
                hull.pop()
            else:
                break
        hull.append(pt)
    return np.asarray(hull)


def aiq(points, cost_range: tuple[float, float] | None = None) -> float:
    """RouterBench's Average Improvement in Quality (Hu et al., 2024, arXiv:2403.12031).

    For (cost, performance) points, the *non-decreasing convex hull* is
    ``R(c) = max{λ·p_i + (1 − λ)·p_j : λ·c_i + (1 − λ)·c_j ≤ c, λ ∈ [0, 1]}``, the best
    performance reachable at a cost of at most ``c`` by routing each query to point *i*
    with probability λ and to point *j* otherwise: the upper concave envelope of the
    points that are not dominated (no cheaper-or-equal point performs as well), flat after
    the best-performing point. ``R(c)`` is 0 below the cheapest point (nothing is
    affordable). Then::

        AIQ = 1 / (c_max − c_min) · ∫_{c_min}^{c_max} R(c) dc

    with ``(c_min, c_max) = cost_range``, by default the points' own cost range; compare
    AIQs computed over the same range. When ``c_min == c_max`` (a single point) the AIQ is
    ``R(c_min)``, the limit of the average.

    Two LLMs, (0, 0.5) and (1, 1): the hull is the line between them, AIQ = (0.5 + 1) / 2.
    The point (0.5, 0.6) lies below it and changes nothing:

    >>> aiq([(0.0, 0.5), (1.0, 1.0), (0.5, 0.6)])
    0.75

    A better middle point, (0.5, 1.0), lifts the hull to 1 from cost 0.5 on; the expensive
    point adds nothing: AIQ = 0.5 · (0.5 + 1) / 2 + 0.5 · 1 = 0.875.

    >>> aiq([(0.0, 0.5), (0.5, 1.0), (1.0, 1.0)])
    0.875
    """
    hull = frontier(points)
    lo, hi = (hull[0, 0], float(np.asarray(points, dtype=float).reshape(-1, 2)[:, 0].max()))
    if cost_range is not None:
        lo, hi = map(float, cost_range)
    if hi < lo or not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"cost_range must be finite with c_min <= c_max; got {(lo, hi)}")
    xs, ys = hull[:, 0], hull[:, 1]

    def value(c: float, right: bool) -> float:  # R(c+) when right, else R(c-)
        if c < xs[0] or (c == xs[0] and not right):
            return 0.0
        return float(np.interp(c, xs, ys))  # np.interp is flat after the last vertex

    if hi == lo:
        return value(lo, right=True)
    grid = np.unique(np.concatenate([[lo, hi], xs[(xs > lo) & (xs < hi)]]))
    area = sum(
        (b - a) * (value(a, True) + value(b, False)) / 2 for a, b in zip(grid[:-1], grid[1:], strict=True)
    )
    return float(round(area / (hi - lo), 12))


LLM_FRONTIER = "single LLMs"


def _panel_aiqs(pts: pd.DataFrame) -> dict[str, float]:
    """AIQs of one user's points over their common cost range (see :func:`aiq_table`)."""
    llm = pts.loc[pts["kind"] == "llm", ["cost", "performance"]].to_numpy(dtype=float)
    span = (float(pts["cost"].min()), float(pts["cost"].max()))
    out = {LLM_FRONTIER: aiq(llm, span)} if len(llm) else {}
    for _, r in pts[pts["kind"] == "router"].iterrows():
        out[r["name"]] = aiq(np.vstack([llm, [[r["cost"], r["performance"]]]]), span)
    return out


def aiq_table(points: pd.DataFrame) -> pd.DataFrame:
    """User × (``"single LLMs"``, routers…) table of AIQs (:func:`aiq`), each over the
    user's cost range (the cheapest to the dearest of all the user's points, oracle
    included): the frontier of the single LLMs, and for each router the frontier of the
    single LLMs plus the router's point, i.e. how far the router lifts what mixing fixed
    LLMs reaches. A router below that frontier leaves the LLMs' AIQ unchanged."""
    rows = {u: _panel_aiqs(pts) for u, pts in points.groupby("user_id", sort=False)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "user_id"
    return table
