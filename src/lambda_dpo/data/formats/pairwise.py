"""TRL's preference format, each row a list of 2 = (chosen, rejected) with the one aspect
``"preference"`` rated ``[1.0, 0.0]`` (a one-hot target: DPO as the N = 2 case)::

    {"prompt": str, "chosen": str, "rejected": str}                                # standard
    {"prompt": [messages], "chosen": [messages], "rejected": [messages]}           # conversational
    {"chosen": [messages], "rejected": [messages]}                                 # implicit prompt

In the implicit-prompt form the common leading messages are the prompt and the final
assistant message of each conversation is the response.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..fields import json_type, parse_messages, parse_prompt, parse_response, require
from ..schema import DataError, Message, PreferenceList, make_list

ASPECT = "preference"
ASPECTS = (ASPECT,)

def parse(record: Mapping, origin: str, aspects: tuple[str, ...] | None) -> PreferenceList:
    """One record as a `PreferenceList`; raises `DataError` naming the field and the fix."""
    fix_shape = 'give {"prompt": ..., "chosen": ..., "rejected": ...}'
    chosen = require(record, "chosen", origin, fix_shape)
    rejected = require(record, "rejected", origin, fix_shape)
    if record.get("prompt") is not None:
        prompt = parse_prompt(record["prompt"], origin)
        responses = [parse_response(chosen, origin, "chosen"), parse_response(rejected, origin, "rejected")]
    else:
        prompt, responses = _split_implicit_prompt(chosen, rejected, origin)
    return make_list(prompt, responses, {ASPECT: [1.0, 0.0]}, origin)


def _split_implicit_prompt(chosen: Any, rejected: Any, origin: str) -> tuple[tuple[Message, ...], list[str]]:
    """TRL's implicit prompt: the messages chosen and rejected share are the prompt."""
    for name, conv in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(conv, (list, tuple)):
            raise DataError(origin, "prompt", f"missing, and {name} is a {json_type(conv)}, not a conversation",
                            "add a prompt, or give chosen and rejected as full conversations "
                            "(lists of messages) that share the prompt", "missing_field")
    c, r = parse_messages(chosen, origin, "chosen"), parse_messages(rejected, origin, "rejected")
    k = 0
    while k < min(len(c), len(r)) and c[k] == r[k]:
        k += 1
    if k == 0:
        raise DataError(origin, "prompt", "missing, and chosen and rejected share no leading messages",
                        "add a prompt, or start both conversations with the same prompt messages",
                        "missing_field")
    responses = []
    for name, conv in (("chosen", c), ("rejected", r)):
        rest = conv[k:]
        if not rest:
            raise DataError(origin, name, "nothing follows the prompt shared with the other conversation",
                            "make chosen and rejected end in different assistant replies",
                            "identical_responses")
        if len(rest) != 1 or rest[0]["role"] != "assistant":
            raise DataError(origin, name, f"after the shared prompt come {len(rest)} message(s), not one "
                            "assistant reply", "make each conversation the shared prompt plus one final "
                            "assistant message", "bad_response_type")
        responses.append(rest[0]["content"])
    return parse_prompt(c[:k], origin), responses

