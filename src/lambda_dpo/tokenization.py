"""Validated lists -> token ids, through the tokenizer's own chat template.

A response's ids are taken as the tail of the templated conversation (prompt + that reply)
after the templated prompt, so they include the template's end-of-turn tokens (except for a
reply the data marks as cut: below) and do not depend on the system message: the same response
ids serve the unconditioned prompt (reference) and every lambda-conditioned prompt (policy).

Truncation (counted, never silent), `truncation="cut"` (the default):
- prompt: the last user message's text loses tokens from its start until the templated
  prompt fits `max_prompt_length` (the system message, where lambda goes, is never cut);
- response: the reply keeps its first `max_response_length` tokens;
- a prompt that cannot be made to fit, or a response cut to nothing, rejects the list.
With `truncation="reject"` nothing is cut: a list whose prompt or any response is over its limit
is rejected (reasons `prompt_too_long`, `response_too_long`).

Replies the data marks as truncated (`PreferenceList.truncated`: a sampler's token budget cut them
mid-text) are scored without the template's end-of-turn tokens: their writer never ended the turn
there, and scoring an invented end of turn asks the model how likely it is to stop mid-sentence
(about -22 nats for SmolLM2 on the demo data), a large term that marks exactly the longest replies.
`score_cut_ends=True` scores them as complete turns (the behaviour before the marks were read).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from transformers import PreTrainedTokenizerBase

from .data.schema import DataError, Message, PreferenceList, RejectionCounts

TRUNCATIONS = ("cut", "reject")  # what happens to a list over the length limits (module docstring)


@dataclass(frozen=True)
class TokenizedList:
    """A PreferenceList with token ids for its unconditioned prompt and each response.

    prompt_ids: the templated prompt ending with the generation prompt, [P] ints.
    response_ids: N sequences of ints, each the reply plus end-of-turn tokens (the reply alone when
        the data marks it as cut and `score_cut_ends` is off).
    prompt: the (possibly truncated) prompt messages, for re-templating under conditioning.
    """

    source: PreferenceList
    prompt: tuple[Message, ...]
    prompt_ids: tuple[int, ...]
    response_ids: tuple[tuple[int, ...], ...]


@dataclass
class TruncationReport(RejectionCounts):
    prompts_truncated: int = 0
    responses_truncated: int = 0
    open_ends: int = 0  # replies the data marks as cut, scored without end-of-turn tokens
    rejected: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)


def encode_prompt(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> list[int]:
    """The templated prompt with the assistant generation prompt, as ids."""
    return list(tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True,
                                              return_dict=False))


class ReplyNotFound(ValueError):
    """A reply marked as cut whose text the chat template does not reproduce (see `_encode_response`)."""


def _encode_response(tokenizer, messages: Sequence[Message], prompt_ids: list[int], response: str,
                     open_end: bool = False) -> list[int]:
    """The reply's ids after `prompt_ids`: with the template's end-of-turn tokens, or without them
    when `open_end` (a reply cut before its end, whose writer never produced an end of turn)."""
    conversation = [*messages, {"role": "assistant", "content": response}]
    full = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=False)
    if list(full[: len(prompt_ids)]) != prompt_ids:
        raise ValueError("the chat template renders the prompt differently when a reply follows it; "
                         "lambda-dpo needs a template whose prompt is a prefix of the full conversation")
    if not open_end:
        return list(full[len(prompt_ids):])
    # the text up to the reply's last character, tokenised as apply_chat_template tokenises the whole
    # (usually the full ids minus the end of turn; where the end-of-turn marker is plain text, the
    # reply's last token may differ from the merged one in `full`). The reply is looked for right
    # after the templated prompt, never in the prompt or in the end-of-turn text.
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    start = len(tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False))
    ids = []
    for reply in (response, response.strip()):  # templates that trim the reply (`| trim`) drop its edges
        at = text.find(reply, start)
        if reply and at >= 0 and not text[start:at].strip():
            ids = tokenizer(text[: at + len(reply)], add_special_tokens=False)["input_ids"]
            break
    if len(ids) <= len(prompt_ids) or list(ids[: len(prompt_ids)]) != prompt_ids:
        raise ReplyNotFound("the chat template does not write the reply as it is given (it rewrites it), so its "
                            "end cannot be found to score the reply without an end of turn")
    return ids[len(prompt_ids):]


def _fit_prompt(tokenizer, messages: list[dict], max_len: int, origin: str, truncation: str = "cut"
                ) -> tuple[list[dict], list[int], bool]:
    ids = encode_prompt(tokenizer, messages)
    if len(ids) <= max_len:
        return messages, ids, False
    if truncation == "reject":
        raise DataError(origin, "prompt", f"the templated prompt has {len(ids)} tokens, over max_prompt_length="
                        f"{max_len} (truncation=reject)", "raise max_prompt_length, shorten the prompt, or set "
                        "truncation=cut", "prompt_too_long")
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is not None:
        content_ids = tokenizer(messages[last_user]["content"], add_special_tokens=False)["input_ids"]
        overflow = len(ids) - max_len
        while overflow < len(content_ids):
            cut = dict(messages[last_user], content=tokenizer.decode(content_ids[overflow:]))
            trial = [*messages[:last_user], cut, *messages[last_user + 1:]]
            ids = encode_prompt(tokenizer, trial)
            if len(ids) <= max_len:
                return trial, ids, True
            overflow += max(1, len(ids) - max_len)
    raise DataError(origin, "prompt", f"the templated prompt has {len(encode_prompt(tokenizer, messages))} tokens "
                    f"and cannot be cut to max_prompt_length={max_len} without removing the whole request",
                    "raise max_prompt_length or shorten the system/earlier messages", "prompt_too_long")


def tokenize_list(tokenizer: PreTrainedTokenizerBase, lst: PreferenceList, max_prompt_length: int,
                  max_response_length: int, report: TruncationReport | None = None,
                  truncation: str = "cut", score_cut_ends: bool = False) -> TokenizedList:
    """Tokenise one list; raises DataError when it cannot fit the limits (see the module doc).

    A response the list marks as truncated ends without the template's end-of-turn tokens unless
    `score_cut_ends` (the behaviour before such marks were read)."""
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation={truncation!r} is not one of {', '.join(TRUNCATIONS)}")
    report = report if report is not None else TruncationReport()
    open_ends = 0
    messages, prompt_ids, cut = _fit_prompt(tokenizer, [dict(m) for m in lst.prompt], max_prompt_length, lst.origin,
                                            truncation)
    report.prompts_truncated += cut
    responses = []
    for i, text in enumerate(lst.responses):
        open_end = lst.is_truncated(i) and not score_cut_ends
        try:
            ids = _encode_response(tokenizer, messages, prompt_ids, text, open_end)
        except ReplyNotFound as err:
            raise DataError(lst.origin, f"responses[{i}]", str(err), "unmark the reply as truncated, or set "
                            "score_cut_ends: true", "cut_reply_not_found") from None
        open_ends += open_end
        if len(ids) > max_response_length:
            if truncation == "reject":
                raise DataError(lst.origin, f"responses[{i}]", f"response has {len(ids)} tokens, over "
                                f"max_response_length={max_response_length} (truncation=reject)",
                                "raise max_response_length, or set truncation=cut", "response_too_long")
            report.responses_truncated += 1
            ids = ids[:max_response_length]
        if not ids:
            raise DataError(lst.origin, f"responses[{i}]", "response has no tokens after templating",
                            "remove the empty response", "empty_response_tokens")
        responses.append(tuple(ids))
    report.open_ends += open_ends  # counted once the list is accepted
    return TokenizedList(lst, tuple(messages), tuple(prompt_ids), tuple(responses))


def tokenize_lists(tokenizer: PreTrainedTokenizerBase, lists: Sequence[PreferenceList], max_prompt_length: int,
                   max_response_length: int, skip_bad: bool = True, truncation: str = "cut",
                   score_cut_ends: bool = False) -> tuple[list[TokenizedList], TruncationReport]:
    """Tokenise every list; lists that cannot fit are rejected and counted (or raise if skip_bad=False)."""
    report = TruncationReport()
    out = []
    for lst in lists:
        try:
            out.append(tokenize_list(tokenizer, lst, max_prompt_length, max_response_length, report, truncation,
                                     score_cut_ends))
        except DataError as err:
            if not skip_bad:
                raise
            report.reject(err)
    return out, report
