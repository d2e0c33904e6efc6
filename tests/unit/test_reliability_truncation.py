"""Over-long inputs: truncation=cut (prompt from the left of its last user message, response from
the right, counted) or truncation=reject (the list is dropped with a counted reason); a response cut
to nothing is rejected, and limits below 1 are a config error."""

import json
import logging

import pytest

from lambda_dpo.data.schema import DataError, make_list
from lambda_dpo.models import load_tokenizer
from lambda_dpo.tokenization import tokenize_lists
from lambda_dpo.training.config import load_config


@pytest.fixture(scope="module")
def tok(tiny_llama_dir):
    return load_tokenizer(tiny_llama_dir)


def lists():
    long_prompt = make_list([{"role": "user", "content": "filler " * 300 + "QUESTION: what is 2+2?"}],
                            ["4", "5"], {"a": [5, 1]}, "d.jsonl:1")
    long_response = make_list([{"role": "user", "content": "hi"}], ["four " * 100, "4"], {"a": [1, 5]}, "d.jsonl:2")
    fits = make_list([{"role": "user", "content": "hi"}], ["hello", "hey"], {"a": [2, 3]}, "d.jsonl:3")
    return [long_prompt, long_response, fits]


def test_cut_keeps_the_end_of_the_request_and_the_start_of_the_response(tok):
    out, report = tokenize_lists(tok, lists(), max_prompt_length=40, max_response_length=16, truncation="cut")
    assert len(out) == 3 and report.prompts_truncated == 1 and report.responses_truncated == 1 and not report.rejected
    assert len(out[0].prompt_ids) <= 40 and "what is 2+2?" in tok.decode(out[0].prompt_ids)
    assert tok.decode(out[0].prompt_ids).count("filler") < 30  # the start of the request went
    assert len(out[1].response_ids[0]) == 16 and tok.decode(out[1].response_ids[0]).startswith("four four")


def test_reject_drops_over_long_lists_with_counted_reasons(tok):
    out, report = tokenize_lists(tok, lists(), max_prompt_length=40, max_response_length=16, truncation="reject")
    assert [t.source.origin for t in out] == ["d.jsonl:3"]
    assert report.rejected == {"prompt_too_long": 1, "response_too_long": 1}
    assert report.prompts_truncated == 0 and report.responses_truncated == 0
    assert "d.jsonl:2" in report.examples["response_too_long"] and "Fix:" in report.examples["response_too_long"]
    cut, _ = tokenize_lists(tok, lists(), 40, 16, truncation="cut")
    assert out[0] == cut[2]  # what fits is identical under both policies
    with pytest.raises(DataError, match=r"d.jsonl:1: field 'prompt'.*max_prompt_length=40"):
        tokenize_lists(tok, lists(), 40, 16, skip_bad=False, truncation="reject")


def test_a_response_truncated_to_nothing_is_rejected(tok):
    out, report = tokenize_lists(tok, lists()[2:], max_prompt_length=64, max_response_length=0)
    assert out == [] and report.rejected == {"empty_response_tokens": 1}


@pytest.mark.parametrize("override, message", [
    ("max_response_length=0", "max_response_length=0 must be an integer >= 1"),
    ("max_prompt_length=-5", "max_prompt_length=-5 must be an integer >= 1"),
    ("truncation=left", "truncation='left' is not one of cut, reject"),
    ("max_nonfinite_steps=0", "max_nonfinite_steps=0 must be an integer >= 1"),
])
def test_config_refuses_limits_that_cannot_work(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_training_counts_rejections_under_reject(tiny_llama_dir, tmp_path, caplog):
    from lambda_dpo.training.run import train

    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(l.to_json()) for l in lists()) + "\n")
    cfg = load_config(None, train_file=str(data), model_name_or_path=tiny_llama_dir, output_dir=str(tmp_path / "o"),
                      max_steps=1, eval_fraction=0.0, truncation="reject", max_prompt_length=40,
                      max_response_length=16, reference_cache_dir=None, lambda_source="fixed", conditioning="none")
    with caplog.at_level(logging.INFO, logger="lambda_dpo.training"):
        result = train(cfg)
    assert len(result.trainer.train_dataset) == 1
    assert "train: 1 lists tokenised; 0 prompts and 0 responses truncated; rejected: " \
           "{'prompt_too_long': 1, 'response_too_long': 1}" in caplog.text

