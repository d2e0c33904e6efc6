"""A Python callable as a judge: ``function: "module:name"``, called once per reply.

The signature is the one the steering protocol's judges have (`lambda-dpo evaluate --front
--judge`): ``fn(record, reply) -> {aspect: rating}``, where `record` is the input record as read
(every field, the prompt as given: the demo's judges read its ``spec``) and `reply` the reply's
text. A class is instantiated with no arguments first. So the demo's rule judges are
``lambda_dpo.demo.dataset.judges:judge_record``.

The config lists the `aspects` taken from the returned mapping (others are ignored). An aspect the
callable does not return, or returns as something other than a finite number, is missing for that
reply (reasons ``no_rating``, ``bad_value``, ``non_finite``); an exception is missing on every
aspect (reason ``error``), logged once with its message, and labeling goes on.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .base import Judge, RateInput, Ratings, rating_value

__all__ = ["CallableJudge", "load_callable"]

log = logging.getLogger(__name__)


def load_callable(spec: str, where: str = "judge") -> Callable:
    """"module:name" -> the callable (a class is instantiated with no arguments)."""
    module_name, sep, name = str(spec).partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"{where}: function {spec!r} is not 'module:name'. Fix: name a callable (record, reply) -> "
                         "{aspect: rating}, e.g. lambda_dpo.demo.dataset.judges:judge_record")
    try:
        obj = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{where}: cannot import {name!r} from {module_name!r} ({err}). Fix: check the module "
                         "path (it must be importable) and the name") from None
    fn = obj() if isinstance(obj, type) else obj
    if not callable(fn):
        raise ValueError(f"{where}: {spec!r} is not callable")
    return fn


@dataclass
class CallableJudge(Judge):
    """Settings: `function` ("module:name") and the `aspects` it rates (names in its returned mapping)."""

    function: str
    aspects: Sequence[str]
    type: str = field(default="callable", init=False)

    def __post_init__(self):
        if isinstance(self.aspects, str) or not self.aspects or not all(isinstance(a, str) for a in self.aspects):
            raise ValueError(f"callable judge {self.function!r}: aspects must be a list of aspect names, e.g. "
                             "[conciseness, correctness]")
        self.aspects = tuple(self.aspects)
        self.fn = None
        self.errors_logged: set[str] = set()

    def describe(self) -> dict[str, Any]:
        return {"type": self.type, "function": self.function, "aspects": list(self.aspects)}

    def label(self) -> str:
        return f"callable:{self.function}"

    def rate(self, lists: Sequence[RateInput], need: Sequence[Mapping[str, Sequence[int]]]) -> list[Ratings]:
        if self.fn is None:
            self.fn = load_callable(self.function, f"callable judge {self.function!r}")
        return [self._rate_one(item, wanted) for item, wanted in zip(lists, need)]

    def _rate_one(self, item: RateInput, wanted: Mapping[str, Sequence[int]]) -> Ratings:
        out = Ratings.empty(self.aspects, len(item.responses))
        replies = sorted({i for a in self.aspects for i in wanted.get(a, ())})
        for i in replies:
            try:
                answer = self.fn(item.record, item.responses[i])
                if not isinstance(answer, Mapping):
                    raise TypeError(f"returned a {type(answer).__name__}, not a mapping {{aspect: rating}}")
            except Exception as err:  # the user's code: counted as missing ratings, and logged once
                self._log_error(err)
                for a in self.aspects:
                    if i in wanted.get(a, ()):
                        out.missing(a, i, "error")
                continue
            for a in self.aspects:
                if i in wanted.get(a, ()):
                    value, reason = rating_value(answer.get(a))
                    if reason:
                        out.missing(a, i, reason)
                    else:
                        out.values[a][i] = value
        return out

    def _log_error(self, err: Exception) -> None:
        kind = type(err).__name__
        if kind not in self.errors_logged:
            self.errors_logged.add(kind)
            log.warning("callable judge %s raised %s: %s (its ratings are missing; counted as 'error')",
                        self.function, kind, err)
