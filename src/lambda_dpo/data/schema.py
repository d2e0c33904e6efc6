"""The one in-memory type every loader produces, and the errors and report they share.

A `PreferenceList` is one prompt with N >= 2 candidate responses, each rated on zero or more
aspects. A rating is a float, or None where the source gave none: a missing rating is never
replaced by an invented value (see `targets.py` for how missing ratings are handled).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

Message = Mapping[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class PreferenceList:
    """One prompt, N responses, ratings per aspect.

    Attributes:
        prompt: the conversation up to (not including) the assistant's reply, as chat messages;
            it may start with a system message. Plain-string prompts become one user message.
        responses: the N assistant replies, as plain text. N >= 2.
        ratings: aspect name -> N ratings (same order as `responses`); None marks a missing one.
            Higher is better. Units are the source's (UltraFeedback 1-5, HelpSteer2 0-4).
        origin: where the record came from, "path:line" or "path:row N"; used in messages.
        truncated: N flags, True where the response was cut by a length limit before its writer
            ended it (a sampler's max_new_tokens); empty when the source says nothing (no response
            is then taken as cut). Tokenisation scores a cut reply without the chat template's
            end-of-turn tokens, which its writer never produced (`tokenization.py`).
    """

    prompt: tuple[Message, ...]
    responses: tuple[str, ...]
    ratings: Mapping[str, tuple[float | None, ...]]
    origin: str = "<memory>"
    truncated: tuple[bool, ...] = ()

    def __post_init__(self):
        if self.truncated and len(self.truncated) != len(self.responses):
            raise ValueError(f"{self.origin}: {len(self.truncated)} truncated flags for {len(self.responses)} responses")

    def is_truncated(self, i: int) -> bool:
        """Whether response i was cut before its end (False when the source does not say)."""
        return bool(self.truncated) and self.truncated[i]

    @property
    def n(self) -> int:
        return len(self.responses)

    @property
    def aspects(self) -> tuple[str, ...]:
        return tuple(self.ratings)

    def usable_aspects(self) -> tuple[str, ...]:
        """Aspects rated for every response of this list (the only ones a target can use)."""
        return tuple(a for a, r in self.ratings.items() if all(v is not None for v in r))

    def to_json(self) -> dict:
        """The native listwise JSONL record for this list (see README "Data formats")."""
        record = {
            "prompt": [dict(m) for m in self.prompt],
            "responses": list(self.responses),
            "ratings": {a: list(r) for a, r in self.ratings.items()},
        }
        if any(self.truncated):
            record["truncated"] = list(self.truncated)
        return record


def select_aspects(lists: Sequence[PreferenceList], aspects: Sequence[str], source: str = "data"
                   ) -> tuple[list[PreferenceList], tuple[str, ...], int]:
    """Keep only `aspects` in every list's ratings (a user may steer a subset of what the data rates).

    Returns (lists, ignored, dropped): the restricted lists, the data's aspects that were not
    selected, and how many lists were dropped because none of the selected aspects is rated for all
    their responses. Raises ValueError when a selected aspect is rated in no list (a typo, usually).
    """
    present = dict.fromkeys(a for lst in lists for a in lst.aspects)
    missing = [a for a in aspects if a not in present]
    if missing:
        raise ValueError(f"{source}: no list rates aspect(s) {missing}; the data rates: {', '.join(present)}. "
                         "Fix `aspects` in the config.")
    ignored = tuple(a for a in present if a not in aspects)
    kept = [replace(lst, ratings={a: r for a, r in lst.ratings.items() if a in aspects}) for lst in lists]
    usable = [lst for lst in kept if lst.usable_aspects()]
    return usable, ignored, len(kept) - len(usable)


class DataError(ValueError):
    """A record that cannot be used, with where it is, which field, what is wrong, and the fix.

    str(err) reads "path:line: field 'ratings.helpfulness': <problem>. Fix: <fix>".
    `reason` is a short stable key used to count rejections when skipping bad records.
    """

    def __init__(self, origin: str, field: str, problem: str, fix: str, reason: str):
        self.origin, self.field, self.problem, self.fix, self.reason = origin, field, problem, fix, reason
        where = f"{origin}: field '{field}'" if field else origin
        message = f"{where}: {problem}. Fix: {fix}"
        super().__init__(message.encode("utf-8", "backslashreplace").decode("utf-8"))  # printable, even for \ud800


class RejectionCounts:
    """Counting rejected records, shared by the reports that do it (`LoadReport`, the tokeniser's
    `TruncationReport`): each declares `rejected: Counter` (reason -> count) and `examples`
    (reason -> the first full message)."""

    rejected: Counter
    examples: dict[str, str]

    def reject(self, err: DataError) -> None:
        self.rejected[err.reason] += 1
        self.examples.setdefault(err.reason, str(err))

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())


@dataclass
class LoadReport(RejectionCounts):
    """What a load produced and what it rejected, by reason (nothing is dropped silently)."""

    source: str
    format: str
    records_read: int = 0
    lists: int = 0
    rejected: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # reason -> first full message


def check_rating(value: object, origin: str, field_name: str) -> float | None:
    """Validate one rating: a finite number, None, or a numeric string ("4", "N/A" -> None)."""
    if value is None:
        return None
    if isinstance(value, str):
        s = value.strip()
        if s.upper() in {"N/A", "NA", "NONE", "NULL", ""}:
            return None
        try:
            value = float(s)
        except ValueError:
            raise DataError(origin, field_name, f"rating {value!r} is not a number",
                            "use a number, null, or \"N/A\" for a missing rating", "bad_rating_type") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(origin, field_name, f"rating {value!r} has type {type(value).__name__}",
                        "use a number, or null for a missing rating", "bad_rating_type")
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float range
        value = math.inf
    if not math.isfinite(value):
        raise DataError(origin, field_name, f"rating is {value}", "use a finite number, or null for a missing rating",
                        "non_finite_rating")
    return value


def make_list(
    prompt: Sequence[Message],
    responses: Sequence[str],
    ratings: Mapping[str, Sequence[float | None]],
    origin: str,
    known_aspects: Sequence[str] | None = None,
    truncated: Sequence[bool] | None = None,
) -> PreferenceList:
    """Build a PreferenceList after the checks every format shares; raises DataError.

    Checks: N >= 2, no empty response, each rating list has length N and holds finite numbers
    or None, aspects are among `known_aspects` when given, at least one aspect is rated for
    every response (otherwise no target can be built for the list), and `truncated`, when given,
    holds N booleans.
    """
    if len(responses) < 2:
        raise DataError(origin, "responses", f"{len(responses)} response(s); a list needs at least 2",
                        "give 2 or more responses per prompt", "too_few_responses")
    for i, r in enumerate(responses):
        if not isinstance(r, str):
            raise DataError(origin, f"responses[{i}]", f"response has type {type(r).__name__}",
                            "give each response as a string", "bad_response_type")
        if not r.strip():
            raise DataError(origin, f"responses[{i}]", "response is empty", "remove the empty response or fill it",
                            "empty_response")
    texts = [(f"prompt[{i}].content", m["content"]) for i, m in enumerate(prompt)]
    for fname, text in [*texts, *((f"responses[{i}]", r) for i, r in enumerate(responses)),
                        *((f"ratings.{a}", a) for a in ratings)]:
        try:
            str(text).encode("utf-8")
        except UnicodeEncodeError as exc:  # JSON escapes like \ud800 decode to lone surrogates
            raise DataError(origin, fname, f"text holds a lone surrogate ({exc.object[exc.start]!r}), which is not "
                            "valid Unicode", "fix the \\uXXXX escape (surrogates come in pairs) or remove it",
                            "bad_encoding") from None
    clean: dict[str, tuple[float | None, ...]] = {}
    for aspect, values in ratings.items():
        fname = f"ratings.{aspect}"
        if known_aspects is not None and aspect not in known_aspects:
            raise DataError(origin, fname, f"unknown aspect {aspect!r} (known: {', '.join(known_aspects)})",
                            "add it to `aspects` in the config, or drop it from the data", "unknown_aspect")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise DataError(origin, fname, f"ratings have type {type(values).__name__}",
                            f"give a list of {len(responses)} numbers (null for missing)", "bad_ratings_type")
        if len(values) != len(responses):
            raise DataError(origin, fname, f"{len(values)} ratings for {len(responses)} responses",
                            "give exactly one rating (or null) per response, in response order", "ratings_length")
        clean[aspect] = tuple(check_rating(v, origin, f"{fname}[{i}]") for i, v in enumerate(values))
    if truncated is not None and (isinstance(truncated, (str, bytes)) or not isinstance(truncated, Sequence)
                                  or len(truncated) != len(responses) or not all(isinstance(t, bool) for t in truncated)):
        raise DataError(origin, "truncated", f"{truncated!r} is not {len(responses)} booleans",
                        "give one true/false per response, in response order (true: the reply was cut by a length "
                        "limit), or leave the field out", "bad_truncated")
    lst = PreferenceList(tuple(prompt), tuple(responses), clean, origin, tuple(truncated or ()))
    if not lst.usable_aspects():
        raise DataError(origin, "ratings", "no aspect is rated for every response, so no target can be built",
                        "rate every response on at least one aspect", "no_usable_aspect")
    return lst
