"""Pareto fronts as pure functions (no pandas, no plotting)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pareto_mask(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[bool]:
    """True for every point that no other point dominates.

    ``a`` dominates ``b`` when ``a`` is at least as good on every objective and
    strictly better on one. Exact duplicates do not dominate each other, so both
    stay on the front. NaN coordinates are never on the front.
    """
    pts = np.asarray(points, dtype=float)
    if pts.size == 0:
        return []
    if pts.ndim != 2 or pts.shape[1] != len(maximize):
        raise ValueError("points must be N x len(maximize)")
    signs = np.where(np.asarray(maximize), -1.0, 1.0)  # turn everything into minimisation
    costs = pts * signs
    valid = ~np.isnan(costs).any(axis=1)
    mask = np.zeros(len(pts), dtype=bool)
    idx = np.flatnonzero(valid)
    if costs.shape[1] == 2:
        mask[idx[_front_2d(costs[idx])]] = True
    else:
        mask[idx[_front_nd(costs[idx])]] = True
    return mask.tolist()


def _front_2d(costs: np.ndarray) -> np.ndarray:
    """O(n log n): sort by the first cost, then keep points that improve the second."""
    order = np.lexsort((costs[:, 1], costs[:, 0]))
    keep = np.zeros(len(costs), dtype=bool)
    best_y = np.inf
    i = 0
    n = len(order)
    while i < n:
        # a group of equal first cost: only its smallest second cost can be on the front
        j = i
        x = costs[order[i], 0]
        while j < n and costs[order[j], 0] == x:
            j += 1
        group = order[i:j]
        y_min = costs[group[0], 1]
        if y_min < best_y:
            keep[group[costs[group, 1] == y_min]] = True
            best_y = y_min
        i = j
    return keep


def _front_nd(costs: np.ndarray) -> np.ndarray:
    keep = np.ones(len(costs), dtype=bool)
    for i in range(len(costs)):
        others = costs
        dominated = np.all(others <= costs[i], axis=1) & np.any(others < costs[i], axis=1)
        keep[i] = not dominated.any()
    return keep


def frontier_steps(xs: Sequence[float], ys: Sequence[float], maximize_y: bool = True
                   ) -> tuple[list[float], list[float]]:
    """Front points sorted by x, for a step plot (x minimised, y maximised by default)."""
    pairs = sorted(zip(xs, ys), key=lambda p: (p[0], -p[1] if maximize_y else p[1]))
    return [p[0] for p in pairs], [p[1] for p in pairs]
