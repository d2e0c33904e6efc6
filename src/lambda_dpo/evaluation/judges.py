"""Spec-free length judges: score any reply to any question on conciseness and informativeness.

A judge is a callable ``(record, reply) -> {aspect: score}``; the steering protocol
(`evaluation.protocol`) calls it once per generated reply. These two need nothing from the record,
so they judge replies to questions from any distribution (the demo uses them on its general
questions, `lambda_dpo/resources/ood/`). Both are on a continuous 1-5 scale:

- conciseness (word budget): 5 for a reply of at most `short` words, 1 for one of at least `long`
  words, linear in between. Words are maximal runs of letters or digits (inner ' ’ - joined), as
  the demo's judges count them.
- informativeness (distinct content words): ``1 + 4 * min(1, u / cap)``, u = the number of distinct
  lowercased words of 3+ characters, not all digits, not stop words. Repeating a sentence adds
  nothing.

They conflict by construction: past `short` words every extra word lowers conciseness, and new
words raise informativeness until `cap`. They check surface only (a fluent falsehood of 60 distinct
words is fully "informative"); they measure whether a model can be steered along that trade-off,
not the quality of what it says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["LengthJudge", "STOPWORDS", "words", "content_words"]

STOPWORDS = frozenset("""
a about above after again against all also am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during
each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers
herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more
most mustn't my myself no nor not of off on once only or other ought our ours ourselves out over own same
shan't she she'd she'll she's should shouldn't so some such than that that's the their theirs them
themselves then there there's these they they'd they'll they're they've this those through to too under
until up very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's which
while who who's whom why why's with won't would wouldn't you you'd you'll you're you've your yours yourself
yourselves will just like also may might must shall one two its get got make made many much well really
""".split())

_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")


def words(text: str) -> list[str]:
    """The words of `text`: maximal runs of letters/digits (any script), joined across inner ' ’ -."""
    return _WORD.findall(text)


def content_words(text: str) -> set[str]:
    """Distinct lowercased words of 3+ characters that are not all digits and not in `STOPWORDS`."""
    return {w for w in (x.lower() for x in words(text))
            if len(w) >= 3 and not w.isdigit() and w not in STOPWORDS}


@dataclass(frozen=True)
class LengthJudge:
    """Conciseness by a word budget and informativeness by distinct content words (module docstring).

    short, long: words at which conciseness is 5 and 1 (long > short >= 0).
    cap: distinct content words at which informativeness reaches 5 (> 0).
    conciseness, informativeness: the aspect names the scores are reported under.
    """

    short: int = 20
    long: int = 120
    cap: int = 50
    conciseness: str = "conciseness"
    informativeness: str = "informativeness"

    def __post_init__(self):
        if not 0 <= self.short < self.long or self.cap <= 0:
            raise ValueError(f"LengthJudge needs 0 <= short < long and cap > 0, got short={self.short}, "
                             f"long={self.long}, cap={self.cap}")

    def __call__(self, record: object, reply: str) -> dict[str, float]:
        n = len(words(reply))
        concise = 5.0 - 4.0 * min(1.0, max(0.0, (n - self.short) / (self.long - self.short)))
        informative = 1.0 + 4.0 * min(1.0, len(content_words(reply)) / self.cap)
        return {self.conciseness: concise, self.informativeness: informative}
