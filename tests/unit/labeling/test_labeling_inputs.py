"""The label config and the prompts it reads: sources, prompt fields, given replies and ratings, bad records
counted by reason."""

from __future__ import annotations

import json

import pytest

from lambda_dpo.labeling import LabelConfig, load_label_config
from lambda_dpo.labeling.config import fingerprint
from lambda_dpo.labeling.inputs import prompt_key, read_prompts

JUDGES = [{"type": "callable", "function": "lambda_dpo.demo.dataset.judges:judge_record", "aspects": ["conciseness"]}]


def write_jsonl(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return str(path)


def config(tmp_path, source, **kw):
    return LabelConfig(input=source, output=str(tmp_path / "out.jsonl"), judges=JUDGES, **kw)


def test_prompts_from_prompt_and_messages_fields_and_bad_records_counted(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [
        {"prompt": "What is 2+2?", "id": "a"},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello!"}]},
        {"prompt": ""},                                    # empty_prompt
        {"question": "no prompt field"},                   # missing_field
        "{not json",                                       # bad_json
        {"prompt": [{"role": "user", "content": 3}]},      # bad_message
        {"prompt": "What is 2+2?", "id": "again"},         # duplicate_prompt
        [1, 2],                                            # not_an_object
    ])
    items, report = read_prompts(config(tmp_path, source))
    assert [it.prompt for it in items] == [
        ({"role": "user", "content": "What is 2+2?"},),
        ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"})]
    assert items[0].extras == {"id": "a"} and items[0].responses is None
    assert report.records_read == 8 and report.usable == 2
    assert dict(report.rejected) == {"empty_prompt": 1, "missing_field": 1, "bad_json": 1, "bad_message": 1,
                                     "duplicate_prompt": 1, "not_an_object": 1}
    assert report.examples["duplicate_prompt"].startswith(f"{source}:7: field 'prompt': the same prompt")
    assert items[0].key == prompt_key(items[0].prompt) and items[0].key != items[1].key


def test_limit_counts_usable_prompts_and_reads_to_the_end_of_its_batch(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"prompt": ""}, *({"prompt": f"q{i}"} for i in range(6))])
    items, report = read_prompts(config(tmp_path, source, limit=3, batch_size=2))
    assert report.usable == 3 and report.records_read == 5
    assert [it.prompt[0]["content"] for it in items] == ["q0", "q1", "q2", "q3"]  # q3 shares q2's batch


def test_given_replies_and_ratings_are_kept_unless_resampled(tmp_path):
    record = {"prompt": "Q?", "responses": ["a", "b", "c"], "ratings": {"conciseness": [5, None, "N/A"],
                                                                        "honesty": [1, 2, 3]},
              "truncated": [False, True, False], "spec": {"kind": "x"}}
    source = write_jsonl(tmp_path / "in.jsonl", [record, {"prompt": "R?", "responses": ["only one"]},
                                                 {"prompt": "S?", "responses": ["x", "y"], "ratings": {"a": [1]}}])
    items, report = read_prompts(config(tmp_path, source))
    (item,) = items
    assert item.responses == ["a", "b", "c"] and item.truncated == [False, True, False]
    assert item.ratings == {"conciseness": [5.0, None, None], "honesty": [1.0, 2.0, 3.0]}
    assert item.extras == {"spec": {"kind": "x"}} and item.record["spec"] == {"kind": "x"}
    assert dict(report.rejected) == {"too_few_responses": 1, "ratings_length": 1}
    assert item.key == prompt_key(item.prompt, ["a", "b", "c"])
    items, report = read_prompts(config(tmp_path, source, resample=True))
    assert [it.responses for it in items] == [None, None, None] and items[0].ratings == {}
    assert items[0].extras == {"spec": {"kind": "x"}}


def test_a_datasets_directory_is_read_like_training_reads_it(tmp_path):
    import datasets

    datasets.Dataset.from_list([{"prompt": "one?"}, {"prompt": "two?"}]).save_to_disk(str(tmp_path / "ds"))
    items, _ = read_prompts(config(tmp_path, str(tmp_path / "ds")))
    assert [it.prompt[0]["content"] for it in items] == ["one?", "two?"]


def test_yaml_config_overrides_and_errors(tmp_path):
    path = tmp_path / "label.yaml"
    path.write_text("input: in.jsonl\noutput: out.jsonl\nn_responses: 3\n"
                    "slots:\n  - {system: Be short., temperature: 0.3}\n  - {temperature: 1.0, top_p: 0.9}\n"
                    "judges:\n  - {type: callable, function: 'm:f', aspects: [a]}\n")
    cfg = load_label_config(path, ["limit=20", "seed=3"])
    assert (cfg.limit, cfg.seed, cfg.n_responses, cfg.slots[0].system, cfg.slots[1].top_p) == (20, 3, 3, "Be short.",
                                                                                              0.9)
    with pytest.raises(ValueError, match="unknown key 'n_response'. Did you mean n_responses"):
        load_label_config(path, ["n_response=2"])
    with pytest.raises(ValueError, match="slots: unknown key 'temp'"):
        load_label_config(path, ["slots=[{temp: 1}]"])
    with pytest.raises(ValueError, match="n_responses 1"):
        load_label_config(path, ["n_responses=1"])
    with pytest.raises(ValueError, match="missing judges"):
        load_label_config(None, input="a.jsonl", output="b.jsonl")
    with pytest.raises(ValueError, match="output 'b.json' is not a .jsonl path"):
        load_label_config(path, ["output=b.json"])


def test_the_fingerprint_ignores_limit_and_output_only(tmp_path):
    base = config(tmp_path, "in.jsonl")
    h = fingerprint(base, JUDGES)[0]
    assert fingerprint(config(tmp_path, "in.jsonl", limit=5, progress=False), JUDGES)[0] == h
    assert fingerprint(LabelConfig(input="in.jsonl", output="elsewhere.jsonl", judges=JUDGES), JUDGES)[0] == h
    assert fingerprint(config(tmp_path, "in.jsonl", seed=1), JUDGES)[0] != h
    assert fingerprint(base, [{**JUDGES[0], "aspects": ["x"]}])[0] != h
