"""Means with 95% bootstrap intervals over seeds and prompts, and win rates of paired replies.

A figure measured per (seed, item) cell, `values` [S, P] (S training seeds, P prompts or lists
shared by every seed, NaN where not measured), varies with both the training seed and the items
drawn. `bootstrap_mean` resamples both: S seeds with replacement, then P items with replacement
(the same items for every seed drawn, as every seed saw the same items), and takes the nan-mean of
the resampled cells; the interval is the 2.5th and 97.5th percentile over resamples. With one seed
it is the ordinary bootstrap over items. With few seeds the seed part is coarse (3 seeds give 10
distinct resampled sets), and resampling both factors of a crossed design tends to widen the interval:
read it as a conservative 95% interval.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

__all__ = ["bootstrap_mean", "win_tie_loss"]


def bootstrap_mean(values: Sequence[Sequence[float]] | np.ndarray, *, resamples: int = 2000, seed: int = 0,
                   level: float = 0.95) -> dict[str, float]:
    """{"mean", "lo", "hi"} of `values` [S, P] (NaN = not measured), resampling seeds and items."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.size == 0:
        raise ValueError(f"bootstrap_mean needs a [seeds, items] array, got shape {v.shape}")
    if np.isnan(v).all():
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan")}
    rng = np.random.default_rng(seed)
    s, p = v.shape
    rows = rng.integers(0, s, size=(resamples, s))
    cols = rng.integers(0, p, size=(resamples, p))
    cells = v[rows[:, :, None], cols[:, None, :]]  # [R, S, P]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of only NaN cells
        means = np.nanmean(cells.reshape(resamples, -1), axis=1)
    means = means[~np.isnan(means)]
    if means.size == 0:  # every resample drew only missing cells
        return {"mean": float(np.nanmean(v)), "lo": float("nan"), "hi": float("nan")}
    tail = (1 - level) / 2 * 100
    return {"mean": float(np.nanmean(v)), "lo": float(np.percentile(means, tail)),
            "hi": float(np.percentile(means, 100 - tail))}


def win_tie_loss(scores: np.ndarray, against: np.ndarray, **bootstrap) -> dict[str, dict[str, float]]:
    """Shares of cells where `scores` [S, P] beats, ties or loses to `against` [S, P] (the same seed and
    prompt), each with its bootstrap interval; cells where either is NaN are left out."""
    a, b = np.asarray(scores, dtype=float), np.asarray(against, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"win_tie_loss needs equal shapes, got {a.shape} and {b.shape}")
    missing = np.isnan(a) | np.isnan(b)
    out = {}
    for name, hit in (("win", a > b), ("tie", a == b), ("loss", a < b)):
        out[name] = bootstrap_mean(np.where(missing, np.nan, hit.astype(float)), **bootstrap)
    return out
