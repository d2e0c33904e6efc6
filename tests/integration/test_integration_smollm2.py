"""A few real training steps on the embedded SmolLM2-135M-Instruct (converted once, then cached)."""

import json

import pytest
import torch

from lambda_dpo.generation import generate, load_steerable, steered_prompt_ids
from lambda_dpo.training.config import load_config
from lambda_dpo.training.run import train

pytestmark = pytest.mark.integration


def test_smollm2_trains_evaluates_and_steers(tmp_path):
    cfg = load_config(None, train_file="examples/tiny_listwise.jsonl", output_dir=str(tmp_path / "m"),
                      max_steps=3, max_train_lists=6, max_eval_lists=3, eval_fraction=0.2, max_response_length=48,
                      reference_cache_dir=str(tmp_path / "c"), learning_rate=1e-3, logging_steps=1)
    result = train(cfg)
    history = [h for h in result.trainer.state.log_history if "loss" in h]
    assert len(history) == 3 and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert {"loss/helpfulness", "top1_accuracy", "reward_margin", "lambda/honesty"} <= set(history[0])
    meta = json.loads((tmp_path / "m" / "lambda_dpo.json").read_text())
    assert 0 <= meta["eval_metrics"]["eval_mean/ndcg"] <= 1

    sm = load_steerable(tmp_path / "m")
    a, b = (steered_prompt_ids(sm, "What is 3+4?", lam) for lam in ("conciseness=1", "helpfulness=1"))
    assert a != b
    reply = generate(sm, ["What is 3+4?"], "helpfulness=1", max_new_tokens=16)[0]
    assert reply.strip()
