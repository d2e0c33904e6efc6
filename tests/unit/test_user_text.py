"""User-facing text carries no internal history.

What a user reads (the package's source: docstrings, comments, help strings, error messages; the
CLI's --help; README.md and the top-level docs pages) says what the software does now. Issue
numbers, work sessions and rounds, dates, the hosts a figure was measured on, and benchmark
figures in the code belong to the git history, CHANGELOG.md, research/ and the benchmark results;
the text points to the docs page instead (docs/performance.md for figures). Not scanned: CHANGELOG.md
(history by design), research/ (the studies), docs/demo-*/ (run reports, dated by nature), bench/.

Each failure lists file:line and the matched text. Patterns match across line breaks (a phrase
wrapped in a docstring or a markdown paragraph still counts); the line is where the match starts.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from conftest import REPO

ROOT = REPO
PACKAGE = ROOT / "src" / "lambda_dpo"

_ORDINALS = "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth"

# (what it catches, pattern). Applied to the source, the CLI help and the docs.
HISTORY = [
    # "issue 11", "issues 3 and 4", "ticket #2", "pull request 5", "PR #7"
    ("issue reference", re.compile(r"\b(?i:issues?|tickets?|pull\s+requests?)\s*#?\d+|\bPRs?\s*#?\d+")),
    # "#12" meaning an issue; not a CSS colour (`color: #333`: a ':' before it) nor `&#39;` or a URL
    # fragment ('&', '#', '/', a word character before it), nor a hex colour with letters
    ("issue reference (#N)", re.compile(r"(?<![\w&#/:])(?<!: )#\d+\b(?![\da-fA-F])")),
    # work sessions. `requests.Session` / `ClientSession` (web sessions, if ever used) are not
    # matched: a '.' or a word character before it; `session_id`-style names neither (no word end)
    ("session wording", re.compile(r"(?<![.\w])(?i:sessions?)\b")),
    # "the ninth round", "3rd round"; `round(` in code never matches (no word after it)
    ("round wording", re.compile(rf"\b(?i:(?:{_ORDINALS}|\d+(?:st|nd|rd|th))\s+rounds?)\b")),
    # "round 2"; not "round 0.5" (a weight being rounded) nor `round(x, 2)`
    ("round wording", re.compile(r"\b(?i:round)\s+\d+\b(?![.,]\d)")),
    # "two rounds of", "a round of"
    ("round wording", re.compile(r"\b(?i:rounds?\s+of)\b")),
    ("date", re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")),
    # host and CPU model names used as history ("on the genoa host", "a Zen 2"); not "Rome" or
    # "Milan" (AMD's code names, but also cities a prompt of the demo data names)
    ("host / CPU model", re.compile(r"\b(?i:genoa|zen\s*\d|epyc|xeon)\b")),
]

# Benchmark figures, looked for in the package only (the docs pages quote figures on purpose; the
# source points to docs/performance.md). Hard to detect in general: these catch the usual forms.
FIGURES = [
    ("benchmark figure", re.compile(r"\d+(?:\.\d+)?x\s+(?i:faster|slower)\b")),
    ("benchmark figure", re.compile(r"\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?x\s+per\s+(?:training\s+)?step\b")),
    ("benchmark figure", re.compile(r"\d+(?:\.\d+)?\s*s(?:/|\s+per\s+)(?:step|list)\b")),
    ("benchmark result file", re.compile(r"bench/results/")),
]

# A docs page with measured figures (Performance, Steering) may state the host they were measured on, once;
# the README and the package may not.
def _host_allowed_once(label: str) -> bool:
    return label.startswith("docs/")


def _matches(label: str, text: str, patterns) -> list[str]:
    """'label:line: [what] matched text' for every match in text."""
    found = []
    for what, pattern in patterns:
        for m in pattern.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            found.append((line, f"{label}:{line}: [{what}] {' '.join(m.group(0).split())!r}"))
    return [msg for _, msg in sorted(found)]


def _report(found: list[str], where: str) -> str:
    return (f"{len(found)} reference(s) to internal history in {where}; say what the software does and "
            "point to the docs page (docs/performance.md for figures) instead:\n  " + "\n  ".join(found))


def test_package_source_has_no_history():
    """src/lambda_dpo/**/*.py, whole text: docstrings, comments, help strings, error messages."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        label = str(path.relative_to(ROOT))
        found += _matches(label, path.read_text(encoding="utf-8"), HISTORY + FIGURES)
    assert not found, _report(found, "the package's source")


def _cli_help_texts() -> dict[str, str]:
    """`lambda-dpo --help` and every subcommand's --help, as a user's terminal prints them."""
    from lambda_dpo.cli import build_parser, main

    parser = build_parser()
    texts = {"lambda-dpo --help": parser.format_help()}
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, subparser in sub.choices.items():
        if name == "build-data":  # its options live in its own parser, which main hands --help to
            out = io.StringIO()
            with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
                main(["build-data", "--help"])
            assert done.value.code == 0
            texts[f"lambda-dpo {name} --help"] = out.getvalue()
        else:
            texts[f"lambda-dpo {name} --help"] = subparser.format_help()
    return texts


def test_cli_help_has_no_history(monkeypatch):
    # argparse wraps help to the terminal's width: a wide one keeps each option's help on one line
    monkeypatch.setenv("COLUMNS", "400")
    texts = _cli_help_texts()
    assert {"lambda-dpo train --help", "lambda-dpo build-data --help"} <= set(texts)
    assert all(texts.values())
    found = []
    for label, text in texts.items():
        found += _matches(label, text, HISTORY + FIGURES)
    assert not found, _report(found, "the CLI's help")


def _user_docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_user_docs_have_no_history():
    """README.md and docs/*.md (top level only: docs/demo-*/ are run reports)."""
    docs = _user_docs()
    assert ROOT / "README.md" in docs and len(docs) > 1
    found = []
    for path in docs:
        label = str(path.relative_to(ROOT))
        text = path.read_text(encoding="utf-8")
        hits = _matches(label, text, HISTORY)
        if _host_allowed_once(label):
            hosts = [h for h in hits if "[host / CPU model]" in h]
            hits = [h for h in hits if h not in hosts[:1]]
        found += hits
    assert not found, _report(found, "the user docs")


@pytest.mark.parametrize("text, flagged", [
    ("see issue 11 for why", True),
    ("fixed in Issue #4", True),
    ("closes #12.", True),
    ("the ninth round of the study", True),
    ("in round 3 we", True),
    ("two rounds of tuning", True),
    ("measured 2026-12-02", True),
    ("on the genoa host", True),
    ("a 2-core AMD EPYC", True),
    ("on a Zen 2", True),
    ("as agreed in this session", True),
    # legitimate uses
    ("x = round(w / step)", False),
    ("weights that round to 0 or 1 at tenths", False),
    ("w = round(weight, 2)", False),
    ("color: #333;", False),
    ("it&#39;s", False),
    ("https://example.org/page#123", False),
    ("s = requests.Session()", False),
    ("session_id = 3", False),
    ('"Italy": "Rome"', False),
    ("# 1. the prompt", False),
])
def test_history_patterns(text, flagged):
    """The patterns catch the forms of history above and leave code and ordinary words alone."""
    assert bool(_matches("t", text, HISTORY)) is flagged


@pytest.mark.parametrize("text, flagged", [
    ("24 prompts decode 1.6x faster than", True),
    ("1.12-1.20x per training step", True),
    ("a step takes 2.3 s/step", True),
    ("4.95 s per list", True),
    ("(bench/results/generation_variants.md)", True),
    ("Use ~10-50x larger with score_type=mean.", False),
    ("faster while memory lasts (docs/performance.md)", False),
])
def test_figure_patterns(text, flagged):
    assert bool(_matches("t", text, FIGURES)) is flagged
