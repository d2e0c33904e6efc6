"""The project's own listwise format (``PreferenceList.to_json`` writes it)::

    {"prompt": "What is 2+2?" | [{"role": "user", "content": "..."}, ...],
     "responses": ["4", "5", ...],                       # N >= 2; str, or assistant message(s)
     "ratings": {"helpfulness": [5, 1, ...],             # one per response; higher is better
                 "honesty": [5, null, ...]}}             # null / "N/A" = missing, never invented

Ratings may be numbers or numeric strings. An optional ``"truncated": [false, true, ...]``
marks replies that a length limit cut before their writer ended them (a sampler's
max_new_tokens); they are scored without the chat template's end-of-turn tokens (see
``tokenization.py``). `lambda-dpo build-data`'s per-response ``"meta"`` entries say the same with
``"hit_max_new_tokens"`` and are read as such. An optional ``"id"`` and other extra keys are
ignored. An aspect whose value is ``null`` as a whole is treated as not rated for that list
(Arrow fills absent struct fields with null when a file is converted to parquet).
"""

from __future__ import annotations

from typing import Any, Mapping

from ..fields import json_type, parse_prompt, parse_response, require
from ..schema import DataError, PreferenceList, make_list

ASPECTS = None  # any aspect names

def parse(record: Mapping, origin: str, aspects: tuple[str, ...] | None) -> PreferenceList:
    """One record as a `PreferenceList`; raises `DataError` naming the field and the fix."""
    fix_shape = 'give {"prompt": ..., "responses": [...], "ratings": {"aspect": [...]}}'
    prompt = parse_prompt(require(record, "prompt", origin, fix_shape), origin)
    raw_responses = require(record, "responses", origin, fix_shape)
    if not isinstance(raw_responses, (list, tuple)):
        raise DataError(origin, "responses", f"responses is a {json_type(raw_responses)}",
                        "give a list of 2 or more responses", "bad_responses_type")
    responses = [parse_response(r, origin, f"responses[{i}]") for i, r in enumerate(raw_responses)]
    ratings = require(record, "ratings", origin, fix_shape)
    if not isinstance(ratings, Mapping):
        raise DataError(origin, "ratings", f"ratings is a {json_type(ratings)}",
                        'give an object {"aspect": [one rating per response], ...}', "bad_ratings_type")
    ratings = {str(a): v for a, v in ratings.items() if v is not None}
    return make_list(prompt, responses, ratings, origin, known_aspects=aspects,
                     truncated=_truncated(record, len(responses), origin))


def _truncated(record: Mapping, n: int, origin: str) -> Any:
    """The record's per-response cut flags: its ``truncated`` list (checked in make_list), else the
    ``hit_max_new_tokens`` of `lambda-dpo build-data`'s per-response ``meta``; None when it has neither."""
    if record.get("truncated") is not None:
        return record["truncated"]
    meta = record.get("meta")
    if isinstance(meta, list) and any(isinstance(m, Mapping) and "hit_max_new_tokens" in m for m in meta):
        flags = [m.get("hit_max_new_tokens") if isinstance(m, Mapping) else None for m in meta]
        if len(flags) != n or not all(isinstance(f, bool) for f in flags):
            raise DataError(origin, "meta", f"hit_max_new_tokens is {flags!r}, not one true/false per response",
                            "give every meta entry a boolean hit_max_new_tokens, one entry per response", "bad_truncated")
        return flags
    return None
