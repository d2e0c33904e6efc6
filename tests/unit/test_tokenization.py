"""Tokenisation on a tiny saved model: response ids as the chat template's tail, truncation counted,
lists that cannot fit rejected with their reason."""

import pytest

from lambda_dpo.data.schema import DataError, make_list
from lambda_dpo.tokenization import tokenize_list, tokenize_lists


def test_response_ids_are_the_template_tail(tok, lists):
    tl = tokenize_list(tok, lists[0], 256, 64)
    for text, ids in zip(lists[0].responses, tl.response_ids):
        full = tok.apply_chat_template([*tl.prompt, {"role": "assistant", "content": text}], tokenize=True,
                                       return_dict=False)
        assert list(tl.prompt_ids) + list(ids) == list(full)
        assert text in tok.decode(ids)


def test_truncation_is_counted_and_keeps_the_end_of_the_request(tok):
    long_prompt = "filler " * 300 + "QUESTION: what is 2+2?"
    lst = make_list([{"role": "user", "content": long_prompt}], ["four " * 100, "4"], {"a": [1, 5]}, "mem:1")
    out, report = tokenize_lists(tok, [lst], max_prompt_length=40, max_response_length=16)
    assert report.prompts_truncated == 1 and report.responses_truncated == 1
    assert len(out[0].prompt_ids) <= 40 and len(out[0].response_ids[0]) == 16
    assert "what is 2+2?" in tok.decode(out[0].prompt_ids)


def test_prompt_that_cannot_fit_is_rejected_with_reason(tok):
    lst = make_list([{"role": "system", "content": "rule " * 200}, {"role": "user", "content": "hi"}],
                    ["a", "b"], {"a": [1, 2]}, "data.jsonl:7")
    out, report = tokenize_lists(tok, [lst], max_prompt_length=30, max_response_length=16)
    assert out == [] and report.rejected == {"prompt_too_long": 1}
    with pytest.raises(DataError, match="data.jsonl:7.*prompt"):
        tokenize_lists(tok, [lst], 30, 16, skip_bad=False)


def test_a_cut_reply_is_scored_without_an_end_of_turn(tok):
    """A reply the data marks as truncated ends where its text ends: the template's end-of-turn ids
    (which its writer never produced) are not part of it; `score_cut_ends` restores them."""
    replies = ["The answer is four, because two and two", "Four."]
    lst = make_list([{"role": "user", "content": "What is 2+2?"}], replies, {"a": [5, 1]}, "m:1",
                    truncated=[True, False])
    opened, report = tokenize_lists(tok, [lst], 256, 64)
    closed, closed_report = tokenize_lists(tok, [lst], 256, 64, score_cut_ends=True)
    assert report.open_ends == 1 and closed_report.open_ends == 0
    cut, whole = opened[0].response_ids[0], closed[0].response_ids[0]
    content = tok(replies[0], add_special_tokens=False)["input_ids"]
    assert len(whole) > len(cut) and whole[:len(cut)] == cut and list(cut[-len(content):]) == content
    assert tok.decode(cut).rstrip().endswith("two and two") and not tok.decode(whole).rstrip().endswith("two and two")
    assert opened[0].response_ids[1] == closed[0].response_ids[1]  # complete replies keep their end of turn


@pytest.mark.parametrize("reply", ["end", "im", "|>", "What is 2+2?"])
def test_a_cut_reply_is_found_after_the_prompt_not_in_it_or_in_the_end_of_turn(tok, reply):
    """The reply's end is looked for right after the templated prompt: a reply that is also text of
    the prompt or of the end-of-turn marker still ends where it ends."""
    lst = make_list([{"role": "user", "content": "What is 2+2?"}], [reply, "Four."], {"a": [5, 1]}, "m:1",
                    truncated=[True, False])
    tl = tokenize_list(tok, lst, 256, 64)
    assert list(tl.response_ids[0]) == tok(reply, add_special_tokens=False)["input_ids"]


def test_a_cut_reply_the_template_rewrites_is_a_counted_rejection(tok):
    """A template that changes the reply's text (here: upper-cases it) leaves no end to find: that
    list is rejected with a reason naming the reply, not a crash of the whole run."""
    tok2 = type(tok).from_pretrained(tok.name_or_path)
    tok2.chat_template = tok.chat_template.replace("message['content']", "message['content'] | upper")
    good = make_list([{"role": "user", "content": "q"}], ["A", "B"], {"a": [5, 1]}, "m:1")
    bad = make_list([{"role": "user", "content": "q"}], ["abc", "B"], {"a": [5, 1]}, "m:2", truncated=[True, False])
    out, report = tokenize_lists(tok2, [good, bad], 256, 64)
    assert len(out) == 1 and report.rejected == {"cut_reply_not_found": 1} and report.open_ends == 0
    assert "m:2: field 'responses[0]'" in report.examples["cut_reply_not_found"]
