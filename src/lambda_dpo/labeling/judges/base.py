"""What every judge is: aspects it rates, a description for provenance, and `rate` on a few lists.

`Judge.rate(lists, need)` gets lists (`RateInput`: the prompt messages, the N replies, the input
record) and, per list, which replies each aspect needs (`need[j][aspect]`: reply indices; a reply
already rated is not asked for). It returns one `Ratings` per list: for every aspect it rates, N
values where a needed one is a number, or None with a reason in `reasons` (a failed or unparseable
answer is missing and counted, never made up). Values it was not asked for are None without a reason.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

__all__ = ["RateInput", "Ratings", "Judge", "check_settings", "rating_value"]


@dataclass(frozen=True)
class RateInput:
    """One list a judge rates: the prompt messages, the replies, and the input record (with any extra fields)."""

    prompt: tuple[dict[str, str], ...]
    responses: tuple[str, ...]
    record: Mapping[str, Any]


@dataclass
class Ratings:
    """A judge's ratings of one list: aspect -> N values (None: not rated) and, for the missing ones it was asked
    for, aspect -> {reply index: reason}."""

    values: dict[str, list[float | None]]
    reasons: dict[str, dict[int, str]] = field(default_factory=dict)

    @classmethod
    def empty(cls, aspects: Sequence[str], n: int) -> "Ratings":
        return cls({a: [None] * n for a in aspects}, {a: {} for a in aspects})

    def missing(self, aspect: str, i: int, reason: str) -> None:
        self.values[aspect][i] = None
        self.reasons.setdefault(aspect, {})[i] = reason


class Judge:
    """Base of the judges: subclasses (dataclasses of their settings) have `type` and `aspects` and implement
    `describe`, `label` and `rate`."""

    type: str
    aspects: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        """The judge's settings, for the records' provenance and the datasheet (no secrets)."""
        raise NotImplementedError

    def label(self) -> str:
        """A short name for the judge, written with each aspect it rated."""
        raise NotImplementedError

    def rate(self, lists: Sequence[RateInput], need: Sequence[Mapping[str, Sequence[int]]]) -> list[Ratings]:
        raise NotImplementedError

    def close(self) -> None:
        """Free what the judge loaded (models); it loads again when used."""


def check_settings(cls, settings: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The settings of a judge dataclass `cls`, with unknown keys named and required ones asked for."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in settings:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else f" Known: {', '.join(sorted(fields))}."
            raise ValueError(f"{where}: unknown key {key!r}.{hint}")
    missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and n not in settings]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}. Fix: add them (docs/labeling.md, \"Judges\")")
    return dict(settings)


def rating_value(value: Any) -> tuple[float | None, str | None]:
    """A judge's answer for one reply as (rating, None), or (None, reason) when it is not a finite number."""
    if value is None:
        return None, "no_rating"
    if isinstance(value, (bool, str, bytes)):
        return None, "bad_value"
    if not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy and torch scalars
        except (TypeError, ValueError):
            return None, "bad_value"
    value = float(value)
    return (value, None) if math.isfinite(value) else (None, "non_finite")
