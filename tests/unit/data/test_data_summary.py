"""Load summaries: exact numbers on a hand-made input, and the text the CLI prints."""

from __future__ import annotations

import json
from collections import Counter

from conftest import REPO

from lambda_dpo.data import DataError, LoadReport, format_summary, load_lists, summarize
from lambda_dpo.data.schema import make_list

ROOT = REPO
U = ({"role": "user", "content": "q"},)


def hand_made():
    lists = [
        make_list(U, ["a", "b"], {"help": [4, 2], "honest": [5, None]}, "f:1"),
        make_list(U, ["a", "b", "c"], {"help": [1, 3, 5]}, "f:2"),
        make_list(U, ["a", "b", "c", "d"], {"help": [2, 2, 2, 2], "honest": [1, 2, 3, None]}, "f:3"),
        make_list(U, ["a", "b"], {"help": [3, 3]}, "f:4"),
    ]
    report = LoadReport(source="f", format="native", records_read=7, lists=4)
    report.reject(DataError("f:5", "responses", "1 response(s)", "give 2", "too_few_responses"))
    report.reject(DataError("f:6", "", "invalid JSON", "fix it", "bad_json"))
    report.reject(DataError("f:7", "responses", "0 response(s)", "give 2", "too_few_responses"))
    return lists, report


def test_summary_numbers_are_exact():
    lists, report = hand_made()
    s = summarize(lists, report)
    assert s == {
        "source": "f",
        "format": "native",
        "records_read": 7,
        "lists_accepted": 4,
        "rejected_total": 3,
        "responses_per_list": {"min": 2, "mean": 2.75, "max": 4, "histogram": {2: 2, 3: 1, 4: 1}},
        "aspects": {
            # help: 2+3+4+2 = 11 ratings, sum 4+2+1+3+5+2*4+3+3 = 29
            "help": {"lists": 4, "lists_usable": 4, "ratings": 11, "missing_ratings": 0,
                     "min": 1.0, "mean": 29 / 11, "max": 5.0},
            # honest: present 5, 1, 2, 3 (mean 2.75); one None in each of two lists
            "honest": {"lists": 2, "lists_usable": 0, "ratings": 4, "missing_ratings": 2,
                       "min": 1.0, "mean": 2.75, "max": 5.0},
        },
        "rejected": {
            "too_few_responses": {"count": 2, "example": "f:5: field 'responses': 1 response(s). Fix: give 2"},
            "bad_json": {"count": 1, "example": "f:6: invalid JSON. Fix: fix it"},
        },
    }
    assert list(s["rejected"]) == ["too_few_responses", "bad_json"]  # most frequent first
    again = json.loads(json.dumps(s))
    assert again["responses_per_list"]["histogram"] == {"2": 2, "3": 1, "4": 1}


def test_summary_of_nothing():
    s = summarize([], LoadReport(source="f", format="auto"))
    assert s["responses_per_list"] == {"min": None, "mean": None, "max": None, "histogram": {}}
    assert s["aspects"] == {} and s["rejected"] == {} and s["lists_accepted"] == 0
    text = format_summary(s)
    assert "lists accepted: 0" in text and "rejected records: none" in text


def test_format_summary_mentions_everything():
    lists, report = hand_made()
    text = format_summary(summarize(lists, report))
    assert "source: f" in text and "format: native" in text
    assert "records read: 7" in text and "lists accepted: 4" in text and "rejected: 3" in text
    assert "min 2, mean 2.75, max 4" in text and "N=2: 2, N=3: 1, N=4: 1" in text
    assert "usable in 0/4 lists, 2 missing rating(s), ratings 1..5 (mean 2.75)" in text
    assert "too_few_responses: 2" in text and "bad_json: 1" in text
    assert "f:5: field 'responses': 1 response(s). Fix: give 2" in text
    assert text.index("too_few_responses") < text.index("bad_json")


def test_summary_of_real_load():
    lists, report = load_lists(ROOT / "tests" / "fixtures" / "malformed.jsonl", skip_bad=True)
    s = summarize(lists, report)
    assert (s["records_read"], s["lists_accepted"], s["rejected_total"]) == (9, 2, 7)
    assert {r: v["count"] for r, v in s["rejected"].items()} == dict(report.rejected)
    assert s["aspects"]["helpfulness"] == {"lists": 2, "lists_usable": 2, "ratings": 4, "missing_ratings": 0,
                                           "min": 1.0, "mean": 3.0, "max": 5.0}
    assert Counter(s["responses_per_list"]["histogram"]) == Counter({2: 2})
    text = format_summary(s)
    assert "non_finite_rating: 2" in text and "malformed.jsonl:5" in text
