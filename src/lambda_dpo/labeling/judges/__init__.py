"""Judges: who rates each aspect. One entry of a label config's `judges` list builds one judge.

- ``type: reward_model`` (`RewardModelJudge`): a transformers sequence classifier, one output per aspect;
- ``type: llm`` (`LLMJudge`): an LLM behind an OpenAI-compatible chat endpoint, a rubric per aspect;
- ``type: callable`` (`CallableJudge`): a Python function ``module:name``, ``(record, reply) -> {aspect: rating}``.

Judges are built without loading anything (a model loads when it first rates), so a config is checked
at once. Each aspect belongs to one judge.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .base import Judge, RateInput, Ratings, check_settings
from .llm_judge import LLMJudge, parse_rating
from .python_callable import CallableJudge, load_callable
from .reward_model import RewardModelJudge, reward_input_ids

__all__ = ["JUDGE_TYPES", "Judge", "RateInput", "Ratings", "build_judge", "build_judges", "RewardModelJudge",
           "LLMJudge", "CallableJudge", "parse_rating", "reward_input_ids", "load_callable"]

JUDGE_TYPES: dict[str, type] = {"reward_model": RewardModelJudge, "llm": LLMJudge, "callable": CallableJudge}


def build_judge(spec: Mapping[str, Any], where: str = "judges[0]") -> Judge:
    """One judge from its config entry ``{type: ..., <its settings>}``."""
    kind = spec.get("type")
    if kind not in JUDGE_TYPES:
        raise ValueError(f"{where}: type {kind!r} is not one of {', '.join(JUDGE_TYPES)}. Fix: set type:")
    cls = JUDGE_TYPES[kind]
    settings = check_settings(cls, {k: v for k, v in spec.items() if k != "type"}, f"{where} ({kind})")
    try:
        return cls(**settings)
    except TypeError as err:
        raise ValueError(f"{where} ({kind}): {err}") from None


def build_judges(specs: Sequence[Mapping[str, Any]]) -> list[Judge]:
    """The judges of a config's `judges` list; an aspect rated by two of them is an error."""
    judges = [build_judge(spec, f"judges[{k}]") for k, spec in enumerate(specs)]
    owner: dict[str, int] = {}
    for k, judge in enumerate(judges):
        for aspect in judge.aspects:
            if aspect in owner:
                raise ValueError(f"judges[{k}] rates {aspect!r}, which judges[{owner[aspect]}] rates too. Fix: one "
                                 "judge per aspect (rename one, e.g. helpfulness_rm)")
            owner[aspect] = k
    return judges
