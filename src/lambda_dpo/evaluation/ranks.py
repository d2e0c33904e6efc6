"""Rank statistics in plain Python (no pandas or scipy): average ranks, Pearson's r, Spearman's rho.

- `average_ranks`: 1-based ranks with ties given the average of the ranks they span, missing
  values left unranked (pandas' ``Series.rank()``).
- `pearson` / `spearman`: correlations over the pairs where neither value is missing; Spearman's
  rho is Pearson's r of the average ranks (scipy.stats.spearmanr's value).
- `is_missing`: None or NaN, the missing value every function here skips.

The steering protocol (`protocol.steerability`) and the Delta summary (`delta.delta_summary`)
correlate with these.
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["average_ranks", "pearson", "spearman", "is_missing"]


def is_missing(x) -> bool:
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
    present = [i for i, v in enumerate(values) if not is_missing(v)]
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
    pairs = [(float(a), float(b)) for a, b in zip(x, y) if not is_missing(a) and not is_missing(b)]
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
    pairs = [(a, b) for a, b in zip(x, y) if not is_missing(a) and not is_missing(b)]
    return pearson(average_ranks([a for a, _ in pairs]), average_ranks([b for _, b in pairs]))
