"""Rating scales: ratings in any units brought to a scale the rating temperature suits, and a check
that the targets are not nearly one-hot.

The targets are p_k = softmax(r[:, k] / tau) with tau (`rating_temperature`) in rating units
(`targets.py`), so the same tau that suits 1-5 ratings makes 0-100 ratings or a reward model's
unbounded scores one-hot: every list then only says which reply is best. `rating_scale` (config,
one value for every aspect or a mapping {aspect: value}; values in `RATING_SCALES`) rewrites each
aspect's ratings before any target is built:

- `as_is`: unchanged (the default).
- `minmax`: linearly to 1-5 over the training data, r' = 1 + 4 (r - min) / (max - min) with the
  aspect's min and max over every rating of the training lists (3 when they are equal).
- `zscore`: r' = (r - mean) / std with the aspect's mean and (population) standard deviation over
  the training lists (0 when the std is 0), so tau is in standard deviations.
- `rank`: within each list, a rating becomes its rank among the list's ratings of that aspect,
  1 = worst, ties sharing the average of their ranks; no data-wide statistics.

A missing rating (None) stays missing. The statistics are fitted once, on the training lists
(`fit_rating_scales`), and applied unchanged to every other list (`apply_rating_scales`): the eval
lists, and the lists `lambda-dpo evaluate` reads for a saved model (lambda_dpo.json keeps them), so
an eval rating outside the training range maps outside 1-5. The fitted form, saved with the model,
is JSON: ``{aspect: {"scale": "minmax", "min": 0.0, "max": 100.0}}``, ``{"scale": "zscore", "mean":
..., "std": ...}``, ``{"scale": "rank"}`` or ``{"scale": "as_is"}``.

`one_hot_shares` measures, per aspect, the share of lists whose target at a given tau puts more
than `ONE_HOT_MASS` on the best-rated reply (on the best-rated replies together, where several tie
for best: the target is then as degenerate, it says nothing of how the others compare), among the
lists where every reply is rated on the aspect and the ratings are not all equal (an all-equal list
has a uniform target at any tau: no information to lose). `one_hot_warnings` words a warning for
each aspect where that share exceeds `ONE_HOT_SHARE`, with the fix. The demo's training data at tau
0.5: 14 % (instruction_following), 33 % (correctness), 26 % (conciseness), 8 % (informativeness),
no warning; the same ratings on 0-100 (25 (r - 1)): 100 % for every aspect.

Pure functions on `PreferenceList`s (layer 1, beside `targets`): nothing here reads a model.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping, Sequence

from .data.schema import PreferenceList

__all__ = ["RATING_SCALES", "DEFAULT_RATING_TEMPERATURE", "ONE_HOT_MASS", "ONE_HOT_SHARE", "parse_rating_scale",
           "fit_rating_scales", "apply_rating_scales", "describe_rating_scales", "one_hot_shares",
           "one_hot_warnings", "targets_summary", "format_targets"]

RATING_SCALES = ("as_is", "minmax", "zscore", "rank")
DEFAULT_RATING_TEMPERATURE = 0.5  # training's rating_temperature default, and validate-data's
ONE_HOT_MASS = 0.99  # a target is nearly one-hot when the best-rated reply (or replies) gets more than this
ONE_HOT_SHARE = 0.5  # warn when more than this share of an aspect's lists have nearly one-hot targets

RatingScale = str | Mapping[str, str]


def parse_rating_scale(value: Any, where: str = "config: rating_scale") -> RatingScale:
    """`value` checked and normalised: one name of RATING_SCALES (for every aspect), or {aspect: name}.

    Accepts a mapping, a name, or "a=minmax,b=rank" (aspects not named stay `as_is`); None is `as_is`.
    Raises ValueError naming `where` and the allowed values.
    """
    if value is None:
        return "as_is"
    if isinstance(value, str) and "=" in value:
        pairs = [p.partition("=") for p in value.split(",") if p.strip()]
        value = {a.strip(): v.strip() for a, _, v in pairs}
    if isinstance(value, str):
        value = value.strip()
        if value not in RATING_SCALES:
            raise ValueError(f"{where}={value!r} is not one of {', '.join(RATING_SCALES)} "
                             "(or a mapping {aspect: one of them})")
        return value
    if isinstance(value, Mapping):
        bad = {a: v for a, v in value.items() if v not in RATING_SCALES}
        if bad or not value:
            raise ValueError(f"{where}={dict(value)!r}: each aspect's scale must be one of {', '.join(RATING_SCALES)}"
                             + (f" (got {bad})" if bad else " (the mapping is empty)"))
        return {str(a): str(v) for a, v in value.items()}
    raise ValueError(f"{where}={value!r} must be one of {', '.join(RATING_SCALES)} or a mapping {{aspect: scale}}")


def _per_aspect(spec: RatingScale, aspects: Sequence[str]) -> dict[str, str]:
    spec = parse_rating_scale(spec)
    if isinstance(spec, str):
        return {a: spec for a in aspects}
    unknown = [a for a in spec if a not in aspects]
    if unknown:
        raise ValueError(f"rating_scale names aspect(s) {unknown} that are not trained on "
                         f"(the aspects: {', '.join(aspects)})")
    return {a: spec.get(a, "as_is") for a in aspects}


def fit_rating_scales(lists: Sequence[PreferenceList], spec: RatingScale,
                      aspects: Sequence[str]) -> dict[str, dict]:
    """Each aspect's scale and its statistics over every rating of `lists` (the training lists)."""
    fitted = {}
    for aspect, scale in _per_aspect(spec, aspects).items():
        values = [v for lst in lists for v in lst.ratings.get(aspect, ()) if v is not None]
        if scale in ("minmax", "zscore") and not values:
            raise ValueError(f"rating_scale: {scale} for aspect {aspect!r} needs its ratings in the training "
                             "lists, and none rates it")
        if scale == "minmax":
            fitted[aspect] = {"scale": scale, "min": min(values), "max": max(values)}
        elif scale == "zscore":
            mean = math.fsum(values) / len(values)
            std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
            fitted[aspect] = {"scale": scale, "mean": mean, "std": std}
        else:
            fitted[aspect] = {"scale": scale}
    return fitted


def _ranks(values: Sequence[float | None]) -> list[float | None]:
    """Rank among the present values, 1 = lowest, ties the average of their ranks; None stays None."""
    present = sorted(v for v in values if v is not None)
    first: dict[float, int] = {}
    count: dict[float, int] = {}
    for i, v in enumerate(present, 1):
        first.setdefault(v, i)
        count[v] = count.get(v, 0) + 1
    return [None if v is None else first[v] + (count[v] - 1) / 2 for v in values]


def _transform(values: Sequence[float | None], fit: Mapping) -> tuple[float | None, ...]:
    scale = fit["scale"]
    if scale == "rank":
        return tuple(_ranks(values))
    if scale == "minmax":
        lo, span = fit["min"], fit["max"] - fit["min"]
        f = (lambda v: 1.0 + 4.0 * (v - lo) / span) if span > 0 else (lambda v: 3.0)
    elif scale == "zscore":
        mean, std = fit["mean"], fit["std"]
        f = (lambda v: (v - mean) / std) if std > 0 else (lambda v: 0.0)
    elif scale == "as_is":
        return tuple(values)
    else:
        raise ValueError(f"rating scale {scale!r} is not one of {', '.join(RATING_SCALES)}")
    return tuple(None if v is None else f(v) for v in values)


def apply_rating_scales(lists: Sequence[PreferenceList], fitted: Mapping[str, Mapping]) -> list[PreferenceList]:
    """`lists` with each aspect's ratings rewritten by its fitted scale (aspects not in `fitted` unchanged)."""
    if all(f["scale"] == "as_is" for f in fitted.values()):
        return list(lists)
    return [replace(lst, ratings={a: _transform(r, fitted[a]) if a in fitted else r for a, r in lst.ratings.items()})
            for lst in lists]


def describe_rating_scales(fitted: Mapping[str, Mapping]) -> str:
    """One line per scaled aspect, e.g. 'helpfulness: minmax, 0..100 -> 1..5'; '' when all are as_is."""
    lines = []
    for aspect, f in fitted.items():
        if f["scale"] == "minmax":
            lines.append(f"{aspect}: minmax, {f['min']:g}..{f['max']:g} -> 1..5")
        elif f["scale"] == "zscore":
            lines.append(f"{aspect}: zscore, (r - {f['mean']:.4g}) / {f['std']:.4g}")
        elif f["scale"] == "rank":
            lines.append(f"{aspect}: rank within each list (1 = worst)")
    return "\n".join(lines)


def _top_mass(ratings: Sequence[float], tau: float) -> float:
    """The target's mass on the best-rated reply, or on the replies tied for best together."""
    top = max(ratings)
    return sum(r == top for r in ratings) / math.fsum(math.exp((r - top) / tau) for r in ratings)


def _informative(ratings: Sequence[float | None] | None) -> bool:
    """Every reply rated, and not all alike (an all-equal list has a uniform target at any tau)."""
    return bool(ratings) and all(r is not None for r in ratings) and min(ratings) < max(ratings)


def one_hot_shares(lists: Sequence[PreferenceList], tau: float) -> dict[str, dict]:
    """Per aspect: {"lists": n, "nearly_one_hot": m, "share": m / n, "all_tied": t, "min": lowest rating,
    "max": highest}. n counts the lists where every reply is rated on the aspect and the ratings are not all
    equal, m those of them whose target softmax(r / tau) puts more than ONE_HOT_MASS on the best-rated
    reply (the tied best replies together), t the lists rated on it whose ratings are all equal."""
    if not tau > 0:
        raise ValueError(f"rating_temperature must be > 0, got {tau}")
    out: dict[str, dict] = {}
    for lst in lists:
        for aspect, ratings in lst.ratings.items():
            a = out.setdefault(aspect, {"lists": 0, "nearly_one_hot": 0, "share": 0.0, "all_tied": 0,
                                        "min": None, "max": None})
            if not ratings or any(r is None for r in ratings):
                continue
            a["min"] = min(ratings) if a["min"] is None else min(a["min"], *ratings)
            a["max"] = max(ratings) if a["max"] is None else max(a["max"], *ratings)
            if not _informative(ratings):
                a["all_tied"] += 1
                continue
            a["lists"] += 1
            a["nearly_one_hot"] += _top_mass(ratings, tau) > ONE_HOT_MASS
    for a in out.values():
        a["share"] = a["nearly_one_hot"] / a["lists"] if a["lists"] else 0.0
    return out


def _tau_that_fits(lists: Sequence[PreferenceList], aspect: str, tau: float) -> tuple[float, float] | None:
    """The first of 2 tau, 4 tau, ... (up to 2^30 tau) at which `aspect` no longer warns, and its share."""
    rated = [lst.ratings[aspect] for lst in lists if _informative(lst.ratings.get(aspect))]
    for doublings in range(1, 31):
        t = tau * 2 ** doublings
        share = sum(_top_mass(r, t) > ONE_HOT_MASS for r in rated) / len(rated)
        if share <= ONE_HOT_SHARE:
            return t, share
    return None


def one_hot_warnings(lists: Sequence[PreferenceList], tau: float,
                     shares: Mapping[str, Mapping] | None = None) -> list[str]:
    """One message per aspect whose lists' targets are nearly one-hot in more than ONE_HOT_SHARE of them
    at rating temperature `tau` (shares: `one_hot_shares(lists, tau)`, computed when not given)."""
    shares = one_hot_shares(lists, tau) if shares is None else shares
    messages = []
    for aspect, s in shares.items():
        if not s["lists"] or s["share"] <= ONE_HOT_SHARE:
            continue
        fits = _tau_that_fits(lists, aspect, tau)
        larger = (f"a larger `rating_temperature` (at {fits[0]:g}, {fits[1]:.0%} of its lists stay nearly one-hot)"
                  if fits else "a much larger `rating_temperature`")
        messages.append(
            f"aspect {aspect!r}: {s['share']:.0%} of its lists ({s['nearly_one_hot']}/{s['lists']} with unequal "
            f"ratings) have a nearly one-hot target at rating_temperature {tau:g} (softmax(ratings / tau) puts more "
            f"than {ONE_HOT_MASS:g} on the best-rated reply; its ratings span {s['min']:g}..{s['max']:g}), so training "
            f"learns only which reply is best, not how the others compare. Fix: `rating_scale: minmax` (each aspect "
            f"to 1-5 over the training data) or {larger}.")
    return messages


def targets_summary(lists: Sequence[PreferenceList], tau: float, scale: RatingScale = "as_is") -> dict:
    """What `lambda-dpo validate-data` adds to its summary: {"rating_temperature": tau, "rating_scale": scale,
    "nearly_one_hot": `one_hot_shares`, "warnings": `one_hot_warnings`} for `lists` (already rescaled)."""
    shares = one_hot_shares(lists, tau)
    return {"rating_temperature": tau, "rating_scale": scale, "nearly_one_hot": shares,
            "warnings": one_hot_warnings(lists, tau, shares)}


def format_targets(summary: Mapping) -> str:
    """A few readable lines of a `targets_summary` result, for the terminal."""
    shares = summary["nearly_one_hot"]
    scale = summary["rating_scale"]
    scale = scale if isinstance(scale, str) else ", ".join(f"{a}={v}" for a, v in scale.items())
    lines = [f"targets at rating_temperature {summary['rating_temperature']:g} (rating_scale: {scale}): nearly one-hot "
             f"(more than {ONE_HOT_MASS:g} on the best-rated reply) in"]
    if shares:
        width = max(map(len, shares))
        lines += [f"  {a:<{width}}  {s['share']:.0%} of the lists with unequal ratings ({s['nearly_one_hot']}/"
                  f"{s['lists']}; {s['all_tied']} lists all equal)" for a, s in shares.items()]
    lines += [f"WARNING: {m}" for m in summary["warnings"]]
    return "\n".join(lines)
