"""The label config: what `lambda-dpo label` reads from YAML (or `label` from a dict), checked.

A config names the prompts (`input`), where the listwise records go (`output`), how replies are
sampled (`model`, `n_responses`, `slots`, `seed`, ...) and which judge rates each aspect (`judges`,
a list; each entry's `type` picks one of `judges.JUDGE_TYPES` and its other keys are that judge's
settings). Every field is documented on `LabelConfig`; docs/labeling.md shows a whole file.

`fingerprint` is the part of a config that decides what the records hold (not `limit`, `output`
or the progress bar): a resumed run must have the same one, so its records and the earlier ones
come from one recipe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..config_files import check_known_keys, read_config_mapping

__all__ = ["Slot", "LabelConfig", "load_label_config", "fingerprint", "PROMPT_FIELDS"]

PROMPT_FIELDS = ("auto", "prompt", "messages")  # where a record's prompt is read (`LabelConfig.prompt_field`)
NOT_IN_FINGERPRINT = ("output", "limit", "progress")


@dataclass(frozen=True)
class Slot:
    """How one response of every list is sampled: response k uses slot ``k % len(slots)``.

    Attributes:
        system: a system prompt for this response only (None: none). It is added before the prompt's
            messages, or appended (after a blank line) to the prompt's own system message; the written
            record keeps the prompt without it (the reply's ``meta`` says which one it had).
        temperature: sampling temperature; 0 decodes greedily.
        top_p: nucleus sampling's p (1: off).
    """

    system: str | None = None
    temperature: float = 0.7
    top_p: float = 0.95

    def __post_init__(self):
        if self.system is not None and not isinstance(self.system, str):
            raise ValueError(f"label config: slots: system {self.system!r} is not a string. Fix: give text, or "
                             "leave it out")
        if not (isinstance(self.temperature, (int, float)) and self.temperature >= 0):
            raise ValueError(f"label config: slots: temperature {self.temperature!r} must be a number >= 0 "
                             "(0: greedy)")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ValueError(f"label config: slots: top_p {self.top_p!r} must be in (0, 1]")


@dataclass
class LabelConfig:
    """Everything `label` needs. Required: `input`, `output` and `judges`.

    Attributes:
        input: the prompts: a .jsonl / .json / .parquet file or a ``save_to_disk`` directory (the
            sources training reads). Each record gives a prompt (`prompt_field`); a record that also has
            ``responses`` (the native listwise format) keeps them unless `resample`, and keeps its
            ratings (`keep_ratings`).
        output: the listwise JSONL file written; beside it go ``<stem>.datasheet.md`` /
            ``.datasheet.json``, ``<stem>.skipped.jsonl`` and ``<stem>.label.json`` (the config used).
        judges: one mapping per judge, ``{type: reward_model | llm | callable, ...}`` (docs/labeling.md).
            Each aspect is rated by one judge.
        split: the split of a ``save_to_disk`` directory holding several.
        limit: label only the first `limit` usable prompts (None: all). A later run with a larger
            limit continues the same output.
        prompt_field: "prompt" (a string or chat messages), "messages" (a conversation; a final
            assistant message is dropped) or "auto" (the first of the two a record has).
        resample: sample new replies even for records that give ``responses`` (their replies, ratings
            and per-reply fields are then dropped).
        keep_ratings: keep the ratings a record gives and judge only the missing ones; False: judge
            every reply on every judged aspect.
        model: the model replies are sampled from (a name `lambda_dpo.models.load_model` knows, a
            local directory or a hub id).
        n_responses: replies sampled per prompt (>= 2).
        slots: how each reply is sampled (`Slot`), cycled over the `n_responses` replies.
        seed: seeds the sampling and the order of the replies in a record.
        max_new_tokens: each reply's token budget; a reply cut there is marked (``meta[i].hit_max_new_tokens``).
        batch_size: prompts per generation batch. Batches are fixed by the input's order, so a resumed
            run samples exactly what an uninterrupted one does.
        shuffle: shuffle each record's replies (seeded per prompt), so the slot cannot be read from the
            position.
        empty_retries: an empty reply is sampled again up to this many times (then the prompt is
            skipped, reason ``empty_reply``).
        dtype: the sampling model's dtype.
        device: "auto" (cuda when available), "cpu", "cuda", ...
        trust_remote_code: passed to transformers when loading the sampling model.
        progress: show a progress bar.
    """

    input: str
    output: str
    judges: list[dict[str, Any]]
    split: str = "train"
    limit: int | None = None
    prompt_field: str = "auto"
    resample: bool = False
    keep_ratings: bool = True
    model: str = "smollm2-135m-instruct"
    n_responses: int = 4
    slots: list[Slot] = field(default_factory=lambda: [Slot()])
    seed: int = 0
    max_new_tokens: int = 128
    batch_size: int = 16
    shuffle: bool = True
    empty_retries: int = 3
    dtype: str = "float32"
    device: str = "auto"
    trust_remote_code: bool = False
    progress: bool = True

    def __post_init__(self):
        self.slots = [s if isinstance(s, Slot) else _slot(s) for s in self.slots]
        self.judges = [dict(j) for j in self.judges] if isinstance(self.judges, (list, tuple)) else self.judges
        _check(self)


def _slot(value: Any) -> Slot:
    if not isinstance(value, Mapping):
        raise ValueError(f"label config: slots: {value!r} is not a mapping. Fix: give each slot as "
                         "{system: ..., temperature: ..., top_p: ...}")
    known = {f.name for f in dataclasses.fields(Slot)}
    check_known_keys(value, known, "slots", list_known=True)
    return Slot(**value)


def _check(cfg: LabelConfig) -> None:
    def need(ok: bool, what: str, fix: str):
        if not ok:
            raise ValueError(f"label config: {what}. Fix: {fix}")

    need(isinstance(cfg.input, str) and bool(cfg.input), f"input {cfg.input!r} is not a path",
         "give the prompts file or dataset directory")
    need(isinstance(cfg.output, str) and cfg.output.endswith(".jsonl"), f"output {cfg.output!r} is not a .jsonl path",
         "give a file name ending in .jsonl")
    need(isinstance(cfg.judges, list) and bool(cfg.judges) and all(isinstance(j, dict) for j in cfg.judges),
         "judges must be a non-empty list of mappings", "give e.g. [{type: callable, function: module:name, "
         "aspects: [a, b]}]")
    need(cfg.limit is None or (isinstance(cfg.limit, int) and cfg.limit > 0), f"limit {cfg.limit!r}",
         "give a positive number, or leave it out")
    need(cfg.prompt_field in PROMPT_FIELDS, f"prompt_field {cfg.prompt_field!r}",
         f"use one of {', '.join(PROMPT_FIELDS)}")
    for name in ("n_responses", "batch_size", "max_new_tokens"):
        need(isinstance(getattr(cfg, name), int) and getattr(cfg, name) >= (2 if name == "n_responses" else 1),
             f"{name} {getattr(cfg, name)!r}", f"give an integer >= {2 if name == 'n_responses' else 1}")
    need(isinstance(cfg.empty_retries, int) and cfg.empty_retries >= 0, f"empty_retries {cfg.empty_retries!r}",
         "give an integer >= 0")
    need(isinstance(cfg.seed, int), f"seed {cfg.seed!r}", "give an integer")
    need(bool(cfg.slots), "slots is empty", "give at least one slot, e.g. [{temperature: 0.7}]")


def load_label_config(path: str | Path | None = None, overrides: Sequence[str] = (), **extra) -> LabelConfig:
    """YAML file + ``key=value`` overrides (values parsed as YAML) + keyword overrides -> a checked config.

    Unknown keys are an error naming the closest known ones. A relative `input` or `output` is relative to
    the current directory, as on the command line.
    """
    data = read_config_mapping(path, overrides, what="a label config", example="limit=20")
    data.update({k: v for k, v in extra.items() if v is not None})
    check_known_keys(data, {f.name for f in dataclasses.fields(LabelConfig)}, str(path or "label config"),
                     list_known=True)
    missing = [k for k in ("input", "output", "judges") if k not in data]
    if missing:
        raise ValueError(f"{path or 'label config'}: missing {', '.join(missing)}. Fix: add them (docs/labeling.md "
                         "shows a whole config)")
    return LabelConfig(**data)


def fingerprint(cfg: LabelConfig, judges: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """(hash, settings): what decides the records, with the judges as they describe themselves."""
    settings = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in NOT_IN_FINGERPRINT}
    settings["slots"] = [dataclasses.asdict(s) for s in cfg.slots]
    settings["judges"] = [dict(j) for j in judges]
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], settings
