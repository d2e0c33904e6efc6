"""Callable judges, the judges list, rating kept ratings, and the append-only output files."""

from __future__ import annotations

import json
import os

import pytest

from lambda_dpo.labeling.judges import RateInput, build_judge, build_judges
from lambda_dpo.labeling.output import AppendWriter, open_run, output_paths, read_records
from lambda_dpo.labeling.rate import judge_lists

ITEM = RateInput(({"role": "user", "content": "Q?"},), ("short", "a much longer reply here", "boom"), {"id": 1})


def flaky(record, reply):
    if reply == "boom":
        raise RuntimeError("cannot judge this")
    return {"good": len(reply), "odd": "high" if reply == "short" else float("nan"), "none": None}


def not_a_mapping(record, reply):
    return 3


def test_a_callable_judge_counts_failures_as_missing_never_invents(caplog):
    judge = build_judge({"type": "callable", "function": f"{__name__}:flaky", "aspects": ["good", "odd", "none",
                                                                                       "absent"]})
    out = judge.rate([ITEM], [{a: [0, 1, 2] for a in judge.aspects}])[0]
    assert out.values == {"good": [5.0, 24.0, None], "odd": [None, None, None], "none": [None] * 3,
                          "absent": [None] * 3}
    assert out.reasons == {"good": {2: "error"}, "odd": {0: "bad_value", 1: "non_finite", 2: "error"},
                           "none": {0: "no_rating", 1: "no_rating", 2: "error"},
                           "absent": {0: "no_rating", 1: "no_rating", 2: "error"}}
    assert "raised RuntimeError: cannot judge this" in caplog.text
    out = build_judge({"type": "callable", "function": f"{__name__}:not_a_mapping", "aspects": ["a"]}).rate(
        [ITEM], [{"a": [0]}])[0]
    assert out.reasons == {"a": {0: "error"}}


def test_a_class_is_instantiated_and_bad_names_are_explained():
    judge = build_judge({"type": "callable", "function": "lambda_dpo.evaluation.judges:LengthJudge",
                         "aspects": ["conciseness"]})
    assert judge.rate([ITEM], [{"conciseness": [0]}])[0].values["conciseness"][0] == 5.0
    with pytest.raises(ValueError, match="is not 'module:name'"):
        build_judge({"type": "callable", "function": "no_colon", "aspects": ["a"]}).rate([ITEM], [{"a": [0]}])
    with pytest.raises(ValueError, match="cannot import 'nope' from 'lambda_dpo.evaluation.judges'"):
        build_judge({"type": "callable", "function": "lambda_dpo.evaluation.judges:nope", "aspects": ["a"]}).rate(
            [ITEM], [{"a": [0]}])
    with pytest.raises(ValueError, match="aspects must be a list"):
        build_judge({"type": "callable", "function": "m:f", "aspects": "a"})
    with pytest.raises(ValueError, match="type 'rm' is not one of reward_model, llm, callable"):
        build_judge({"type": "rm"})
    with pytest.raises(ValueError, match=r"judges\[1\] \(callable\): missing aspects"):
        build_judges([{"type": "callable", "function": "m:f", "aspects": ["a"]}, {"type": "callable", "function": "m:g"}])


def test_an_aspect_belongs_to_one_judge():
    with pytest.raises(ValueError, match=r"judges\[1\] rates 'a', which judges\[0\] rates too"):
        build_judges([{"type": "callable", "function": "m:f", "aspects": ["a"]},
                      {"type": "llm", "base_url": "http://x/v1", "model": "m", "rubrics": {"a": "5: good"}}])


def test_kept_ratings_are_not_judged_again_unless_asked():
    judges = build_judges([{"type": "callable", "function": f"{__name__}:flaky", "aspects": ["good"]}])
    kept = judge_lists([ITEM], [{"good": [1, None, None], "extra": [3, 2, 1]}], judges)[0]
    assert kept.ratings == {"good": [1, 24.0, None], "extra": [3, 2, 1]}
    assert kept.provenance["good"] == {"judge": f"callable:{__name__}:flaky", "kept": 1, "judged": 1,
                                       "missing": {"error": 1}}
    assert kept.provenance["extra"] == {"judge": "input", "kept": 3, "judged": 0, "missing": {}}
    again = judge_lists([ITEM], [{"good": [1, None, None]}], judges, keep_ratings=False)[0]
    assert again.ratings["good"] == [5.0, 24.0, None] and again.provenance["good"]["kept"] == 0


def test_records_are_appended_whole_and_a_partial_last_line_is_cut(tmp_path):
    path = tmp_path / "out.jsonl"
    with AppendWriter(path) as w:
        w.write({"a": 1})
        w.write({"b": "é"})
    assert read_records(path) == [{"a": 1}, {"b": "é"}]
    with open(path, "ab") as f:
        f.write(b'{"c": ')
    assert read_records(path) == [{"a": 1}, {"b": "é"}] and path.read_bytes().endswith(b'{"c": ')
    assert read_records(path, repair=True) == [{"a": 1}, {"b": "é"}]
    assert path.read_text() == '{"a": 1}\n{"b": "é"}\n'
    with open(path, "ab") as f:
        f.write(b'{"c": 3}')  # complete, only its newline missing: kept
    assert read_records(path, repair=True)[-1] == {"c": 3} and path.read_text().endswith('{"c": 3}\n')
    path.write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(ValueError, match=r"out.jsonl:2: not a JSON record"):
        read_records(path)


def test_open_run_resumes_only_the_same_config(tmp_path):
    paths = output_paths(tmp_path / "data" / "set.jsonl")
    assert paths.skipped.name == "set.skipped.jsonl" and paths.datasheet_md.name == "set.datasheet.md"
    assert open_run(paths, "h1", {"seed": 0, "model": "m"}) == set()
    with AppendWriter(paths.records) as w:
        w.write({"provenance": {"key": "k1"}})
    with AppendWriter(paths.skipped) as w:
        w.write({"skipped": {"key": "k2"}})
    assert open_run(paths, "h1", {"seed": 0, "model": "m"}) == {"k1", "k2"}
    with pytest.raises(ValueError, match=r"differs in: model, seed\)"):
        open_run(paths, "h2", {"seed": 1, "model": "n"})
    assert open_run(paths, "h2", {"seed": 1}, overwrite=True) == set() and not paths.records.exists()
    assert json.loads(paths.settings.read_text())["fingerprint"] == "h2"
    os.unlink(paths.settings)
    paths.records.write_text('{"provenance": {"key": "k"}}\n')
    with pytest.raises(ValueError, match="cannot be resumed"):
        open_run(paths, "h2", {})
