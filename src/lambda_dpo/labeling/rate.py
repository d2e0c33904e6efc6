"""Rate lists with the judges, keeping the ratings they already have.

For each judge and each aspect it rates, a reply is asked for only where its rating is missing (all
of them when ``keep_ratings`` is off). The result per list: the ratings, judged aspects first in the
config's order, then the record's other aspects as given, and per aspect where its ratings came from
(`Judged.provenance`: the judge, how many were kept, how many judged, and the missing ones by reason).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

from .judges import Judge, RateInput

__all__ = ["Judged", "judge_lists"]


@dataclass
class Judged:
    """One list's ratings (aspect -> one per reply, None: missing) and where they came from, per aspect."""

    ratings: dict[str, list[float | None]]
    provenance: dict[str, dict]


def _need(judge: Judge, current: Mapping[str, list], n: int, keep: bool) -> dict[str, list[int]]:
    out = {}
    for aspect in judge.aspects:
        have = current.get(aspect) if keep else None
        out[aspect] = [i for i in range(n) if have is None or have[i] is None]
    return out


def judge_lists(lists: Sequence[RateInput], given: Sequence[Mapping[str, Sequence[float | None]]],
                judges: Sequence[Judge], keep_ratings: bool = True) -> list[Judged]:
    """Each list rated by every judge on what it lacks; `given[j]` holds list j's ratings so far."""
    current = [{a: list(r) for a, r in g.items()} for g in given]
    provenance: list[dict[str, dict]] = [{} for _ in lists]
    for judge in judges:
        need = [_need(judge, current[j], len(x.responses), keep_ratings) for j, x in enumerate(lists)]
        todo = [j for j in range(len(lists)) if any(need[j].values())]
        results = dict(zip(todo, judge.rate([lists[j] for j in todo], [need[j] for j in todo]) if todo else []))
        for j, x in enumerate(lists):
            n = len(x.responses)
            for aspect in judge.aspects:
                wanted = need[j][aspect]
                values = list(current[j][aspect]) if keep_ratings and aspect in current[j] else [None] * n
                missing: Counter = Counter()
                for i in wanted:
                    got = results[j].values[aspect][i] if j in results else None
                    values[i] = got
                    if got is None:
                        missing[results[j].reasons.get(aspect, {}).get(i, "no_rating") if j in results
                                else "no_rating"] += 1
                current[j][aspect] = values
                provenance[j][aspect] = {"judge": judge.label(), "kept": n - len(wanted),
                                         "judged": len(wanted) - sum(missing.values()), "missing": dict(missing)}
    judged_aspects = [a for judge in judges for a in judge.aspects]
    out = []
    for j in range(len(lists)):
        order = judged_aspects + [a for a in current[j] if a not in judged_aspects]
        for aspect in order[len(judged_aspects):]:
            provenance[j][aspect] = {"judge": "input", "kept": sum(v is not None for v in current[j][aspect]),
                                     "judged": 0, "missing": {}}
        out.append(Judged({a: current[j][a] for a in order}, {a: provenance[j][a] for a in order}))
    return out
