from __future__ import annotations

import math

from ablate.report.pareto import frontier_steps, pareto_mask

MIN_MAX = (False, True)  # minimise cost, maximise mIoU


def test_single_point_is_on_the_front():
    assert pareto_mask([(1.0, 50.0)], MIN_MAX) == [True]


def test_empty():
    assert pareto_mask([], MIN_MAX) == []


def test_dominated_points():
    pts = [(1, 50), (2, 60), (3, 55), (2, 40), (4, 70)]
    assert pareto_mask(pts, MIN_MAX) == [True, True, False, False, True]


def test_exact_duplicates_both_stay():
    assert pareto_mask([(1, 50), (1, 50), (2, 40)], MIN_MAX) == [True, True, False]


def test_ties_on_one_axis():
    # same cost: only the better mIoU survives; same mIoU: only the cheaper one
    assert pareto_mask([(1, 50), (1, 60)], MIN_MAX) == [False, True]
    assert pareto_mask([(1, 50), (2, 50)], MIN_MAX) == [True, False]


def test_direction_per_axis():
    pts = [(1, 50), (2, 60)]
    assert pareto_mask(pts, (True, True)) == [False, True]
    assert pareto_mask(pts, (False, False)) == [True, False]
    assert pareto_mask(pts, (True, False)) == [True, True]


def test_nan_is_never_on_the_front():
    assert pareto_mask([(1, math.nan), (2, 40)], MIN_MAX) == [False, True]


def test_three_objectives_match_brute_force():
    pts = [(1, 50, 3), (2, 60, 1), (2, 60, 2), (3, 40, 1)]
    assert pareto_mask(pts, (False, True, False)) == [True, True, False, False]


def test_frontier_steps_sorted_by_cost():
    assert frontier_steps([3, 1, 2], [70, 50, 60]) == ([1, 2, 3], [50, 60, 70])


def brute_force(pts, maximize):
    signs = [-1 if m else 1 for m in maximize]
    costs = [[v * s for v, s in zip(p, signs)] for p in pts]
    out = []
    for i, a in enumerate(costs):
        if any(math.isnan(v) for v in a):
            out.append(False)
            continue
        dominated = any(
            all(o <= v for o, v in zip(b, a)) and any(o < v for o, v in zip(b, a))
            for j, b in enumerate(costs) if j != i and not any(math.isnan(v) for v in b))
        out.append(not dominated)
    return out


def test_random_points_with_many_ties_match_brute_force():
    import random

    rng = random.Random(0)
    for _ in range(50):
        pts = [(rng.randint(0, 5), rng.randint(0, 5)) for _ in range(rng.randint(1, 25))]
        for maximize in [(False, True), (True, True), (False, False), (True, False)]:
            assert pareto_mask(pts, maximize) == brute_force(pts, maximize), (pts, maximize)


def test_negative_and_float_values():
    assert pareto_mask([(-1.5, -3.0), (-2.0, -4.0), (0.0, 1e9)], MIN_MAX) == [True, True, True]


def test_frontier_steps_with_equal_cost_puts_the_better_point_first():
    assert frontier_steps([1, 1, 2], [50, 60, 70]) == ([1, 1, 2], [60, 50, 70])
    assert frontier_steps([5], [1]) == ([5], [1])
    assert frontier_steps([], []) == ([], [])
