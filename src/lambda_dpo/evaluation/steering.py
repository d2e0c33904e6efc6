"""Does lambda steer generation? Judge replies generated under a grid of lambdas.

- `lambda_grid`: the simplex vertices, the centre, the midpoint of every edge, and quarter
  points on the edge of a chosen pair of (conflicting) aspects.
- `controllability`: for each aspect k, Spearman's rank correlation between lambda_k and the
  mean aspect-k judge score over the grid (1 = raising lambda_k always raises that score; NaN
  when the scores do not move at all, as for a model that never sees lambda).
- `pareto_front` / `front_area`: for two aspects, the non-dominated mean-score points and the
  area they dominate above a reference point (judge units squared; larger is better).
- `average_ranks` / `spearman`: the rank statistics behind them, in plain Python (no pandas or
  scipy), shared with `steering_metrics`.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Mapping, Sequence

from ..lambdas import uniform_lambda


def lambda_grid(aspects: Sequence[str], pair: tuple[str, str] | None = None, edges: bool = True) -> list[dict]:
    """Lambda points on the simplex, each {aspect: weight} summing to 1, without duplicates."""
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
    return ",".join(f"{a}={w:.2f}" for a, w in lam.items())


def _is_missing(x) -> bool:
    """None or NaN (any float type, numpy's included)."""
    if x is None:
        return True
    try:
        return math.isnan(x)
    except TypeError:
        return False


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of `values`, ties given the average of the ranks they span ([N] -> [N]).

    Missing entries (None or NaN) are not ranked and keep NaN, as pandas' ``Series.rank()``.
    E.g. [10, 20, 20, 5] -> [2.0, 3.5, 3.5, 1.0].
    """
    present = [i for i, v in enumerate(values) if not _is_missing(v)]
    order = sorted(present, key=lambda i: values[i])
    ranks = [float("nan")] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start:end + 1]:
            ranks[i] = (start + end) / 2 + 1  # mean of the 1-based ranks start+1 .. end+1
        start = end + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r over the pairs where neither value is missing; NaN with fewer than 2 such
    pairs or when either side is constant over them."""
    pairs = [(float(a), float(b)) for a, b in zip(x, y) if not _is_missing(a) and not _is_missing(b)]
    if len(pairs) < 2:
        return float("nan")
    mx = sum(a for a, _ in pairs) / len(pairs)
    my = sum(b for _, b in pairs) / len(pairs)
    sxy = sum((a - mx) * (b - my) for a, b in pairs)
    sxx = sum((a - mx) ** 2 for a, _ in pairs)
    syy = sum((b - my) ** 2 for _, b in pairs)
    if sxx == 0 or syy == 0:
        return float("nan")
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's r of the average ranks (ties averaged), over the pairs where
    neither value is missing (ranked after dropping the others). NaN with fewer than 2 pairs or
    when either side is constant; in [-1, 1] otherwise (scipy.stats.spearmanr's value)."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs equal lengths, got {len(x)} and {len(y)}")
    pairs = [(a, b) for a, b in zip(x, y) if not _is_missing(a) and not _is_missing(b)]
    return pearson(average_ranks([a for a, _ in pairs]), average_ranks([b for _, b in pairs]))


def mean_judge_scores(specs: Sequence, replies: Sequence[str], judge: Callable[[object, str], dict]) -> dict:
    """Mean judge score per aspect over (spec, reply) pairs: {aspect: mean score (judge units)}.

    Aspects in the order the judge first returns them; a score that is missing (None / NaN, or
    the aspect absent from one judgement) is left out of that aspect's mean (NaN if all are).
    """
    judged = [judge(s, r) for s, r in zip(specs, replies)]
    keys = list(dict.fromkeys(k for d in judged for k in d))
    out = {}
    for k in keys:
        vals = [float(d[k]) for d in judged if k in d and not _is_missing(d[k])]
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
        distinct = {float(v) for v in score if not _is_missing(v)}
        out[a] = pearson(average_ranks(lam), average_ranks(score)) if len(distinct) > 1 else float("nan")
    return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another (both coordinates higher is better), sorted by x."""
    front = [p for p in points
             if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points)]
    return sorted(set(front))


def front_area(points: Sequence[tuple[float, float]], ref: tuple[float, float] = (1.0, 1.0)) -> float:
    """Area dominated by the Pareto front of `points` and above `ref` (the judges' floor)."""
    area, prev_y = 0.0, ref[1]
    for x, y in sorted(pareto_front(points), key=lambda p: -p[0]):  # sweep from the largest x down
        if y > prev_y:
            area += (x - ref[0]) * (y - prev_y)
            prev_y = y
    return area
