"""Lambda grid, controllability and Pareto area on hand-made numbers."""

import math

import pytest

from lambda_dpo.evaluation.steering import controllability, front_area, lambda_grid, pareto_front

ASPECTS = ("a", "b", "c")


def test_grid_has_vertices_centre_edges_and_pair_points():
    grid = lambda_grid(ASPECTS, pair=("a", "b"))
    keys = {tuple(p[x] for x in ASPECTS) for p in grid}
    assert {(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)} <= keys
    assert (0.25, 0.75, 0) in keys and (0.75, 0.25, 0) in keys
    assert any(math.isclose(p["a"], 1 / 3) for p in grid)
    assert len(grid) == len(keys) == 9 and all(math.isclose(sum(p.values()), 1) for p in grid)
    assert len(lambda_grid(ASPECTS, edges=False)) == 4


def test_controllability_is_spearman_and_nan_when_scores_do_not_move():
    grid = [{"a": w, "b": 1 - w, "c": 0.0} for w in (0.0, 0.5, 1.0)]
    scores = [{"a": 1.0, "b": 3.0, "c": 2.0}, {"a": 2.0, "b": 2.0, "c": 2.0}, {"a": 4.0, "b": 1.0, "c": 2.0}]
    rho = controllability(grid, scores, ASPECTS)
    assert rho["a"] == pytest.approx(1.0) and rho["b"] == pytest.approx(1.0) and math.isnan(rho["c"])
    scores[2]["a"] = 0.5  # not monotone any more
    assert controllability(grid, scores, ASPECTS)["a"] == pytest.approx(-0.5)


def test_pareto_front_and_area():
    pts = [(2, 4), (3, 3), (4, 2), (2.5, 2.5), (1, 1)]
    assert pareto_front(pts) == [(2, 4), (3, 3), (4, 2)]
    # rectangles above (1,1): x=4 up to y=2 -> 3*1; x=3 from 2 to 3 -> 2*1; x=2 from 3 to 4 -> 1*1
    assert front_area(pts) == pytest.approx(6.0)
    assert front_area([(3, 3)]) == pytest.approx(4.0)
    assert front_area([(3, 3), (2, 2)]) == front_area([(3, 3)])
