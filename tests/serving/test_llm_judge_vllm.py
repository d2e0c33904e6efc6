"""The LLM judge against a real OpenAI-compatible server on 127.0.0.1: vLLM's CPU build, in its own virtual
environment (`make serving-env`), serving the embedded SmolLM2-135M-Instruct in float32.

The server comes from tests/serving/conftest.py (`vllm_server`); without a vLLM environment the tests skip,
naming the make target. A 135M model is a poor grader: the assertions are about the protocol
(every request answered, every answer a rating 1-5 or a missing rating counted under a parsing reason), not
about the ratings' quality.
"""

from __future__ import annotations

import json

import pytest

from lambda_dpo.labeling import label
from lambda_dpo.labeling.judges import LLMJudge, RateInput
from lambda_dpo.labeling.output import read_records

SERVED = "smollm2"
PARSE_REASONS = {"empty_answer", "out_of_range", "unparseable"}


@pytest.fixture(scope="module")
def server(vllm_server):
    from lambda_dpo.models import resolve_model_path

    return vllm_server(resolve_model_path("smollm2-135m-instruct"), SERVED)  # the embedded model, a transformers dir


RUBRIC = "5: the reply answers the question correctly. 1: the reply is wrong or does not answer."
PROMPT = ({"role": "user", "content": "What is the capital of France?"},)
REPLIES = ("Paris.", "The capital of France is Lyon.", "I like turtles.")


def test_the_judge_rates_replies_served_by_vllm(server):
    judge = LLMJudge(base_url=server, model=SERVED, rubrics={"correctness": RUBRIC}, timeout=300, max_retries=1,
                     concurrency=2, max_tokens=4)
    out = judge.rate([RateInput(PROMPT, REPLIES, {})], [{"correctness": [0, 1, 2]}])[0]
    for i, value in enumerate(out.values["correctness"]):
        if value is None:
            assert out.reasons["correctness"][i] in PARSE_REASONS, out.reasons  # answered, but not a rating
        else:
            assert value in (1.0, 2.0, 3.0, 4.0, 5.0)


def test_label_with_the_llm_judge_writes_its_ratings_or_counts_them_missing(server, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"prompt": list(PROMPT), "responses": list(REPLIES)}) + "\n")
    result = label({"input": str(source), "output": str(tmp_path / "out.jsonl"), "progress": False, "judges": [
        {"type": "llm", "base_url": server, "model": SERVED, "rubrics": {"correctness": RUBRIC}, "timeout": 300},
        {"type": "callable", "function": "lambda_dpo.evaluation.judges:LengthJudge", "aspects": ["conciseness"]}]})
    assert result.lists == 1
    (record,) = read_records(result.output)
    prov = record["provenance"]["ratings"]["correctness"]
    assert prov["judge"] == f"llm:{SERVED}" and prov["judged"] + sum(prov["missing"].values()) == 3
    assert set(prov["missing"]) <= PARSE_REASONS
    sheet = json.loads(result.output.with_name("out.datasheet.json").read_text())
    assert sheet["aspects"]["correctness"]["missing_by_reason"] == prov["missing"]
