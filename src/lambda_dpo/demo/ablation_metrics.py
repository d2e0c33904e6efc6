"""What the ablation measures: does lambda steer the judged replies over a grid of lambdas?

- `lambda_grid`: the simplex vertices, the centre, the midpoint of every edge, and quarter
  points on the edge of a chosen pair of (conflicting) aspects.
- `lambda_key`: a grid point's name in the ablation's metrics.json ("a=0.25,b=0.75").
- `mean_judge_scores`: the mean judge score per aspect of one grid point's replies.
- `controllability`: for each aspect k, Spearman's rank correlation between lambda_k and the
  mean aspect-k judge score over the grid (1 = raising lambda_k always raises that score; NaN
  when the scores do not move at all, as for a model that never sees lambda).

The front's area on the conflicting pair is `evaluation.protocol.hypervolume`.
"""

from __future__ import annotations

import itertools
from typing import Callable, Mapping, Sequence

from ..evaluation.ranks import average_ranks, is_missing, pearson
from ..lambdas import uniform_lambda

__all__ = ["lambda_grid", "lambda_key", "mean_judge_scores", "controllability"]


def lambda_grid(aspects: Sequence[str], pair: tuple[str, str] | None = None, edges: bool = True) -> list[dict]:
    """Lambda points on the simplex, each {aspect: weight} summing to 1, without duplicates.

    With `pair` = (u, v): the quarter points (u 0.25, v 0.75) and (u 0.75, v 0.25) of their edge.
    """
    points = [{a: float(a == v) for a in aspects} for v in aspects]
    points.append(uniform_lambda(aspects))
    if edges:
        points += [{a: 0.5 * (a in (u, v)) for a in aspects} for u, v in itertools.combinations(aspects, 2)]
    if pair:
        u, v = pair
        points += [{a: (w if a == u else 1 - w if a == v else 0.0) for a in aspects} for w in (0.25, 0.75)]
    unique = {tuple(round(p[a], 6) for a in aspects): p for p in points}
    return list(unique.values())


def lambda_key(lam: Mapping[str, float]) -> str:
    """"a=0.25,b=0.75": the weights in the mapping's order, two decimals."""
    return ",".join(f"{a}={w:.2f}" for a, w in lam.items())


def mean_judge_scores(specs: Sequence, replies: Sequence[str], judge: Callable[[object, str], dict]) -> dict:
    """Mean judge score per aspect over (spec, reply) pairs: {aspect: mean score (judge units)}.

    Aspects in the order the judge first returns them; a score that is missing (None / NaN, or
    the aspect absent from one judgement) is left out of that aspect's mean (NaN if all are).
    """
    judged = [judge(s, r) for s, r in zip(specs, replies)]
    keys = list(dict.fromkeys(k for d in judged for k in d))
    out = {}
    for k in keys:
        vals = [float(d[k]) for d in judged if k in d and not is_missing(d[k])]
        out[k] = sum(vals) / len(vals) if vals else float("nan")
    return out


def controllability(grid: Sequence[Mapping[str, float]], scores: Sequence[Mapping[str, float]],
                    aspects: Sequence[str]) -> dict[str, float]:
    """Spearman rho between lambda_k and mean score_k across grid points, per aspect.

    NaN for an aspect whose score takes fewer than two distinct values over the grid. Ranks are
    taken per column over its present values, then correlated over the points where both are
    present (the pandas ``rank().corr()`` this replaced).
    """
    out = {}
    for a in aspects:
        lam = [g[a] for g in grid]
        score = [s[a] for s in scores]
        distinct = {float(v) for v in score if not is_missing(v)}
        out[a] = pearson(average_ranks(lam), average_ranks(score)) if len(distinct) > 1 else float("nan")
    return out
