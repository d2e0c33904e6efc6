"""Does lambda steer generation? Judge replies generated under a grid of lambdas.

- `lambda_grid`: the simplex vertices, the centre, the midpoint of every edge, and quarter
  points on the edge of a chosen pair of (conflicting) aspects.
- `controllability`: for each aspect k, Spearman's rank correlation between lambda_k and the
  mean aspect-k judge score over the grid (1 = raising lambda_k always raises that score; NaN
  when the scores do not move at all, as for a model that never sees lambda).
- `pareto_front` / `front_area`: for two aspects, the non-dominated mean-score points and the
  area they dominate above a reference point (judge units squared; larger is better).
"""

from __future__ import annotations

import itertools
from typing import Callable, Mapping, Sequence

import pandas as pd


def lambda_grid(aspects: Sequence[str], pair: tuple[str, str] | None = None, edges: bool = True) -> list[dict]:
    """Lambda points on the simplex, each {aspect: weight} summing to 1, without duplicates."""
    k = len(aspects)
    points = [{a: float(a == v) for a in aspects} for v in aspects]
    points.append({a: 1.0 / k for a in aspects})
    if edges:
        points += [{a: 0.5 * (a in (u, v)) for a in aspects} for u, v in itertools.combinations(aspects, 2)]
    if pair:
        u, v = pair
        points += [{a: (w if a == u else 1 - w if a == v else 0.0) for a in aspects} for w in (0.25, 0.75)]
    unique = {tuple(round(p[a], 6) for a in aspects): p for p in points}
    return list(unique.values())


def lambda_key(lam: Mapping[str, float]) -> str:
    return ",".join(f"{a}={w:.2f}" for a, w in lam.items())


def mean_judge_scores(specs: Sequence, replies: Sequence[str], judge: Callable[[object, str], dict]) -> dict:
    """Mean judge score per aspect over (spec, reply) pairs."""
    frame = pd.DataFrame([judge(s, r) for s, r in zip(specs, replies)])
    return frame.mean().to_dict()


def controllability(grid: Sequence[Mapping[str, float]], scores: Sequence[Mapping[str, float]],
                    aspects: Sequence[str]) -> dict[str, float]:
    """Spearman rho between lambda_k and mean score_k across grid points, per aspect."""
    out = {}
    for a in aspects:
        frame = pd.DataFrame({"lam": [g[a] for g in grid], "score": [s[a] for s in scores]})
        ranks = frame.rank()  # Spearman's rho = Pearson's r on average ranks (no scipy needed)
        out[a] = float(ranks["lam"].corr(ranks["score"])) if frame["score"].nunique() > 1 else float("nan")
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
