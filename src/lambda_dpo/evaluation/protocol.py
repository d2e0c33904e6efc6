"""The steering protocol: fronts of judge scores traced by sweeping lambda, and their hypervolume.

How steerable multi-objective models are measured (docs/steering.md): sweep lambda along the edge
between two conflicting aspects a and b, lambda = (1 - w) e_a + w e_b for a grid of weights w that
includes weights training never drew; at each w generate greedy replies to P prompts and judge them;
the model's point at w is (mean score_a, mean score_b). Its front is the set of those points and its
hypervolume (HV) the area of the union of the rectangles [r_a, x_a] x [r_b, x_b] over its points x,
with r the reference point (the judges' minimum). A model that cannot be steered is one point.

Everything here takes a generator and a judge as arguments, so it measures any model:
- generate: ``(prompts [n], lambdas [n]) -> replies [n]``, one reply per (prompt, lambda) pair
  (`lambda_dpo.generation.generate` accepts a lambda per prompt); a lambda is {aspect: weight} or
  None for "no lambda" (a model's own prompt).
- judge: ``(record, reply) -> {aspect: score}`` (e.g. `evaluation.judges.LengthJudge`, or the demo's
  rule judges); a missing score is None or NaN.

Functions, each pure over the replies it is given:
- `edge_lambda`: the lambda at weight w on the edge of a pair of aspects.
- `hypervolume`: the area above for a set of 2-D points.
- `sweep_edge`: replies, word counts and judge scores at every weight (one generate call).
- `steerability`: per-prompt Spearman of w with each score and with reply length, the share of
  adjacent weights that move the right way, the front and its HV.
- `unseen_weights`: each weight training never drew against the interpolation of its seen
  neighbours.
- `vertex_matrix`: the mean score of every judged aspect at every aspect's vertex.
- `single_point`: one model under one prompt (no lambda): its point and HV.
- `pick_examples`: the prompts at given quantiles of the change in reply length between the ends.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

from .judges import words
from .ranks import spearman

__all__ = ["DEFAULT_WEIGHTS", "Generate", "Judge", "hypervolume", "sweep_edge", "steerability", "unseen_weights",
           "vertex_matrix", "single_point", "pick_examples", "edge_lambda"]

DEFAULT_WEIGHTS = (0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0)
"""Nine weights: the quarter steps training's grid draws, and 0.1 / 0.4 / 0.6 / 0.9, which it never draws."""

Lambda = Mapping[str, float] | None
Generate = Callable[[Sequence[object], Sequence[Lambda]], Sequence[str]]
Judge = Callable[[object, str], Mapping[str, float | None]]


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _mean(values: Sequence[float]) -> float:
    present = [float(v) for v in values if not _missing(v)]
    return sum(present) / len(present) if present else float("nan")


def edge_lambda(aspects: Sequence[str], pair: tuple[str, str], w: float) -> dict[str, float]:
    """lambda on the edge of `pair`: weight w on pair[1], 1 - w on pair[0], 0 on every other aspect
    (w = 0 is pair[0]'s vertex)."""
    a0, a1 = pair
    if a0 not in aspects or a1 not in aspects or a0 == a1:
        raise ValueError(f"pair {pair} must be two different aspects of {list(aspects)}")
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"w must be in [0, 1], got {w}")
    return {a: (float(w) if a == a1 else 1.0 - w if a == a0 else 0.0) for a in aspects}


def hypervolume(points: Sequence[tuple[float, float]], ref: tuple[float, float] = (1.0, 1.0)) -> float:
    """Area of the union of the rectangles [ref_x, x] x [ref_y, y] over `points` (both axes: higher is better).

    Dominated points and duplicates add nothing; a point not strictly above `ref` on both axes adds
    nothing (its rectangle is empty). Units: judge units squared. NaN coordinates are skipped.
    """
    kept = sorted(((float(x), float(y)) for x, y in points
                   if not (_missing(x) or _missing(y)) and x > ref[0] and y > ref[1]), key=lambda p: (-p[0], -p[1]))
    area, top = 0.0, ref[1]
    for x, y in kept:  # from the largest x down: each point adds the strip above the highest y so far
        if y > top:
            area += (x - ref[0]) * (y - top)
            top = y
    return area


def _check_prompts(prompts: Sequence, records: Sequence) -> None:
    if len(prompts) != len(records) or not prompts:
        raise ValueError(f"need as many records as prompts (at least one), got {len(prompts)} and {len(records)}")


def _judged(judge: Judge, records: Sequence, replies: Sequence[str]) -> dict[str, list[float]]:
    """{aspect: [score per reply]} over the aspects the judge returned for any reply (NaN where missing)."""
    verdicts = [judge(r, y) for r, y in zip(records, replies)]
    keys = list(dict.fromkeys(k for v in verdicts for k in v))
    return {k: [float("nan") if _missing(v.get(k)) else float(v[k]) for v in verdicts] for k in keys}


def sweep_edge(generate: Generate, prompts: Sequence, records: Sequence, judge: Judge, aspects: Sequence[str],
               pair: tuple[str, str], weights: Sequence[float] = DEFAULT_WEIGHTS) -> dict:
    """Greedy replies to every prompt at every weight of the edge, judged.

    Args:
        generate: see the module docstring; called once with all W * P pairs, weight-major (the
            pairs of one weight are adjacent, so a batch holds similar lengths).
        judge: see the module docstring.
        prompts: P prompts as the generator takes them; records: P objects handed to the judge.
        aspects: the model's aspects (the keys of every lambda); pair: (a, b), w is b's weight.
        weights: W strictly increasing weights in [0, 1].

    Returns {"pair", "weights" `[W]`, "replies" `[W][P]`, "words" `[W][P]` (word counts),
             "scores" {aspect: `[W][P]`} (every aspect the judge returned; NaN where it gave none),
             "mean_words" [W], "means" {aspect: [W]} (over prompts, missing scores skipped)}.
    """
    ws = [float(w) for w in weights]
    if len(ws) < 2 or any(b <= a for a, b in zip(ws, ws[1:])):
        raise ValueError(f"weights must be at least 2 strictly increasing values, got {ws}")
    _check_prompts(prompts, records)
    lams = [edge_lambda(aspects, pair, w) for w in ws]
    n = len(prompts)
    replies = list(generate([p for _ in ws for p in prompts], [lam for lam in lams for _ in prompts]))
    if len(replies) != len(ws) * n:
        raise ValueError(f"generate returned {len(replies)} replies for {len(ws) * n} (prompt, lambda) pairs")
    by_w = [replies[i * n:(i + 1) * n] for i in range(len(ws))]
    judged = _judged(judge, list(records) * len(ws), replies)
    scores = {k: [v[i * n:(i + 1) * n] for i in range(len(ws))] for k, v in judged.items()}
    counts = [[len(words(r)) for r in row] for row in by_w]
    return {"pair": list(pair), "weights": ws, "replies": by_w, "words": counts,
            "scores": scores, "mean_words": [sum(c) / n for c in counts],
            "means": {k: [_mean(row) for row in v] for k, v in scores.items()}}


def _spearman_or_zero(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho; 0 when y does not vary (a reply that never changes follows no trend); NaN when
    fewer than two values are present."""
    present = [v for v in y if not _missing(v)]
    if len(present) < 2:
        return float("nan")
    if len(set(present)) == 1:
        return 0.0
    return spearman(x, y)


def _moves(values: Sequence[float], sign: int) -> tuple[int, int, int]:
    """(right, still, wrong) over adjacent pairs: right = moved in direction `sign` (+1 up, -1 down)."""
    right = still = wrong = 0
    for u, v in zip(values, values[1:]):
        if _missing(u) or _missing(v):
            continue
        d = (v - u) * sign
        right, still, wrong = right + (d > 0), still + (d == 0), wrong + (d < 0)
    return right, still, wrong


def steerability(sweep: dict, ref: tuple[float, float] = (1.0, 1.0)) -> dict:
    """How a sweep's replies follow w (the weight of the pair's second aspect b; a's is 1 - w).

    Returns {"front": [(mean score_a, mean score_b)] per weight, "hypervolume": `hypervolume` of them,
             "spearman": {"words" and every judged aspect: Spearman of w with the value, per prompt,
                 averaged over prompts (a prompt whose value never changes counts 0)},
             "adjacent": {"words", a, b: {"right", "still", "wrong"}: shares of adjacent-weight pairs,
                 over prompts, that move the right way (words and b up, a down), not at all, or back},
             "adjacent_means": {"words", a, b: share of adjacent pairs of the mean curve moving the right way},
             "end_ratio_words": mean words at the last weight / at the first}.
    """
    a, b = sweep["pair"]
    ws = sweep["weights"]
    for k in (a, b):
        if k not in sweep["means"]:
            raise ValueError(f"the judge gave no {k!r} score; the front needs both aspects of the pair {a, b}")
    series = {"words": sweep["words"], **sweep["scores"]}
    per_prompt = {k: [[row[j] for row in v] for j in range(len(v[0]))] for k, v in series.items()}
    rho = {k: _mean([_spearman_or_zero(ws, p) for p in prompts]) for k, prompts in per_prompt.items()}
    adjacent, adjacent_means = {}, {}
    for k, sign in (("words", 1), (a, -1), (b, 1)):
        counts = [_moves(p, sign) for p in per_prompt[k]]
        total = sum(map(sum, counts)) or 1
        adjacent[k] = {name: sum(c[i] for c in counts) / total for i, name in enumerate(("right", "still", "wrong"))}
        curve = sweep["mean_words"] if k == "words" else sweep["means"][k]
        adjacent_means[k] = _moves(curve, sign)[0] / (len(curve) - 1)
    front = list(zip(sweep["means"][a], sweep["means"][b]))
    lo, hi = sweep["mean_words"][0], sweep["mean_words"][-1]
    return {"front": front, "hypervolume": hypervolume(front, ref), "reference": list(ref), "spearman": rho,
            "adjacent": adjacent, "adjacent_means": adjacent_means,
            "end_ratio_words": hi / lo if lo else float("inf") if hi else float("nan")}


def unseen_weights(sweep: dict, step: float, ref: tuple[float, float] = (1.0, 1.0), tol: float = 0.05) -> list[dict]:
    """Each weight that is not a multiple of `step` (training's grid: 1 / lambda_grid_steps) against its seen
    neighbours, the nearest multiples of `step` below and above it in the sweep.

    For score_a, score_b and mean words: the interpolation of the neighbours' values, linear in w.
    "shortfall": the largest relative shortfall of the point's excess over `ref` against the
    interpolation's, over the two aspects (0 when both are at or above it); "on_front": shortfall <=
    tol. "between": every one of the three values lies between the neighbours' (inclusive).
    A weight without a seen neighbour on both sides is left out.
    """
    a, b = sweep["pair"]
    ws = sweep["weights"]
    seen = [i for i, w in enumerate(ws) if abs(w / step - round(w / step)) < 1e-6]
    values = {"words": sweep["mean_words"], a: sweep["means"][a], b: sweep["means"][b]}
    out = []
    for i, w in enumerate(ws):
        if i in seen:
            continue
        lo = max((j for j in seen if ws[j] < w), default=None, key=lambda j: ws[j])
        hi = min((j for j in seen if ws[j] > w), default=None, key=lambda j: ws[j])
        if lo is None or hi is None:
            continue
        t = (w - ws[lo]) / (ws[hi] - ws[lo])
        row = {"w": w, "neighbours": [ws[lo], ws[hi]], "between": True, "shortfall": 0.0}
        for k, v in values.items():
            interp = v[lo] + t * (v[hi] - v[lo])
            row[k] = {"value": v[i], "interpolated": interp}
            row["between"] &= min(v[lo], v[hi]) <= v[i] <= max(v[lo], v[hi])
            if k != "words":
                r = ref[0] if k == a else ref[1]
                if interp > r:
                    row["shortfall"] = max(row["shortfall"], 1 - (v[i] - r) / (interp - r))
        row["on_front"] = row["shortfall"] <= tol
        out.append(row)
    return out


def vertex_matrix(generate: Generate, prompts: Sequence, records: Sequence, judge: Judge,
                  aspects: Sequence[str], vertices: Sequence[str] | None = None) -> dict:
    """Mean judge scores at every aspect's vertex (one generate call for all vertices).

    Returns {"matrix": {vertex aspect k: {judged aspect j: mean score of j at e_k}},
             "diagonal_is_column_max": {j: True when j's own vertex gives j's highest mean (ties count),
                 for every judged aspect j that is also a vertex}, "replies": {k: [P]}}.
    """
    _check_prompts(prompts, records)
    vertices = list(vertices or aspects)
    lams = [{a: float(a == k) for a in aspects} for k in vertices]
    n = len(prompts)
    replies = list(generate([p for _ in vertices for p in prompts], [lam for lam in lams for _ in prompts]))
    if len(replies) != n * len(vertices):
        raise ValueError(f"generate returned {len(replies)} replies for {n * len(vertices)} (prompt, lambda) pairs")
    judged = _judged(judge, list(records) * len(vertices), replies)
    matrix = {k: {j: _mean(v[i * n:(i + 1) * n]) for j, v in judged.items()} for i, k in enumerate(vertices)}
    diag = {j: matrix[j][j] >= max(matrix[k][j] for k in vertices) - 1e-9
            for j in judged if j in matrix and not _missing(matrix[j][j])}
    return {"matrix": matrix, "diagonal_is_column_max": diag,
            "replies": {k: replies[i * n:(i + 1) * n] for i, k in enumerate(vertices)}}


def single_point(generate: Generate, prompts: Sequence, records: Sequence, judge: Judge, pair: tuple[str, str],
                 lam: Lambda = None, ref: tuple[float, float] = (1.0, 1.0)) -> dict:
    """One model under one lambda (None: its own prompt, no lambda text): its mean scores, point and HV.

    Returns {"means": {aspect: mean}, "mean_words", "point": (mean score_a, mean score_b),
             "hypervolume", "replies" [P]}.
    """
    _check_prompts(prompts, records)
    replies = list(generate(list(prompts), [lam] * len(prompts)))
    judged = _judged(judge, records, replies)
    means = {k: _mean(v) for k, v in judged.items()}
    point = (means.get(pair[0], float("nan")), means.get(pair[1], float("nan")))
    return {"means": means, "mean_words": sum(len(words(r)) for r in replies) / len(replies), "point": point,
            "hypervolume": hypervolume([point], ref), "replies": replies}


def pick_examples(sweep: dict, quantiles: Sequence[float] = (0.25, 0.5, 0.75)) -> list[int]:
    """Prompt indices at `quantiles` of the change in word count between the sweep's last and first
    weight (prompts sorted by that change, ties by index; the quantile q picks position
    round(q * (P - 1))). A rule, so examples are never hand-picked. Duplicates are kept out: a
    later quantile that lands on an index already taken moves to the next unused position."""
    change = [last - first for first, last in zip(sweep["words"][0], sweep["words"][-1])]
    order = sorted(range(len(change)), key=lambda i: (change[i], i))
    picked: list[int] = []
    for q in quantiles:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q} is outside [0, 1]")
        pos = round(q * (len(order) - 1))
        while order[pos] in picked and pos + 1 < len(order):
            pos += 1
        if order[pos] not in picked:
            picked.append(order[pos])
    return picked
