"""nvidia/HelpSteer2: one row per (prompt, response)::

    {"prompt": str, "response": str, "helpfulness": 3, "correctness": 3, "coherence": 4,
     "complexity": 2, "verbosity": 1}

Rows with the same prompt text form one list (prompts and responses in first-seen order); the
list's origin is its first row's. HelpSteer2's multi-turn prompts, which separate turns with
``<extra_id_1>User`` / ``<extra_id_1>Assistant`` markers, become chat messages. A missing
aspect column gives None for that row.

`parse` checks one row; `group_list` turns the rows by prompt into `PreferenceList`s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from ..fields import json_type, parse_prompt, parse_response, require
from ..schema import DataError, Message, PreferenceList, check_rating, make_list

ASPECTS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


@dataclass
class Row:  # one HelpSteer2 row, checked
    key: str
    prompt: tuple[Message, ...]
    response: str
    ratings: dict[str, float | None]
    origin: str


@dataclass
class Group:  # HelpSteer2 rows sharing a prompt
    prompt: tuple[Message, ...]
    origin: str
    rows: list[Row] = field(default_factory=list)


_HS2_TURN = re.compile(r"\n?<extra_id_1>(User|Assistant)\n?")


def _turns(text: str) -> tuple[Message, ...]:
    """HelpSteer2 multi-turn prompts mark turns with "<extra_id_1>User" / "<extra_id_1>Assistant"."""
    parts = _HS2_TURN.split(text)
    msgs = [{"role": "user", "content": parts[0]}]
    for role, content in zip(parts[1::2], parts[2::2]):
        msgs.append({"role": role.lower(), "content": content})
    return tuple(msgs)


def parse(record: Mapping, origin: str, aspects: tuple[str, ...] | None) -> Row:
    """One row, checked; the loader groups rows by `Row.key` (the prompt text)."""
    fix_shape = 'give {"prompt": "...", "response": "...", "helpfulness": 0-4, ...}'
    text = require(record, "prompt", origin, fix_shape)
    if not isinstance(text, str):
        raise DataError(origin, "prompt", f"prompt is a {json_type(text)}", "give the prompt text as a "
                        "string (rows are grouped by it)", "bad_prompt_type")
    prompt = parse_prompt(text, origin)
    if "<extra_id_1>" in text:
        prompt = _turns(text)
    response = parse_response(require(record, "response", origin, fix_shape), origin, "response")
    names = aspects if aspects is not None else ASPECTS
    ratings = {a: check_rating(record.get(a), origin, a) for a in names}
    return Row(text, prompt, response, ratings, origin)


def group_list(group: Group, aspects: tuple[str, ...] | None) -> PreferenceList:
    """The rows that share a prompt as one list; fewer than 2 rows is ``too_few_responses``."""
    names = aspects if aspects is not None else ASPECTS
    ratings = {a: [row.ratings[a] for row in group.rows] for a in names}
    try:
        return make_list(group.prompt, [row.response for row in group.rows], ratings, group.origin)
    except DataError as err:
        if err.reason != "too_few_responses":
            raise
        raise DataError(group.origin, "prompt", f"only {len(group.rows)} usable row has this prompt; rows "
                        "with the same prompt text form one list, which needs 2 or more responses",
                        "add rows with other responses to this prompt, or skip it (skip_bad)",
                        "too_few_responses") from None
