"""Loaders: every format, every source kind, and every kind of bad record (lambda_dpo.data.loaders)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO

from lambda_dpo.data import FORMATS, DataError, SourceNotFoundError, detect_format, load_lists

ROOT = REPO
FIX = ROOT / "tests" / "fixtures"
TINY = ROOT / "examples" / "tiny_listwise.jsonl"


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def native(prompt="What is 2+2?", responses=("4", "5"), ratings=None, **extra):
    return {"prompt": prompt, "responses": list(responses),
            "ratings": ratings if ratings is not None else {"helpfulness": [5, 1]}, **extra}


def write_jsonl(path: Path, rows) -> Path:
    """Rows are dicts (dumped) or raw strings (written as they are)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------------------------------------
# native
# ----------------------------------------------------------------------------------------------


def test_tiny_example_loads_exactly():
    lists, report = load_lists(TINY)
    assert report.format == "native" and report.records_read == 24 and report.lists == 24
    assert report.n_rejected == 0 and len(lists) == 24
    assert all(lst.n in (3, 4) for lst in lists)
    assert all(lst.aspects == ("helpfulness", "honesty", "conciseness") for lst in lists)
    first = lists[0]
    assert first.prompt == (user("What is 7 + 5?"),)
    assert first.responses == ("12", "7 + 5 = 12. Adding 7 and 5: start at 7 and count up five more: "
                               "8, 9, 10, 11, 12.", "13")
    assert first.ratings == {"helpfulness": (5.0, 5.0, 1.0), "honesty": (5.0, 5.0, 2.0),
                             "conciseness": (5.0, 3.0, 5.0)}
    assert first.origin == f"{TINY}:1"
    rounding = next(lst for lst in lists if lst.prompt[0]["content"].startswith("Round 3.14159"))
    assert rounding.ratings["honesty"] == (5.0, None, 5.0)
    assert rounding.usable_aspects() == ("helpfulness", "conciseness")
    n_missing = sum(v is None for lst in lists for r in lst.ratings.values() for v in r)
    assert n_missing == 4


def test_native_messages_strings_and_missing(tmp_path):
    rows = [
        native(prompt=[{"role": "system", "content": "Be brief."}, user("Hi"), assistant("Hello"), user("2+2?")],
               responses=[[assistant("4")], assistant("four"), [user("2+2?"), assistant("5")], "22"],
               ratings={"helpfulness": ["5", 4, "1", "N/A"], "honesty": [5, None, 2, "n/a"],
                        "conciseness": [1, 2, 3, 4], "verbosity": None},
               id="x-1"),
    ]
    (lst,), report = load_lists(write_jsonl(tmp_path / "d.jsonl", rows))
    assert lst.prompt == ({"role": "system", "content": "Be brief."}, user("Hi"), assistant("Hello"), user("2+2?"))
    assert lst.responses == ("4", "four", "5", "22")
    assert lst.ratings == {"helpfulness": (5.0, 4.0, 1.0, None), "honesty": (5.0, None, 2.0, None),
                           "conciseness": (1.0, 2.0, 3.0, 4.0)}
    assert lst.to_json()["ratings"]["honesty"] == [5.0, None, 2.0, None]
    assert report.lists == 1


# ----------------------------------------------------------------------------------------------
# UltraFeedback
# ----------------------------------------------------------------------------------------------

UF_ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")


def test_ultrafeedback_loads_exactly():
    lists, report = load_lists(FIX / "ultrafeedback_sample.jsonl")
    assert report.format == "ultrafeedback" and report.records_read == 6 and report.lists == 6
    assert [lst.n for lst in lists] == [4, 4, 3, 4, 2, 4]
    first = lists[0]
    assert first.prompt == (user("Explain in one sentence what photosynthesis is."),)
    assert first.responses[1] == "Photosynthesis is how plants make food from light."
    assert first.aspects == UF_ASPECTS
    assert first.ratings == {"helpfulness": (5.0, 4.0, 1.0, 4.0), "honesty": (5.0, 4.0, 2.0, 5.0),
                             "instruction_following": (5.0, 4.0, 3.0, 2.0),
                             "truthfulness": (5.0, 5.0, 1.0, 5.0)}
    # annotations given as 1-element lists of dicts (record 4)
    assert lists[3].ratings["truthfulness"] == (5.0, 1.0, 5.0, 5.0)
    assert lists[3].ratings["honesty"] == (5.0, 3.0, 5.0, 5.0)


def test_ultrafeedback_na_is_none_never_a_number():
    lists, _ = load_lists(FIX / "ultrafeedback_sample.jsonl")
    fish = lists[1]
    assert fish.ratings["honesty"] == (5.0, None, None, 1.0)
    assert fish.ratings["helpfulness"] == (5.0, 1.0, 4.0, None)
    assert fish.usable_aspects() == ("instruction_following", "truthfulness")
    for lst in lists:
        for values in lst.ratings.values():
            assert all(v is None or (isinstance(v, float) and 1.0 <= v <= 5.0) for v in values)


def test_ultrafeedback_three_completions_and_missing_aspect():
    lists, _ = load_lists(FIX / "ultrafeedback_sample.jsonl")
    haiku = lists[2]
    assert haiku.n == 3 and haiku.responses[2] == "Leaves fall down\nautumn"
    assert haiku.ratings["instruction_following"] == (5.0, 1.0, 2.0)
    sleep = lists[4]  # the second completion has no truthfulness annotation
    assert sleep.ratings["truthfulness"] == (5.0, None)
    assert sleep.usable_aspects() == ("helpfulness", "honesty", "instruction_following")


def test_ultrafeedback_aspect_selection():
    path = FIX / "ultrafeedback_sample.jsonl"
    lists, report = load_lists(path, aspects=["honesty", "helpfulness"], skip_bad=True)
    assert all(lst.aspects == ("honesty", "helpfulness") for lst in lists)
    # the fish record has "N/A" in both kept aspects: no target can be built, so it is rejected
    assert len(lists) == 5 and report.rejected == Counter({"no_usable_aspect": 1})
    assert report.examples["no_usable_aspect"].startswith(f"{path}:2")
    with pytest.raises(DataError) as e:
        load_lists(FIX / "ultrafeedback_sample.jsonl", aspects=["helpfullness"])
    assert e.value.reason == "unknown_aspect" and "helpfullness" in str(e.value) and "Fix:" in str(e.value)


def test_ultrafeedback_bad_annotation(tmp_path):
    rec = {"instruction": "Q", "completions": [
        {"response": "a", "annotations": {"helpfulness": {"Rating": "4"}}},
        {"response": "b", "annotations": {"helpfulness": [{"Rating": "2"}, {"Rating": "3"}]}}]}
    with pytest.raises(DataError) as e:
        load_lists(write_jsonl(tmp_path / "uf.jsonl", [rec]))
    assert e.value.reason == "bad_annotation" and e.value.field == "completions[1].annotations.helpfulness"
    rec["completions"][1]["annotations"]["helpfulness"] = {"Rationale": "no rating"}
    with pytest.raises(DataError) as e:
        load_lists(write_jsonl(tmp_path / "uf.jsonl", [rec]))
    assert e.value.reason == "missing_field" and e.value.field == "completions[1].annotations.helpfulness.Rating"


# ----------------------------------------------------------------------------------------------
# HelpSteer2
# ----------------------------------------------------------------------------------------------


def test_helpsteer2_groups_rows_by_prompt_in_order():
    path = FIX / "helpsteer2_sample.jsonl"
    lists, report = load_lists(path, skip_bad=True)
    assert report.format == "helpsteer2" and report.records_read == 8 and report.lists == 3
    assert [lst.prompt[-1]["content"] for lst in lists] == [
        "What is the boiling point of water at sea level?", "List three fruits.", "show a hello world program"]
    water = lists[0]  # rows 1, 2 and 4 (not adjacent)
    assert water.origin == f"{path}:1"
    assert water.responses == ("100 degrees Celsius (212 degrees Fahrenheit).", "Water boils at 90 degrees Celsius.",
                               "At standard atmospheric pressure, water boils at 100 C.")
    assert water.ratings == {"helpfulness": (4.0, 1.0, 3.0), "correctness": (4.0, 0.0, 4.0),
                             "coherence": (4.0, 3.0, 4.0), "complexity": (1.0, 1.0, 2.0),
                             "verbosity": (1.0, 1.0, 2.0)}
    assert lists[1].origin == f"{path}:3" and lists[1].responses == ("Apple, banana, cherry.", "Carrot, potato, onion.")
    # the single-row prompt (line 8) is rejected, not dropped silently
    assert report.rejected == Counter({"too_few_responses": 1})
    assert report.examples["too_few_responses"].startswith(f"{path}:8: field 'prompt'")


def test_helpsteer2_multi_turn_prompt_becomes_messages():
    lists, _ = load_lists(FIX / "helpsteer2_sample.jsonl", skip_bad=True)
    assert lists[2].prompt == (user("c#"), assistant("C# is an object-oriented language by Microsoft."),
                               user("show a hello world program"))


def test_helpsteer2_single_row_prompt_raises_without_skip_bad():
    path = FIX / "helpsteer2_sample.jsonl"
    with pytest.raises(DataError) as e:
        load_lists(path)
    assert e.value.reason == "too_few_responses" and f"{path}:8" in str(e.value)


def test_helpsteer2_bad_row_names_its_line(tmp_path):
    rows = [{"prompt": "P", "response": "a", "helpfulness": 3},
            {"prompt": "P", "response": "b", "helpfulness": "high"},
            {"prompt": "P", "response": "c", "helpfulness": 1}]
    path = write_jsonl(tmp_path / "hs.jsonl", rows)
    with pytest.raises(DataError) as e:
        load_lists(path, format="helpsteer2")
    assert str(e.value).startswith(f"{path}:2: field 'helpfulness'") and e.value.reason == "bad_rating_type"
    (lst,), report = load_lists(path, format="helpsteer2", skip_bad=True, aspects=["helpfulness"])
    assert lst.responses == ("a", "c") and lst.ratings == {"helpfulness": (3.0, 1.0)}
    assert report.rejected == Counter({"bad_rating_type": 1}) and report.records_read == 3


# ----------------------------------------------------------------------------------------------
# pairwise
# ----------------------------------------------------------------------------------------------


def test_pairwise_standard_conversational_and_implicit_prompt():
    lists, report = load_lists(FIX / "pairwise_sample.jsonl")
    assert report.format == "pairwise" and report.lists == 4
    assert all(lst.n == 2 and lst.ratings == {"preference": (1.0, 0.0)} for lst in lists)
    standard, conversational, with_system, implicit = lists
    assert standard.prompt == (user("The sky is"),) and standard.responses == (" blue.", " green.")
    assert conversational.prompt == (user("What color is the sky?"),)
    assert conversational.responses == ("It is blue.", "It is green.")
    assert with_system.prompt == ({"role": "system", "content": "Answer briefly."}, user("2+2?"))
    assert with_system.responses == ("4", "5")
    assert implicit.prompt == (user("Capital of Italy?"),) and implicit.responses == ("Rome.", "Milan.")


@pytest.mark.parametrize("record, field, reason", [
    ({"chosen": "blue", "rejected": "green"}, "prompt", "missing_field"),
    ({"chosen": [user("a"), assistant("x")], "rejected": [user("b"), assistant("y")]}, "prompt", "missing_field"),
    ({"chosen": [user("a"), assistant("x")], "rejected": [user("a"), assistant("x")]}, "chosen", "identical_responses"),
    ({"chosen": [user("a"), assistant("x"), user("more")], "rejected": [user("a"), assistant("y")]},
     "chosen", "bad_response_type"),
    ({"prompt": "p", "chosen": [user("x")], "rejected": "y"}, "chosen", "bad_response_type"),
    ({"prompt": "p", "chosen": "x"}, "rejected", "missing_field"),
])
def test_pairwise_bad_records(tmp_path, record, field, reason):
    path = write_jsonl(tmp_path / "pw.jsonl", [record])
    with pytest.raises(DataError) as e:
        load_lists(path, format="pairwise")
    assert e.value.reason == reason and e.value.field == field
    assert str(e.value).startswith(f"{path}:1: field '{field}'") and "Fix:" in str(e.value)


def test_pairwise_aspects_must_include_preference():
    with pytest.raises(DataError) as e:
        load_lists(FIX / "pairwise_sample.jsonl", aspects=["helpfulness"])
    assert e.value.reason == "unknown_aspect" and "preference" in str(e.value)


# ----------------------------------------------------------------------------------------------
# malformed records: message names file, line, field and the fix
# ----------------------------------------------------------------------------------------------

MALFORMED = {
    "bad_json": ('{"prompt": "x", "responses": ["a", "b"], "ratings": {"helpfulness": [1, 2]}', "", "bad_json", None),
    "too_few": (native(responses=["only"], ratings={"helpfulness": [3]}), "responses", "too_few_responses", None),
    "empty_response": (native(responses=["ok", " \t"]), "responses[1]", "empty_response", None),
    "ratings_length": (native(ratings={"helpfulness": [1, 2, 3]}), "ratings.helpfulness", "ratings_length", None),
    "nan_literal": ('{"prompt": "x", "responses": ["a", "b"], "ratings": {"helpfulness": [1, NaN]}}',
                    "ratings.helpfulness[1]", "non_finite_rating", None),
    "nan_string": (native(ratings={"helpfulness": ["nan", 1]}), "ratings.helpfulness[0]", "non_finite_rating", None),
    "inf_literal": ('{"prompt": "x", "responses": ["a", "b"], "ratings": {"helpfulness": [Infinity, 1]}}',
                    "ratings.helpfulness[0]", "non_finite_rating", None),
    "inf_string": (native(ratings={"helpfulness": [1, "-inf"]}), "ratings.helpfulness[1]", "non_finite_rating", None),
    "abc_rating": (native(ratings={"helpfulness": ["abc", 1]}), "ratings.helpfulness[0]", "bad_rating_type", None),
    "bool_rating": (native(ratings={"helpfulness": [True, 1]}), "ratings.helpfulness[0]", "bad_rating_type", None),
    "unknown_aspect": (native(ratings={"helpfulnes": [1, 2]}), "ratings.helpfulnes", "unknown_aspect",
                       ["helpfulness", "honesty"]),
    "prompt_type": (native(prompt=42), "prompt", "bad_prompt_type", None),
    "prompt_dict": (native(prompt={"text": "hi"}), "prompt", "bad_prompt_type", None),
    "empty_prompt": (native(prompt="  "), "prompt", "empty_prompt", None),
    "prompt_role": (native(prompt=[{"role": "robot", "content": "hi"}]), "prompt[0].role", "bad_message", None),
    "prompt_ends_assistant": (native(prompt=[user("hi"), assistant("hello")]), "prompt[1]", "bad_message", None),
    "missing_ratings": ({"prompt": "x", "responses": ["a", "b"]}, "ratings", "missing_field", None),
    "responses_type": ({"prompt": "x", "responses": "a, b", "ratings": {"helpfulness": [1, 2]}}, "responses", "bad_responses_type", None),
    "ratings_type": (native(ratings=[1, 2]), "ratings", "bad_ratings_type", None),
    "aspect_ratings_type": (native(ratings={"helpfulness": "5, 1"}), "ratings.helpfulness", "bad_ratings_type", None),
    "response_type": (native(responses=["a", 7]), "responses[1]", "bad_response_type", None),
    "response_user_message": (native(responses=["a", [user("b")]]), "responses[1]", "bad_response_type", None),
    "no_usable_aspect": (native(ratings={"helpfulness": [1, None]}), "ratings", "no_usable_aspect", None),
    "truncated_length": (native(truncated=[True]), "truncated", "bad_truncated", None),
    "truncated_type": (native(truncated=[1, 0]), "truncated", "bad_truncated", None),
    "not_an_object": ("[1, 2, 3]", "", "not_an_object", None),
    "mixed_format": ({"prompt": "x", "chosen": "a", "rejected": "b"}, "", "mixed_format", None),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_record_message(tmp_path, kind):
    bad, field, reason, aspects = MALFORMED[kind]
    # a good record, a blank line (still counted in line numbers), then the bad record on line 3
    path = write_jsonl(tmp_path / f"{kind}.jsonl", [native(), "", bad, native()])
    with pytest.raises(DataError) as e:
        load_lists(path, aspects=aspects)
    err, msg = e.value, str(e.value)
    assert err.reason == reason and err.field == field and err.origin == f"{path}:3"
    assert msg.startswith(f"{path}:3") and "Fix:" in msg
    if field:
        assert f"field '{field}'" in msg
    # with skip_bad the two good records survive and the bad one is counted under its reason
    lists, report = load_lists(path, aspects=aspects, skip_bad=True)
    assert len(lists) == 2 and report.records_read == 3 and report.lists == 2
    assert report.rejected == Counter({reason: 1}) and report.examples[reason] == msg


def test_malformed_fixture_skip_bad_counts_exactly():
    path = FIX / "malformed.jsonl"
    lists, report = load_lists(path, skip_bad=True)
    assert [lst.prompt[0]["content"] for lst in lists] == ["Is water wet?", "Is fire hot?"]
    assert [lst.origin for lst in lists] == [f"{path}:1", f"{path}:10"]
    assert report.records_read == 9 and report.lists == 2 and report.n_rejected == 7
    assert report.rejected == Counter({"bad_json": 1, "too_few_responses": 1, "empty_response": 1,
                                       "non_finite_rating": 2, "ratings_length": 1, "bad_rating_type": 1})
    assert report.examples["non_finite_rating"].startswith(f"{path}:5: field 'ratings.helpfulness[0]'")


def test_malformed_fixture_first_error_propagates():
    path = FIX / "malformed.jsonl"
    with pytest.raises(DataError) as e:
        load_lists(path)
    assert e.value.reason == "bad_json" and str(e.value).startswith(f"{path}:2: invalid JSON")


def test_bad_utf8_line(tmp_path):
    path = tmp_path / "enc.jsonl"
    path.write_bytes(json.dumps(native()).encode() + b"\n" + b'{"prompt": "\xff"}\n')
    lists, report = load_lists(path, skip_bad=True)
    assert len(lists) == 1 and report.rejected == Counter({"bad_encoding": 1})


# ----------------------------------------------------------------------------------------------
# sources: .json, parquet, save_to_disk, hub, missing paths
# ----------------------------------------------------------------------------------------------


def test_json_array_file(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([native(), native(prompt="Q2", ratings={"helpfulness": [1, 2]})]))
    lists, report = load_lists(path)
    assert [lst.origin for lst in lists] == [f"{path}:record 0", f"{path}:record 1"]
    assert lists[1].ratings == {"helpfulness": (1.0, 2.0)}
    path.write_text(json.dumps({"data": [native()]}))
    with pytest.raises(DataError) as e:
        load_lists(path)
    assert e.value.reason == "bad_file"
    path.write_text('[{"prompt": "x",\n "responses": [}]')
    with pytest.raises(DataError) as e:
        load_lists(path, skip_bad=True)
    assert e.value.reason == "bad_json" and str(e.value).startswith(f"{path}:2:")


def test_parquet_native_and_helpsteer2(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [native(prompt=[user("P1")], responses=["a", "b", "c"], ratings={"helpfulness": [3, None, 1], "honesty": [1, 2, 3]}),
            native(prompt=[user("P2")], ratings={"helpfulness": [2, 1]})]  # no honesty: Arrow fills null
    path = tmp_path / "native.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    lists, report = load_lists(path)
    assert report.format == "native" and [lst.origin for lst in lists] == [f"{path}:row 0", f"{path}:row 1"]
    assert lists[0].ratings == {"helpfulness": (3.0, None, 1.0), "honesty": (1.0, 2.0, 3.0)}
    assert lists[1].prompt == (user("P2"),) and lists[1].ratings == {"helpfulness": (2.0, 1.0)}

    hs = [{"prompt": "Q", "response": r, "helpfulness": h, "correctness": 2, "coherence": 3, "complexity": 1,
           "verbosity": 0} for r, h in (("x", 4), ("y", 1))]
    path = tmp_path / "hs.parquet"
    pq.write_table(pa.Table.from_pylist(hs), path)
    (lst,), report = load_lists(path)
    assert report.format == "helpsteer2" and lst.responses == ("x", "y")
    assert lst.ratings["helpfulness"] == (4.0, 1.0)


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    with (FIX / "pairwise_sample.jsonl").open() as f:
        standard = [json.loads(line) for line in f][:1]
    ds = datasets.Dataset.from_list([native(), native(prompt="Q2")])
    ds.save_to_disk(str(tmp_path / "single"))
    lists, report = load_lists(tmp_path / "single")
    assert report.format == "native" and len(lists) == 2
    assert lists[1].origin == f"{tmp_path / 'single'}:row 1" and lists[1].prompt == (user("Q2"),)

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(standard * 3),
                               "test": datasets.Dataset.from_list(standard)})
    dd.save_to_disk(str(tmp_path / "dict"))
    train, _ = load_lists(tmp_path / "dict")
    test, report = load_lists(tmp_path / "dict", split="test")
    assert (len(train), len(test), report.format) == (3, 1, "pairwise")
    assert test[0].responses == (" blue.", " green.")
    with pytest.raises(DataError) as e:
        load_lists(tmp_path / "dict", split="validation")
    assert "train" in str(e.value) and "test" in str(e.value)


def test_directory_that_is_not_a_dataset(tmp_path):
    with pytest.raises(DataError) as e:
        load_lists(tmp_path)
    assert e.value.reason == "bad_file" and str(tmp_path) in str(e.value)


def test_missing_file_is_a_clear_file_not_found(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError) as e:
        load_lists(path)
    assert isinstance(e.value, DataError) and e.value.reason == "source_not_found"
    assert str(path) in str(e.value) and "Fix:" in str(e.value)


def test_hub_name_unreachable(monkeypatch):
    import datasets

    def offline(name, split=None, **kw):
        raise ConnectionError("Couldn't reach 'someone/prefs' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(SourceNotFoundError) as e:
        load_lists("someone/prefs")
    msg = str(e.value)
    assert "someone/prefs" in msg and "does not exist locally" in msg and "Couldn't reach" in msg


def test_hub_name_loads(monkeypatch):
    import datasets

    calls = []

    def fake(name, split=None, **kw):
        calls.append((name, split))
        return datasets.Dataset.from_list([native(), native(prompt="Q2")])

    monkeypatch.setattr(datasets, "load_dataset", fake)
    lists, report = load_lists("someone/prefs", split="test_prefs")
    assert calls == [("someone/prefs", "test_prefs")]
    assert len(lists) == 2 and lists[0].origin == "someone/prefs:row 0" and report.source == "someone/prefs"


def test_empty_and_unsupported_sources(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError) as e:
        load_lists(empty)
    assert e.value.reason == "empty_source"
    csv = tmp_path / "d.csv"
    csv.write_text("a,b\n")
    with pytest.raises(DataError) as e:
        load_lists(csv)
    assert e.value.reason == "bad_file"
    with pytest.raises(ValueError):
        load_lists(TINY, format="listwise")


# ----------------------------------------------------------------------------------------------
# format detection
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, fmt", [
    (TINY, "native"),
    (FIX / "ultrafeedback_sample.jsonl", "ultrafeedback"),
    (FIX / "helpsteer2_sample.jsonl", "helpsteer2"),
    (FIX / "pairwise_sample.jsonl", "pairwise"),
])
def test_auto_detection_per_format(path, fmt):
    first = json.loads(path.read_text().splitlines()[0])
    assert detect_format(first) == fmt
    _, report = load_lists(path, skip_bad=True)
    assert report.format == fmt
    _, explicit = load_lists(path, format=fmt, skip_bad=True)
    assert explicit.format == fmt


def test_detect_format_other_shapes():
    assert set(FORMATS) == {"native", "ultrafeedback", "helpsteer2", "pairwise"}
    assert detect_format({"chosen": [user("a"), assistant("b")], "rejected": []}) == "pairwise"
    with pytest.raises(DataError) as e:
        detect_format({"instruction": "x", "output": "y"})
    msg = str(e.value)
    assert e.value.reason == "unknown_format" and "'instruction'" in msg and "'output'" in msg
    assert all(f in msg for f in FORMATS) and "Fix:" in msg


def test_unknown_first_record_raises_even_with_skip_bad(tmp_path):
    path = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "x", "input": "", "output": "y"}, native()])
    with pytest.raises(DataError) as e:
        load_lists(path, skip_bad=True)
    assert e.value.reason == "unknown_format" and str(e.value).startswith(f"{path}:1")


def test_detection_skips_unreadable_leading_lines(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ["{broken", native()])
    lists, report = load_lists(path, skip_bad=True)
    assert report.format == "native" and len(lists) == 1 and report.rejected == Counter({"bad_json": 1})


def test_native_truncated_flags_and_build_data_meta(tmp_path):
    meta = [{"slot": 0, "hit_max_new_tokens": False}, {"slot": 1, "hit_max_new_tokens": True}]
    path = write_jsonl(tmp_path / "t.jsonl", [native(truncated=[True, False]), native(meta=meta), native(),
                                             native(meta=[{"slot": 0}, {"slot": 1}])])
    lists, _ = load_lists(path)
    assert [lst.truncated for lst in lists] == [(True, False), (False, True), (), ()]
    assert [lst.is_truncated(1) for lst in lists] == [False, True, False, False]
    # written back and read again: the flags survive, a list with none cut writes no key
    assert lists[0].to_json()["truncated"] == [True, False] and "truncated" not in lists[2].to_json()
    again, _ = load_lists(write_jsonl(tmp_path / "u.jsonl", [lst.to_json() for lst in lists]))
    assert [lst.truncated for lst in again] == [(True, False), (False, True), (), ()]


def test_select_aspects_keeps_truncated_flags():
    from lambda_dpo.data.schema import make_list, select_aspects
    lst = make_list([user("q")], ["a", "b"], {"x": [1, 2], "y": [2, 1]}, "m:1", truncated=[False, True])
    kept, ignored, dropped = select_aspects([lst], ["y"])
    assert kept[0].truncated == (False, True) and tuple(kept[0].ratings) == ("y",) and ignored == ("x",)


def test_build_data_meta_with_a_bad_flag_is_an_error_naming_meta(tmp_path):
    meta = [{"hit_max_new_tokens": False}, {"hit_max_new_tokens": 1}]
    path = write_jsonl(tmp_path / "m.jsonl", [native(meta=meta)])
    with pytest.raises(DataError) as e:
        load_lists(path)
    assert e.value.reason == "bad_truncated" and e.value.field == "meta" and e.value.origin == f"{path}:1"
