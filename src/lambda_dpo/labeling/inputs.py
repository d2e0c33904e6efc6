"""The prompts to label: records read from any source training reads, each checked, keyed and counted.

A record gives its prompt in ``prompt`` (a string, or chat messages not ending with the assistant)
or ``messages`` (a conversation; a final assistant message is dropped), as `LabelConfig.prompt_field`
says. A record that also gives ``responses`` (the native listwise format) keeps them, with its
``ratings`` (missing ones are judged), ``truncated`` and per-reply ``meta``, unless the config asks to
`resample`; it is checked as the loaders check a native record. Every other field passes through to
the written record (the demo's ``spec``, an ``id``) and is what a callable judge reads.

A record that cannot be used is counted by reason, with the first message of each reason, and
skipped: the loaders' reasons (``bad_json``, ``empty_prompt``, ``bad_message``, ``ratings_length``,
...), ``missing_field`` (no prompt), and ``duplicate_prompt`` (the same prompt and replies as an
earlier record: one list per prompt).

Each prompt is keyed by a hash of its messages (and given replies): the output records carry the
key, so a resumed run knows which prompts are done.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..data import DataError, as_record, load_lists, parse_prompt, read_source
from .config import LabelConfig

__all__ = ["LabelItem", "InputReport", "read_prompts", "prompt_key", "OWN_FIELDS"]

# Fields a written record gets from the labeling, not from the input record's extras.
OWN_FIELDS = ("prompt", "messages", "responses", "ratings", "truncated", "meta", "provenance", "skipped")
_PLACEHOLDER = "\x00placeholder"  # an aspect rated for every reply, so a record without ratings passes the checks


@dataclass
class LabelItem:
    """One prompt to label, and what its record already gives.

    Attributes:
        key: the prompt's key (`prompt_key`).
        origin: where the record is ("path:line").
        prompt: the chat messages up to the reply.
        record: the record as read; callable judges get it with each reply.
        extras: the record's fields other than `OWN_FIELDS`, written unchanged into the output record.
        responses: the given replies, or None when they are to be sampled.
        ratings: the given ratings that are kept, aspect -> one per reply (None: missing).
        truncated: per reply, whether a length limit cut it (empty: unknown).
        meta: per reply, the record's ``meta`` entries (empty: none).
    """

    key: str
    origin: str
    prompt: tuple[dict[str, str], ...]
    record: dict[str, Any]
    extras: dict[str, Any]
    responses: list[str] | None = None
    ratings: dict[str, list[float | None]] = field(default_factory=dict)
    truncated: list[bool] = field(default_factory=list)
    meta: list[Any] = field(default_factory=list)


@dataclass
class InputReport:
    """What was read: records, usable prompts, and the rest by reason (with the first message of each)."""

    source: str
    records_read: int = 0
    usable: int = 0
    rejected: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def reject(self, err: DataError) -> None:
        self.rejected[err.reason] += 1
        self.examples.setdefault(err.reason, str(err))


def prompt_key(prompt, responses=None) -> str:
    """A stable key for a prompt (and its given replies): the first 16 hex digits of a SHA-256."""
    text = json.dumps({"prompt": [dict(m) for m in prompt], "responses": responses}, sort_keys=True,
                      ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_prompts(cfg: LabelConfig) -> tuple[list[LabelItem], InputReport]:
    """The usable prompts of `cfg.input`, in order, and what was skipped.

    With a `cfg.limit`, reading stops once the last batch that holds the first `limit` prompts is full
    (`limit` rounded up to a multiple of `batch_size`): a batch is the same whatever the limit, so a run
    continued with a larger limit samples what one run would have. Only the first `limit` are labeled
    (`report.usable` counts them).
    """
    report = InputReport(cfg.input)
    cap = None if cfg.limit is None else -(-cfg.limit // cfg.batch_size) * cfg.batch_size
    items: list[LabelItem] = []
    seen: dict[str, str] = {}
    for origin, record in read_source(cfg.input, cfg.split):
        report.records_read += 1
        try:
            item = parse_item(dict(as_record(origin, record)), origin, cfg)
            if item.key in seen:
                raise DataError(origin, "prompt", f"the same prompt (and replies) as {seen[item.key]}",
                                "remove the duplicate: one list per prompt", "duplicate_prompt")
        except DataError as err:
            report.reject(err)
            continue
        seen[item.key] = origin
        items.append(item)
        if cap is not None and len(items) >= cap:
            break
    report.usable = len(items) if cfg.limit is None else min(len(items), cfg.limit)
    return items, report


def _prompt(record: dict, origin: str, prompt_field: str) -> tuple[dict[str, str], ...]:
    name = prompt_field
    if name == "auto":
        name = "prompt" if record.get("prompt") is not None else "messages"
    value = record.get(name)
    if value is None:
        raise DataError(origin, name, "missing", "give the prompt as \"prompt\" (a string or chat messages) or "
                        "\"messages\" (a conversation)", "missing_field")
    if name == "messages" and isinstance(value, list) and value and isinstance(value[-1], Mapping) \
            and value[-1].get("role") == "assistant":
        value = value[:-1]  # a conversation's final reply is not part of the prompt
    return tuple(parse_prompt(value, origin, name))


def parse_item(record: dict, origin: str, cfg: LabelConfig) -> LabelItem:
    """One record -> a `LabelItem`; raises DataError (with a reason) when it cannot be used."""
    prompt = _prompt(record, origin, cfg.prompt_field)
    extras = {k: v for k, v in record.items() if k not in OWN_FIELDS}
    if cfg.resample or record.get("responses") is None:
        return LabelItem(prompt_key(prompt), origin, prompt, record, extras)
    given = dict(record, prompt=[dict(m) for m in prompt])
    ratings = given.get("ratings") if isinstance(given.get("ratings"), Mapping) else {}
    n = len(given["responses"]) if isinstance(given["responses"], list) else 0
    given["ratings"] = {**ratings, _PLACEHOLDER: [0] * n}
    try:
        lst = load_lists([given], "native")[0][0]  # the loaders' checks of a native record
    except DataError as err:
        raise DataError(origin, err.field, err.problem, err.fix, err.reason) from None
    kept = {a: list(r) for a, r in lst.ratings.items() if a != _PLACEHOLDER}
    meta = record.get("meta") if isinstance(record.get("meta"), list) and len(record["meta"]) == lst.n else []
    return LabelItem(prompt_key(prompt, list(lst.responses)), origin, prompt, record, extras,
                     responses=list(lst.responses), ratings=kept, truncated=list(lst.truncated), meta=meta)
