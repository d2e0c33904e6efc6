"""`label` end to end in one process on a tiny model: records training reads, provenance, the datasheet; ratings
the input gives are kept; a run continued (larger limit, or after a cut last line) writes what one run writes."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import REPO

from lambda_dpo.data import load_lists
from lambda_dpo.labeling import label
from lambda_dpo.labeling.output import output_paths, read_records

DEMO_TRAIN = str(REPO / "src" / "lambda_dpo" / "resources" / "demo" / "train.jsonl")
RULES = {"type": "callable", "function": "lambda_dpo.demo.dataset.judges:judge_record",
         "aspects": ["instruction_following", "correctness", "conciseness", "informativeness"]}
CALLS: Counter = Counter()


def counting_judge(record, reply):
    """A callable judge that counts its calls: 'length' is the reply's character count."""
    CALLS[reply] += 1
    return {"length": float(len(reply)), "words": len(reply.split())}


def sampling_config(tmp_path, model, **kw):
    cfg = {"input": DEMO_TRAIN, "output": str(tmp_path / "out" / "labeled.jsonl"), "limit": 4, "resample": True,
           "model": model, "n_responses": 3, "max_new_tokens": 6, "batch_size": 2, "device": "cpu",
           "slots": [{"system": "Answer in one short sentence.", "temperature": 1.0}, {"temperature": 0.7, "top_p": 0.9}],
           "judges": [RULES], "progress": False}
    cfg.update(kw)
    return cfg


def without_time(records):
    for r in records:
        r["provenance"].pop("labeled_at")
    return records


@pytest.fixture(scope="module")
def one_run(tiny_llama_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one_run")
    result = label(sampling_config(tmp, tiny_llama_dir))
    return result, without_time(read_records(result.output))


def test_records_are_native_lists_with_provenance(one_run, tiny_llama_dir):
    result, records = one_run
    assert (result.lists, result.written, result.skipped, result.done_before) == (4, 4, 0, 0)
    lists, report = load_lists(str(result.output))  # what validate-data and train read
    assert len(lists) == 4 and report.n_rejected == 0
    assert all(lst.n == 3 and set(lst.ratings) == set(RULES["aspects"]) for lst in lists)
    demo = [json.loads(line) for line in open(DEMO_TRAIN).readlines()[:4]]
    for record, source in zip(records, demo):
        assert record["prompt"] == source["prompt"] and record["spec"] == source["spec"]  # extras pass through
        assert record["responses"] != source["responses"]  # resampled
        assert sorted(m["slot"] for m in record["meta"]) == [0, 0, 1]
        assert {m["system"] for m in record["meta"]} == {"Answer in one short sentence.", None}
        prov = record["provenance"]
        assert prov["model"] == tiny_llama_dir and prov["origin"].startswith(DEMO_TRAIN)
        assert prov["ratings"]["correctness"] == {"judge": "callable:" + RULES["function"], "kept": 0, "judged": 3,
                                                  "missing": {}}
    assert all(lst.truncated for lst in lists)  # 6 new tokens: every reply is cut, and marked so


def test_the_datasheet_counts_what_the_file_holds(one_run):
    result, _ = one_run
    sheet = json.loads(output_paths(result.output).datasheet_json.read_text())
    assert sheet["lists"] == 4 and sheet["replies"] == 12 and sheet["replies_cut"] == 12
    assert sheet["aspects"]["conciseness"]["judged"] == 12 and sheet["aspects"]["conciseness"]["missing"] == 0
    assert sum(sheet["aspects"]["conciseness"]["histogram_1_5"]) == 12
    text = result.datasheet.read_text()
    assert "| conciseness | callable:lambda_dpo.demo.dataset.judges:judge_record | 0 | 12 | 0 | 4/4 |" in text


def test_a_run_continued_with_a_larger_limit_writes_what_one_run_writes(one_run, tiny_llama_dir, tmp_path):
    _, records = one_run
    first = label(sampling_config(tmp_path, tiny_llama_dir, limit=1))  # half a chunk: the chunk is sampled again
    assert first.written == 1
    again = label(sampling_config(tmp_path, tiny_llama_dir, limit=4))
    assert (again.written, again.done_before, again.lists) == (3, 1, 4)
    assert without_time(read_records(again.output)) == records


def test_a_cut_last_line_is_labeled_again(one_run, tiny_llama_dir, tmp_path):
    _, records = one_run
    cfg = sampling_config(tmp_path, tiny_llama_dir, limit=3)
    out = label(cfg).output
    raw = out.read_bytes()
    out.write_bytes(raw[: len(raw) - 40])  # killed while writing the third record
    result = label(sampling_config(tmp_path, tiny_llama_dir))
    assert (result.written, result.done_before) == (2, 2)
    assert without_time(read_records(out)) == records


def test_another_config_does_not_resume_the_output(one_run, tiny_llama_dir, tmp_path):
    label(sampling_config(tmp_path, tiny_llama_dir, limit=1))
    with pytest.raises(ValueError, match=r"another label config \(it differs in: seed\).*--overwrite"):
        label(sampling_config(tmp_path, tiny_llama_dir, seed=1))
    assert label(sampling_config(tmp_path, tiny_llama_dir, limit=1, seed=1), overwrite=True).written == 1


def test_given_ratings_are_kept_and_only_missing_ones_judged(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"prompt": "Q?", "responses": ["a b", "c", "d e f"],
                                  "ratings": {"length": [10, None, None], "other": [1, 2, 3]}}) + "\n"
                      + json.dumps({"prompt": "R?", "responses": ["x", "yy"]}) + "\n")
    CALLS.clear()
    cfg = {"input": str(source), "output": str(tmp_path / "out.jsonl"), "progress": False,
           "judges": [{"type": "callable", "function": f"{__name__}:counting_judge", "aspects": ["length", "words"]}]}
    result = label(cfg)
    first, second = read_records(result.output)
    assert first["ratings"] == {"length": [10, 1.0, 5.0], "words": [2.0, 1.0, 3.0], "other": [1, 2, 3]}
    assert first["provenance"]["ratings"]["length"] == {"judge": f"callable:{__name__}:counting_judge", "kept": 1,
                                                        "judged": 2, "missing": {}}
    assert first["provenance"]["ratings"]["other"]["judge"] == "input"
    assert second["ratings"] == {"length": [1.0, 2.0], "words": [1.0, 1.0]}
    assert CALLS == {"a b": 1, "c": 1, "d e f": 1, "x": 1, "yy": 1}  # a reply rated on both aspects by one call
    assert first["provenance"]["model"] is None and first["provenance"]["sampling"] is None


def test_the_demo_rule_judges_reproduce_the_shipped_ratings(tmp_path):
    demo = [json.loads(line) for line in open(DEMO_TRAIN).readlines()[:3]]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({**r, "ratings": {}}) + "\n" for r in demo))
    result = label({"input": str(source), "output": str(tmp_path / "out.jsonl"), "judges": [RULES], "progress": False})
    assert [r["ratings"] for r in read_records(result.output)] == [
        {a: [float(v) for v in r["ratings"][a]] for a in RULES["aspects"]} for r in demo]


def test_a_list_without_a_usable_aspect_is_skipped_and_can_be_labeled_again(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"prompt": "Q?", "responses": ["a", "b"], "spec": {}}) + "\n")
    cfg = {"input": str(source), "output": str(tmp_path / "out.jsonl"), "progress": False, "judges": [RULES]}
    result = label(cfg)  # the demo's judges need the demo's spec: every call fails, every rating is missing
    assert (result.lists, result.skipped) == (0, 1)
    (skipped,) = read_records(output_paths(result.output).skipped)
    assert skipped["skipped"]["reason"] == "no_usable_aspect" and skipped["responses"] == ["a", "b"]
    assert skipped["provenance"]["ratings"]["correctness"]["missing"] == {"error": 2}
    sheet = json.loads(output_paths(result.output).datasheet_json.read_text())
    assert sheet["skipped"]["by_reason"] == {"no_usable_aspect": 1}
    again = label({**cfg, "input": str(output_paths(result.output).skipped), "output": str(tmp_path / "b.jsonl"),
                   "judges": [{"type": "callable", "function": f"{__name__}:counting_judge", "aspects": ["length"]}]})
    assert again.lists == 1 and read_records(again.output)[0]["ratings"]["length"] == [1.0, 1.0]
