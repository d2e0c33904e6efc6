"""An LLM as a judge, through an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp, a hosted API).

One request per (reply, aspect): a system message with the aspect's rubric asking for one number from
1 to 5, and a user message with the conversation and the reply (`judge_messages`). The answer is read
strictly (`parse_rating`): the whole answer, stripped, must be a rating 1-5, optionally written
``Rating: 4``, ``Score: 4``, ``4/5``, ``4.`` or ``**4**``. Anything else is a missing rating, counted by
reason, never a made-up number: ``empty_answer``, ``out_of_range`` (a number that is not 1-5),
``unparseable``.

Requests go through the standard library (``urllib``): `concurrency` at a time (a thread pool),
each with a `timeout` in seconds. A timeout, a connection error, HTTP 429 or a 5xx is retried up to
`max_retries` times after ``backoff * 2**attempt`` seconds; another HTTP error is not. A request that
still fails is a missing rating with the last failure as its reason (``timeout``, ``connection_error``,
``http_500``, ...; ``bad_response`` for a body that is not a chat completion). The API key, if the
server needs one, is read from the environment variable `api_key_env` and never written anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .base import Judge, RateInput, Ratings

__all__ = ["LLMJudge", "parse_rating", "judge_messages", "RETRY_STATUS"]

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_RATING = re.compile(r"^(?:(?:rating|score)\s*[:=]?\s*)?(\**)([1-5])\1(?:\s*/\s*5)?\.?$", re.IGNORECASE)
_NUMBER = re.compile(r"^(?:(?:rating|score)\s*[:=]?\s*)?(\**)-?\d+(?:\.\d+)?\1(?:\s*/\s*\d+)?\.?$", re.IGNORECASE)
SYSTEM_TEMPLATE = ("You are a strict grader. Rate the assistant's final reply in the conversation on one aspect: "
                   "{aspect}.\n\nRubric:\n{rubric}\n\nAnswer with a single digit from 1 (worst) to 5 (best) and "
                   "nothing else.")


def parse_rating(answer: str | None) -> tuple[int | None, str | None]:
    """(rating, None) for an answer that is a rating 1-5 (see the module docstring), else (None, reason)."""
    text = (answer or "").strip()
    if not text:
        return None, "empty_answer"
    match = _RATING.match(text)
    if match:
        return int(match.group(2)), None
    return None, "out_of_range" if _NUMBER.match(text) else "unparseable"


def judge_messages(prompt: Sequence[Mapping[str, str]], reply: str, aspect: str, rubric: str) -> list[dict]:
    """The chat messages sent to rate `reply` to `prompt` on `aspect` under its rubric."""
    turns = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in prompt)
    user = (f"Conversation:\n\n{turns}\n\n[assistant, the reply to rate]\n{reply}\n\n"
            f"Rate the reply on {aspect} (1-5). Answer with the number only.")
    return [{"role": "system", "content": SYSTEM_TEMPLATE.format(aspect=aspect, rubric=rubric.strip())},
            {"role": "user", "content": user}]


class _Failed(Exception):
    def __init__(self, reason: str, detail: str, retry: bool):
        super().__init__(detail)
        self.reason, self.retry = reason, retry


@dataclass
class LLMJudge(Judge):
    """Settings: `base_url` (up to ``/v1``), `model` (the served model's name), `rubrics` ({aspect: what a 5 and a
    1 mean}); `api_key_env`, `timeout` (s), `max_retries`, `backoff` (s), `concurrency`, `max_tokens`,
    `temperature`."""

    base_url: str
    model: str
    rubrics: Mapping[str, str]
    api_key_env: str | None = None
    timeout: float = 60.0
    max_retries: int = 3
    backoff: float = 1.0
    concurrency: int = 4
    max_tokens: int = 8
    temperature: float = 0.0
    type: str = field(default="llm", init=False)

    def __post_init__(self):
        where = f"llm judge {self.model!r}"
        if not isinstance(self.rubrics, Mapping) or not self.rubrics or not all(
                isinstance(r, str) and r.strip() for r in self.rubrics.values()):
            raise ValueError(f"{where}: rubrics must map each aspect to its rubric text, e.g. {{honesty: \"5: ...\"}}")
        for name in ("timeout", "backoff"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) >= 0):
                raise ValueError(f"{where}: {name} {getattr(self, name)!r} must be a number >= 0 (seconds)")
        for name, low in (("max_retries", 0), ("concurrency", 1), ("max_tokens", 1)):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= low):
                raise ValueError(f"{where}: {name} {getattr(self, name)!r} must be an integer >= {low}")
        self.rubrics = {str(a): str(r) for a, r in self.rubrics.items()}
        self.aspects = tuple(self.rubrics)
        self.url = self.base_url.rstrip("/") + "/chat/completions"
        self.failures_logged: set[str] = set()

    def describe(self) -> dict[str, Any]:
        return {"type": self.type, "base_url": self.base_url, "model": self.model, "rubrics": dict(self.rubrics),
                "max_tokens": self.max_tokens, "temperature": self.temperature}

    def label(self) -> str:
        return f"llm:{self.model}"

    def rate(self, lists: Sequence[RateInput], need: Sequence[Mapping[str, Sequence[int]]]) -> list[Ratings]:
        out = [Ratings.empty(self.aspects, len(item.responses)) for item in lists]
        jobs = [(j, i, a) for j, wanted in enumerate(need) for a in self.aspects for i in wanted.get(a, ())]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            answers = list(pool.map(lambda job: self.ask(lists[job[0]], job[1], job[2]), jobs))
        for (j, i, a), (value, reason) in zip(jobs, answers):
            if reason:
                out[j].missing(a, i, reason)
            else:
                out[j].values[a][i] = float(value)
        return out

    def ask(self, item: RateInput, i: int, aspect: str) -> tuple[int | None, str | None]:
        """One reply's rating on one aspect: (rating, None) or (None, why it is missing)."""
        body = {"model": self.model, "messages": judge_messages(item.prompt, item.responses[i], aspect,
                                                                self.rubrics[aspect]),
                "max_tokens": self.max_tokens, "temperature": self.temperature}
        try:
            answer = self.complete(body)
        except _Failed as failed:
            self._log_failure(failed)
            return None, failed.reason
        return parse_rating(answer)

    def complete(self, body: dict) -> str | None:
        """The answer's text for one chat-completions request, with retries; raises `_Failed` when it fails."""
        for attempt in range(self.max_retries + 1):
            try:
                return self._post(body)
            except _Failed as failed:
                if not failed.retry or attempt == self.max_retries:
                    raise
                time.sleep(self.backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    def _post(self, body: dict) -> str | None:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"), headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise _Failed(f"http_{err.code}", f"HTTP {err.code} from {self.url}", err.code in RETRY_STATUS) from None
        except (TimeoutError, socket.timeout) as err:
            raise _Failed("timeout", f"no answer from {self.url} within {self.timeout} s ({err})", True) from None
        except (urllib.error.URLError, ConnectionError, OSError) as err:
            reason = getattr(err, "reason", err)
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Failed("timeout", f"no answer from {self.url} within {self.timeout} s", True) from None
            raise _Failed("connection_error", f"cannot reach {self.url} ({reason})", True) from None
        try:
            message = json.loads(raw)["choices"][0]["message"]
            content = message.get("content")
            return content if isinstance(content, str) or content is None else str(content)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise _Failed("bad_response", f"{self.url} answered {raw[:200]!r}, not a chat completion", False) from None

    def _log_failure(self, failed: _Failed) -> None:
        if failed.reason not in self.failures_logged:
            self.failures_logged.add(failed.reason)
            log.warning("llm judge: %s (ratings missing; counted as %r)", failed, failed.reason)
