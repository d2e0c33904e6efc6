"""The ablation's measures (demo/ablation_metrics.py): lambda grid, judge means, controllability."""

import math
import random

import pytest

from lambda_dpo.demo.ablation_metrics import controllability, lambda_grid, lambda_key, mean_judge_scores

ASPECTS = ("a", "b", "c")


def test_grid_has_vertices_centre_edges_and_pair_points():
    grid = lambda_grid(ASPECTS, pair=("a", "b"))
    keys = {tuple(p[x] for x in ASPECTS) for p in grid}
    assert {(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)} <= keys
    assert (0.25, 0.75, 0) in keys and (0.75, 0.25, 0) in keys
    assert any(math.isclose(p["a"], 1 / 3) for p in grid)
    assert len(grid) == len(keys) == 9 and all(math.isclose(sum(p.values()), 1) for p in grid)
    assert len(lambda_grid(ASPECTS, edges=False)) == 4
    assert lambda_key({"a": 0.25, "b": 0.75}) == "a=0.25,b=0.75"


def test_controllability_is_spearman_and_nan_when_scores_do_not_move():
    grid = [{"a": w, "b": 1 - w, "c": 0.0} for w in (0.0, 0.5, 1.0)]
    scores = [{"a": 1.0, "b": 3.0, "c": 2.0}, {"a": 2.0, "b": 2.0, "c": 2.0}, {"a": 4.0, "b": 1.0, "c": 2.0}]
    rho = controllability(grid, scores, ASPECTS)
    assert rho["a"] == pytest.approx(1.0) and rho["b"] == pytest.approx(1.0) and math.isnan(rho["c"])
    scores[2]["a"] = 0.5  # not monotone any more
    assert controllability(grid, scores, ASPECTS)["a"] == pytest.approx(-0.5)


def test_mean_judge_scores_skips_missing_scores():
    judged = {"r1": {"a": 1, "b": 4}, "r2": {"a": 2, "b": None}, "r3": {"a": 6, "c": 2}}
    out = mean_judge_scores([None] * 3, ["r1", "r2", "r3"], lambda spec, reply: judged[reply])
    assert list(out) == ["a", "b", "c"]
    assert out == {"a": pytest.approx(3.0), "b": pytest.approx(4.0), "c": pytest.approx(2.0)}
    assert mean_judge_scores([], [], lambda s, r: {}) == {}


def test_rank_functions_match_the_pandas_code_they_replaced():
    pd = pytest.importorskip("pandas")
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(2, 9)
        grid = [{"a": rng.choice([0.0, 0.25, 0.5, 1.0]), "b": rng.random()} for _ in range(n)]
        scores = [{"a": float(rng.randint(1, 3)), "b": rng.choice([1.0, 2.0, float("nan"), rng.random()])}
                  for _ in range(n)]
        ours = controllability(grid, scores, ("a", "b"))
        for asp in ("a", "b"):
            frame = pd.DataFrame({"lam": [g[asp] for g in grid], "score": [s[asp] for s in scores]})
            ranks = frame.rank()
            ref = float(ranks["lam"].corr(ranks["score"])) if frame["score"].nunique() > 1 else float("nan")
            assert (math.isnan(ours[asp]) and math.isnan(ref)) or ours[asp] == pytest.approx(ref, abs=1e-12)
        judged = [{"x": rng.randint(1, 5), "y": rng.choice([1, 2, None])} for _ in range(n)]
        ours = mean_judge_scores(range(n), range(n), lambda s, r: judged[r])
        ref = pd.DataFrame(judged).mean().to_dict()
        assert list(ours) == list(ref)
        for k in ref:
            assert (math.isnan(ours[k]) and math.isnan(ref[k])) or ours[k] == pytest.approx(ref[k], abs=1e-12)
