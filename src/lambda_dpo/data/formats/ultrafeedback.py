"""openbmb/UltraFeedback: one record per prompt, its completions annotated per aspect::

    {"instruction": str,
     "completions": [{"response": str, "model": str,
                      "annotations": {"helpfulness": {"Rating": "4", "Rationale": "..."},
                                      "honesty": {...}, "instruction_following": {...},
                                      "truthfulness": {...}}}, ...]}

An aspect's annotation is a dict with "Rating" or a 1-element list of such dicts. "N/A"
gives None (a missing rating). An aspect missing from a completion's annotations is None for
that response. Lists with 2 or 3 completions are fine. Other keys are ignored.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..fields import json_type, parse_prompt, parse_response, require
from ..schema import DataError, PreferenceList, check_rating, make_list

ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")

def _annotation(value: Any, origin: str, fname: str) -> float | None:
    """One UltraFeedback aspect annotation -> its rating (None for "N/A" or nothing)."""
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            return None
        if len(value) > 1:
            raise DataError(origin, fname, f"{len(value)} annotations for one aspect",
                            'give one {"Rating": ...} per aspect', "bad_annotation")
        value, fname = value[0], f"{fname}[0]"
    if value is None or isinstance(value, (str, int, float)):
        return check_rating(value, origin, fname)
    if not isinstance(value, Mapping):
        raise DataError(origin, fname, f"annotation is a {json_type(value)}",
                        'give {"Rating": "1".."5" or "N/A", ...}', "bad_annotation")
    if "Rating" not in value:
        raise DataError(origin, f"{fname}.Rating", "missing", 'give {"Rating": "1".."5" or "N/A", ...}',
                        "missing_field")
    return check_rating(value["Rating"], origin, f"{fname}.Rating")


def parse(record: Mapping, origin: str, aspects: tuple[str, ...] | None) -> PreferenceList:
    """One record as a `PreferenceList`; raises `DataError` naming the field and the fix."""
    fix_shape = 'give {"instruction": ..., "completions": [{"response": ..., "annotations": {...}}, ...]}'
    prompt = parse_prompt(require(record, "instruction", origin, fix_shape), origin, "instruction")
    completions = require(record, "completions", origin, fix_shape)
    if not isinstance(completions, (list, tuple)):
        raise DataError(origin, "completions", f"completions is a {json_type(completions)}",
                        "give a list of completions", "bad_completion")
    responses: list[str] = []
    per_response: list[dict[str, float | None]] = []
    for i, c in enumerate(completions):
        fname = f"completions[{i}]"
        if not isinstance(c, Mapping):
            raise DataError(origin, fname, f"completion is a {json_type(c)}",
                            'give {"response": ..., "annotations": {...}}', "bad_completion")
        responses.append(parse_response(require(c, "response", origin, 'give {"response": "...", ...}'),
                                   origin, f"{fname}.response"))
        ann = c.get("annotations") or {}
        if not isinstance(ann, Mapping):
            raise DataError(origin, f"{fname}.annotations", f"annotations is a {json_type(ann)}",
                            'give {"helpfulness": {"Rating": ...}, ...}', "bad_annotation")
        per_response.append({str(a): _annotation(v, origin, f"{fname}.annotations.{a}")
                             for a, v in ann.items()
                             if aspects is None or a in aspects})
    if aspects is not None:
        names = list(aspects)
    else:  # the standard four in their usual order, then any others as first seen
        seen = {a: None for r in per_response for a in r}
        names = [a for a in ASPECTS if a in seen] + [a for a in seen if a not in ASPECTS]
    ratings = {a: [r.get(a) for r in per_response] for a in names}
    return make_list(prompt, responses, ratings, origin)
