"""The exported steered model served by a real engine: vLLM's CPU build steers it by the lambda text in the
system message exactly as `lambda-dpo generate` does.

A steered model is trained cheaply on the embedded SmolLM2-135M-Instruct (LoRA, a few steps on the demo's
training split, float32), exported with `lambda-dpo export` (a plain transformers checkpoint, float32) and
served by vLLM in float32 (the server: tests/serving/conftest.py; without a vLLM environment the test skips
before training, naming the make target). For a few held-out demo prompts at both ends of the
conciseness-informativeness edge (w=0: conciseness=1; w=1: informativeness=1), the messages are rendered by
the library as training renders them (`condition_prompt`: the lambda text as the system message), and:

- vLLM's tokenisation of those messages with its chat template is the prompt `generate` feeds the model;
- vLLM's greedy chat completion (temperature 0, the same max_tokens) is `generate`'s reply on the training
  directory, character for character;
- the two ends' replies differ for every prompt: the lambda text changes what the served model says (a few
  training steps do not yet make the conciseness end shorter; the claim is the engine's exactness).
"""

from __future__ import annotations

import gc
import json
import urllib.request
from dataclasses import dataclass

import pytest
import torch

from lambda_dpo.cli import main
from lambda_dpo.conditioning import condition_prompt
from lambda_dpo.demo.dataset import ASPECTS, demo_data_dir
from lambda_dpo.demo.run import CONFLICT
from lambda_dpo.generation import generate, load_steerable, steered_prompt_ids
from lambda_dpo.lambdas import parse_lambda
from lambda_dpo.training.config import load_config
from lambda_dpo.training.run import train

SERVED = "steered"
# The first open-ended held-out prompts of the demo's eval.jsonl (its "topic-" records). A short factual
# question ("What is the capital of Norway?") gets the same one-line reply at both ends after these few steps.
PROMPTS = 3
NEW_TOKENS = 64
ENDS = {0: f"{CONFLICT[0]}=1", 1: f"{CONFLICT[1]}=1"}  # w = the weight of informativeness


@dataclass
class Case:
    prompt: list[dict]
    w: int
    messages: list[dict]  # what a client sends: the lambda text as the system message
    prompt_ids: list[int]  # what `generate` feeds the model
    reply: str  # `generate`'s greedy reply


def held_out_prompts() -> list[list[dict]]:
    with open(demo_data_dir() / "eval.jsonl") as f:
        records = [json.loads(line) for line in f]
    return [r["prompt"] for r in records if r["id"].startswith("topic-")][:PROMPTS]


@pytest.fixture(scope="module")
def steered(vllm_server, tmp_path_factory):
    """(the exported directory, the cases with `generate`'s replies). Requests vllm_server first, so that
    without vLLM the test skips before training."""
    tmp = tmp_path_factory.mktemp("steered")
    data = demo_data_dir()
    cfg = load_config(None, model_name_or_path="smollm2-135m-instruct", train_file=str(data / "train.jsonl"),
                      eval_fraction=0, aspects=list(ASPECTS), max_train_lists=8, max_steps=6,
                      per_device_train_batch_size=1, max_prompt_length=256, max_response_length=96,
                      learning_rate=2e-3, model_dtype="float32", output_dir=str(tmp / "model"),
                      reference_cache_dir=None, logging_steps=6, seed=0)
    model_dir = train(cfg).output_dir
    gc.collect()
    assert main(["export", str(model_dir), str(tmp / "export")]) == 0  # float32 by default

    sm = load_steerable(model_dir)
    assert sm.conditioning == "prompt" and next(sm.model.parameters()).dtype == torch.float32
    cases = []
    for prompt in held_out_prompts():
        for w, lam in ENDS.items():
            messages = condition_prompt(prompt, parse_lambda(lam, sm.aspects), sm.conditioning, sm.lambda_text)
            reply = generate(sm, [prompt], lam, max_new_tokens=NEW_TOKENS)[0]  # `lambda-dpo generate`: one prompt
            cases.append(Case(prompt, w, messages, steered_prompt_ids(sm, prompt, lam), reply))
    del sm
    gc.collect()
    return tmp / "export", cases


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def test_vllm_serving_the_export_replies_as_generate_at_both_ends_of_the_edge(vllm_server, steered):
    export_dir, cases = steered
    url = vllm_server(export_dir, SERVED)
    root = url.removesuffix("/v1")
    served, differ = {}, []
    for case in cases:
        tokens = post(f"{root}/tokenize", {"model": SERVED, "messages": case.messages, "add_generation_prompt": True})
        assert tokens["tokens"] == case.prompt_ids, "vLLM's chat template renders another prompt than training's"
        answer = post(f"{url}/chat/completions", {"model": SERVED, "messages": case.messages, "temperature": 0,
                                                  "max_tokens": NEW_TOKENS})
        text = served[case.prompt[-1]["content"], case.w] = answer["choices"][0]["message"]["content"].strip()
        print(f"w={case.w} {case.prompt[-1]['content']!r}\n  vLLM:     {text!r}\n  generate: {case.reply!r}")
        if text != case.reply:
            differ.append((case.w, case.prompt[-1]["content"], text, case.reply))
    assert not differ, f"vLLM's replies differ from generate's in {len(differ)} of {len(cases)} cases: {differ}"
    for prompt in {c.prompt[-1]["content"] for c in cases}:
        assert served[prompt, 0] != served[prompt, 1], f"the lambda text did not change the reply to {prompt!r}"
