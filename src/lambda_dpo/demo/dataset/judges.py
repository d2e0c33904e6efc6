"""Deterministic judges: (prompt spec, response text) -> an int rating 1..5 per aspect.

The same rules rate the shipped demo data and any new generation (the demo scores outputs under a
lambda grid with them). They are programs, not models: they see only what `PromptSpec` makes
checkable, and they are honest about it (see "Limits" below). `spec` may be a `PromptSpec` or its
dict (the ``"spec"`` field of a demo JSONL record).

Shared definitions
------------------
- words: maximal runs of letters/digits (any script), joined across inner ' ’ -; "word count" counts them.
- content words: words lowercased, of 3+ characters, not all digits, not in `STOPWORDS`.
- rounding: ``to_score(x) = 1 + floor(4 * x + 0.5)`` maps x in [0, 1] to 1..5 (0 -> 1, 0.5 -> 3, 1 -> 5).
- a response with no word at all (empty, whitespace, punctuation only) gets 1 on every aspect.
- list items: lines starting with ``-``, ``*``, ``•`` or ``+`` and a space (bullets) or with
  ``N.`` / ``N)`` and a space (numbered), after leading spaces.
- a term "is mentioned" when it occurs case-insensitively at a word start and ends at a word end,
  optionally followed by "s"/"es" (multi-word terms allowed); the fact answer of a case-sensitive
  spec (chemical symbols) is matched with case.

instruction_following
---------------------
Each constraint of ``spec.constraints`` gives a credit in [0, 1]; the score is
``to_score(mean credit)``. With one constraint that is 5 (met) or 1 (not met).

- ``max_words: n``: word count <= n.        ``min_words: n``: word count >= n.
- ``n_bullets: n``: exactly n bullet lines.  ``n_numbered: n``: exactly n numbered lines.
- ``keywords: [w...]``: the fraction of the keywords mentioned.
- ``lowercase``: has a letter and no uppercase letter. ``uppercase``: has a letter and no lowercase.
- ``end_with_question``: after trailing spaces, quotes, ``*``, ``_``, ``)`` and ``]``, the text ends with "?".
- ``json_keys: [k...]``: the whole reply (a surrounding Markdown code fence removed) parses as a JSON
  object: 1 with every key, 0.5 if a key is missing; 0 if it does not parse as an object.
- ``max_sentences: n``: at most n sentences (split after . ! ? followed by a space, and at newlines).
- ``start_with: w``: the first word (after leading Markdown/quote characters) is w, any case.
- ``no_commas``: no "," (nor "，") in the text.

A spec with no constraint (qa and open prompts) is judged on three implicit ones, same formula:
(1) it answers: qa with a numeric answer: states a number that is not one of the prompt's
``context_numbers``; other qa: mentions the answer, an alias or a distractor (a candidate of the
asked type); list requests: mentions a member of the category; open: mentions a key term or a
content word of the subject; (2) it finishes: the text
ends with . ! or ? (optionally followed by closing quotes, brackets, ``*``), or its last line is a
list item of at most 8 words (a reply cut off mid-sentence did not finish the task); (3) it does
not loop: no sentence of 4+ words occurs twice. So 3 met -> 5, 2 -> 4, 1 -> 2, 0 -> 1.

correctness
-----------
- Numeric answer (arithmetic, unit conversions, counting facts): the numbers in the text, in order
  (digits with optional sign, ``,`` thousands groups and decimals: "1,000" = "1000.0" = 1000;
  number words "zero".."twenty" except "one", tens, and "forty-two" style compounds; line-start
  list markers "1." are not numbers). A number equal to the answer (relative tolerance 1e-6) is
  *right*; one equal to a ``context_numbers`` entry (an operand, a conversion factor, 1 for unit
  conversions) is neutral; any other is *wrong*.
- Fact answer: mentions of the answer or an alias are *right*, mentions of a distractor (another
  capital, planet, chemical symbol, ...) are *wrong*.
- Then: 5 = right and no wrong; 4 = right comes first, a wrong follows; 3 = a wrong comes before
  the first right; 2 = neither right nor wrong (no answer given); 1 = wrong only.
- List requests (``members``): items are the list lines, or, with no list lines, the text split
  at commas, semicolons, " and ", " or " and newlines. An item is right when it mentions a member of
  the category not already used by an earlier item (a member of more than 3 letters also matches
  words it starts: "strawberr" -> "strawberries"). Score ``to_score(right items / items)``.
- No known answer (topic requests): 3 (neutral), or 2 when the text states a checkably wrong
  integer equation "a op b = c" (op in + - * x × /).

conciseness (shorter is better)
-------------------------------
budget: ``max_words`` if the spec has it, else ``min_words`` if it has it, else 25 words for
arithmetic, unit conversions and facts, 30 for list requests, 50 for topic requests.
With r = word count / budget: r <= 1 -> 5, <= 1.5 -> 4, <= 2 -> 3, <= 3 -> 2, else 1.
Repetition: over the lowercased word 3-grams (when there are at least 6), the repeated fraction
``1 - distinct / total`` >= 0.2 costs 1 point and >= 0.4 costs 2 (never below 1).

informativeness (more content is better, up to a cap)
-----------------------------------------------------
u = the number of distinct content words; cap = 25 for arithmetic, unit conversions, facts and
list requests, 50 for topic requests; ``length = min(1, u / cap)``.
Topic requests (with ``key_terms``): ``to_score(0.6 * coverage + 0.4 * length)``, coverage = the
fraction of key terms with any of their spellings mentioned. Other specs: ``to_score(length)``
(a bare "Paris" is 1; an explanation of 25+ distinct content words is 5).

This is built to conflict with conciseness: past the budget, every extra word can only raise
informativeness and can only lower conciseness. The datasheet reports their Spearman correlation
on the built data.

Limits
------
The judges check surface facts only: a fluent but false explanation of photosynthesis that
mentions the key terms is rated informative and, having no checkable answer, neutral (3) on
correctness. Number and name matching can be fooled (an answer hidden in an unrelated number, a
distractor named as a contrast: "not Lyon but Paris" scores 3, not 5).
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any, Callable, Mapping

from ...evaluation.judges import STOPWORDS, content_words, words
from .prompts import PromptSpec

__all__ = [
    "ASPECTS",
    "JUDGES",
    "STOPWORDS",
    "judge_all",
    "judge_record",
    "instruction_following",
    "correctness",
    "conciseness",
    "informativeness",
    "to_score",
    "words",
    "extract_numbers",
    "constraint_credits",
]

ASPECTS = ("instruction_following", "correctness", "conciseness", "informativeness")


_BULLET = re.compile(r"^\s*[-*•+]\s+\S")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+\S")
_LIST_MARKER = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+", re.MULTILINE)
_DIGITS = re.compile(r"(?<![\w.,])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_UNITS = ("zero two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
          "seventeen eighteen nineteen twenty").split()
_UNIT_VALUE = {w: (0 if w == "zero" else i + 1) for i, w in enumerate(_UNITS)}
_UNIT_VALUE.update({"one": 1})
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_NUMBER_WORD = re.compile(
    r"\b(?:(?P<tens>twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[- ](?P<unit>one|two|three|four|"
    r"five|six|seven|eight|nine)\b)?|(?P<single>zero|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen))\b", re.IGNORECASE)
_EQUATION = re.compile(r"(?<![\w.])(\d+)\s*([-+*x×/÷])\s*(\d+)\s*=\s*(-?\d+)(?![\w.]*\d)")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_TRAILING = " \t\r\n\"'”’*_)]`"


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def to_score(x: float) -> int:
    """[0, 1] -> 1..5: ``1 + floor(4x + 0.5)`` (x is clipped to [0, 1] first)."""
    x = min(1.0, max(0.0, float(x)))
    return 1 + int(math.floor(4 * x + 0.5))


@functools.lru_cache(maxsize=4096)
def _term_regex(term: str, case_sensitive: bool = False, prefix: bool = False) -> re.Pattern:
    body = r"\s+".join(re.escape(p) for p in term.split())
    tail = r"[^\W_]*" if prefix else r"(?:e?s)?"
    return re.compile(rf"(?<![^\W_]){body}{tail}(?![^\W_])", 0 if case_sensitive else re.IGNORECASE)


def _find(term: str, text: str, case_sensitive: bool = False, prefix: bool = False) -> int:
    """Position of the first mention of `term` in `text`, or -1."""
    m = _term_regex(term, case_sensitive, prefix).search(text)
    return m.start() if m else -1


def mentioned(term: str, text: str, case_sensitive: bool = False) -> bool:
    return _find(term, text, case_sensitive) >= 0


def extract_numbers(text: str) -> list[tuple[int, float]]:
    """(position, value) of every number in `text`, in order (see "correctness" in the module docstring)."""
    body = _LIST_MARKER.sub(lambda m: " " * len(m.group(0)), text)
    found = []
    for m in _DIGITS.finditer(body):
        s = m.group(0).replace(",", "").replace("−", "-")
        try:
            found.append((m.start(), float(s)))
        except ValueError:
            continue
    for m in _NUMBER_WORD.finditer(body):
        if m.group("tens"):
            v = _TENS[m.group("tens").lower()] + (_UNIT_VALUE[m.group("unit").lower()] if m.group("unit") else 0)
        else:
            v = _UNIT_VALUE[m.group("single").lower()]
        found.append((m.start(), float(v)))
    return sorted(found)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def _list_lines(text: str) -> tuple[list[str], list[str]]:
    lines = text.splitlines()
    return [ln for ln in lines if _BULLET.match(ln)], [ln for ln in lines if _NUMBERED.match(ln)]


def _sentences(text: str) -> list[str]:
    return [s for s in (p.strip() for p in _SENTENCE_SPLIT.split(text.strip())) if words(s)]


def _as_spec(spec: PromptSpec | Mapping[str, Any]) -> PromptSpec:
    if isinstance(spec, PromptSpec):
        return spec
    if isinstance(spec, Mapping):
        return PromptSpec.from_dict(spec)
    raise TypeError(f"spec must be a PromptSpec or its dict, got {type(spec).__name__}")


def _as_text(response: Any) -> str:
    if response is None:
        return ""
    if not isinstance(response, str):
        raise TypeError(f"response must be a string, got {type(response).__name__}")
    return response


def _strip_fence(text: str) -> str:
    t = text.strip()
    m = re.fullmatch(r"```[\w-]*\s*\n?(.*?)\n?\s*```", t, re.DOTALL)
    return m.group(1).strip() if m else t


# ------------------------------------------------------------------------------------------------
# instruction_following
# ------------------------------------------------------------------------------------------------


def _credit(name: str, value: Any, text: str) -> float:
    n_words = len(words(text))
    if name == "max_words":
        return float(n_words <= int(value))
    if name == "min_words":
        return float(n_words >= int(value))
    if name == "n_bullets":
        return float(len(_list_lines(text)[0]) == int(value))
    if name == "n_numbered":
        return float(len(_list_lines(text)[1]) == int(value))
    if name == "keywords":
        kws = [value] if isinstance(value, str) else list(value)
        return sum(mentioned(k, text) for k in kws) / len(kws) if kws else 1.0
    if name == "lowercase":
        return float(any(c.isalpha() for c in text) and not any(c.isupper() for c in text))
    if name == "uppercase":
        return float(any(c.isalpha() for c in text) and not any(c.islower() for c in text))
    if name == "end_with_question":
        return float(text.rstrip(_TRAILING).endswith(("?", "？")))
    if name == "json_keys":
        try:
            obj = json.loads(_strip_fence(text))
        except (ValueError, RecursionError):
            return 0.0
        if not isinstance(obj, dict):
            return 0.0
        return 1.0 if all(k in obj for k in value) else 0.5
    if name == "max_sentences":
        return float(len(_sentences(text)) <= int(value))
    if name == "start_with":
        first = words(text.lstrip(" \t\r\n#*_>\"'`“‘-"))
        return float(bool(first) and first[0].lower() == str(value).lower())
    if name == "no_commas":
        return float("," not in text and "，" not in text)
    raise ValueError(f"unknown constraint {name!r}")


def _implicit_credits(spec: PromptSpec, text: str) -> dict[str, float]:
    if spec.numeric_answer is not None:
        answers = any(not any(_close(v, c) for c in spec.context_numbers) for _, v in extract_numbers(text))
    elif spec.answer is not None:
        cands = (spec.answer, *spec.aliases)
        answers = any(mentioned(a, text, spec.answer_case_sensitive) for a in cands) or any(
            mentioned(d, text, spec.answer_case_sensitive) for d in spec.distractors)
    elif spec.members:
        answers = any(_find(m, text, prefix=len(m) > 3) >= 0 for m in spec.members)
    else:
        terms = [s for t in spec.key_terms for s in t] + sorted(content_words(spec.subject))
        answers = any(mentioned(t, text) for t in terms)
    tail = text.rstrip(_TRAILING)
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    last_is_item = bool(lines) and bool(_BULLET.match(lines[-1]) or _NUMBERED.match(lines[-1])) and len(
        words(lines[-1])) <= 8
    finishes = tail.endswith((".", "!", "?", "。", "！", "？")) or last_is_item
    sents = [" ".join(words(s)).lower() for s in _sentences(text)]
    long_sents = [s for s in sents if len(s.split()) >= 4]
    no_loop = len(long_sents) == len(set(long_sents))
    return {"answers": float(answers), "finishes": float(finishes), "no_loop": float(no_loop)}


def constraint_credits(spec: PromptSpec | Mapping[str, Any], response: str) -> dict[str, float]:
    """The credit (0..1) of each constraint (or of each implicit one) for `response`."""
    spec, text = _as_spec(spec), _as_text(response)
    if spec.constraints:
        return {name: _credit(name, value, text) for name, value in spec.constraints.items()}
    return _implicit_credits(spec, text)


def instruction_following(spec: PromptSpec | Mapping[str, Any], response: str) -> int:
    """Mean credit of the verifiable constraints (implicit ones when there are none) -> 1..5."""
    spec, text = _as_spec(spec), _as_text(response)
    if not words(text):
        return 1
    credits = constraint_credits(spec, text)
    return to_score(sum(credits.values()) / len(credits))


# ------------------------------------------------------------------------------------------------
# correctness
# ------------------------------------------------------------------------------------------------


def _order_score(right: list[int], wrong: list[int]) -> int:
    if right and not wrong:
        return 5
    if right:
        return 4 if min(right) < min(wrong) else 3
    return 1 if wrong else 2


def _list_items(text: str) -> list[str]:
    bullets, numbered = _list_lines(text)
    items = bullets + numbered
    if not items:
        items = re.split(r",|;|\n|\band\b|\bor\b", text)
    return [it for it in items if words(it)]


def correctness(spec: PromptSpec | Mapping[str, Any], response: str) -> int:
    """Known answer present (and first, and uncontradicted) -> 5 ... wrong only -> 1; see the module docstring."""
    spec, text = _as_spec(spec), _as_text(response)
    if not words(text):
        return 1
    if spec.numeric_answer is not None:
        right, wrong = [], []
        for pos, v in extract_numbers(text):
            if _close(v, spec.numeric_answer):
                right.append(pos)
            elif not any(_close(v, c) for c in spec.context_numbers):
                wrong.append(pos)
        return _order_score(right, wrong)
    if spec.answer is not None:
        cs = spec.answer_case_sensitive
        right = [p for p in (_find(a, text, cs) for a in (spec.answer, *spec.aliases)) if p >= 0]
        wrong = [p for p in (_find(d, text, cs) for d in spec.distractors) if p >= 0]
        return _order_score(right, wrong)
    if spec.members:
        items = _list_items(text)
        used: set[str] = set()
        n_right = 0
        for item in items:
            hit = next((m for m in spec.members if m not in used and _find(m, item, prefix=len(m) > 3) >= 0), None)
            if hit is not None:
                used.add(hit)
                n_right += 1
        return to_score(n_right / len(items)) if items else 1
    for a, op, b, c in _EQUATION.findall(text):
        a, b, c = int(a), int(b), int(c)
        value = {"+": a + b, "-": a - b, "*": a * b, "x": a * b, "×": a * b}.get(op)
        if op in "/÷":
            value = a / b if b else None
        if value is not None and not _close(c, value):
            return 2
    return 3


# ------------------------------------------------------------------------------------------------
# conciseness and informativeness
# ------------------------------------------------------------------------------------------------

_BUDGET = {"arithmetic": 25, "unit_conversion": 25, "fact": 25, "list": 30, "topic": 50}
_CAP = {"arithmetic": 25, "unit_conversion": 25, "fact": 25, "list": 25, "topic": 50}


def word_budget(spec: PromptSpec | Mapping[str, Any]) -> int:
    """The word count at or under which a reply is fully concise (see the module docstring)."""
    spec = _as_spec(spec)
    if "max_words" in spec.constraints:
        return int(spec.constraints["max_words"])
    if "min_words" in spec.constraints:
        return int(spec.constraints["min_words"])
    return _BUDGET.get(spec.category, 50 if spec.key_terms else 25)


def repetition(text: str) -> float:
    """Fraction of repeated lowercased word 3-grams (0 with fewer than 6 3-grams)."""
    ws = [w.lower() for w in words(text)]
    grams = list(zip(ws, ws[1:], ws[2:]))
    if len(grams) < 6:
        return 0.0
    return 1 - len(set(grams)) / len(grams)


def conciseness(spec: PromptSpec | Mapping[str, Any], response: str) -> int:
    """Word count relative to the spec's budget, minus a repetition penalty -> 1..5."""
    spec, text = _as_spec(spec), _as_text(response)
    n = len(words(text))
    if n == 0:
        return 1
    r = n / word_budget(spec)
    score = 5 if r <= 1 else 4 if r <= 1.5 else 3 if r <= 2 else 2 if r <= 3 else 1
    rep = repetition(text)
    score -= 2 if rep >= 0.4 else 1 if rep >= 0.2 else 0
    return max(1, score)


def key_term_coverage(spec: PromptSpec | Mapping[str, Any], response: str) -> float:
    """Fraction of the spec's key terms mentioned (any spelling); 0 when it has none."""
    spec, text = _as_spec(spec), _as_text(response)
    if not spec.key_terms:
        return 0.0
    return sum(any(mentioned(s, text) for s in term) for term in spec.key_terms) / len(spec.key_terms)


def informativeness(spec: PromptSpec | Mapping[str, Any], response: str) -> int:
    """Distinct content (and key-term coverage for topic requests), up to a cap -> 1..5."""
    spec, text = _as_spec(spec), _as_text(response)
    if not words(text):
        return 1
    cap = _CAP.get(spec.category, 50 if spec.key_terms else 25)
    length = min(1.0, len(content_words(text)) / cap)
    if spec.key_terms:
        return to_score(0.6 * key_term_coverage(spec, text) + 0.4 * length)
    return to_score(length)


# ------------------------------------------------------------------------------------------------
# All judges
# ------------------------------------------------------------------------------------------------

JUDGES: dict[str, Callable[[Any, str], int]] = {
    "instruction_following": instruction_following,
    "correctness": correctness,
    "conciseness": conciseness,
    "informativeness": informativeness,
}


def judge_all(spec: PromptSpec | Mapping[str, Any], response: str) -> dict[str, int]:
    """{aspect: rating 1..5} for every judge in `JUDGES`."""
    spec = _as_spec(spec)
    return {name: judge(spec, response) for name, judge in JUDGES.items()}


def judge_record(record: Mapping[str, Any], response: str) -> dict[str, int]:
    """`judge_all` on a demo JSONL record (its ``"spec"``): the judge `lambda-dpo evaluate --front` takes for the
    demo's files (``--judge lambda_dpo.demo.dataset.judges:judge_record``)."""
    if "spec" not in record:
        raise ValueError("judge_record needs a demo record with a \"spec\" (train.jsonl / eval.jsonl of the demo data)")
    return judge_all(record["spec"], response)
