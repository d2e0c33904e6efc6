"""KL(pi || pi_ref) from sampled replies: each sampled token scored as the naive unpadded computation
scores it, the reply cut at its first EOS, and the estimate converging to the exact KL."""

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model

from lambda_dpo.evaluation import kl
from lambda_dpo.generation import SteerableModel, steered_prompt_ids
from lambda_dpo.testing import gpt2_tokenizer, tiny_model

PROMPTS = ["a short one", "a somewhat longer prompt than the first one", "third"]


@pytest.fixture(scope="module")
def steerable():
    torch.manual_seed(0)
    tok = gpt2_tokenizer()
    base = tiny_model("llama", vocab_size=len(tok))
    # random LoRA B (not PEFT's zeros), so the policy differs from the reference
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                                            init_lora_weights=False))
    return SteerableModel(model.eval(), tok, ("a", "b"), "none")


def _ids(sm, prompts):
    return [steered_prompt_ids(sm, p, None) for p in prompts]


def _naive_logp(model, prompt_ids: list[int], reply_ids: list[int]) -> float:
    """One unpadded sequence, token by token from the full logits."""
    ids = torch.tensor([prompt_ids + reply_ids])
    logps = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return sum(logps[len(prompt_ids) - 1 + t, tok].item() for t, tok in enumerate(reply_ids))


def test_log_ratios_equal_the_naive_unpadded_computation_and_stop_at_eos(steerable, monkeypatch):
    eos = steerable.tokenizer.eos_token_id
    real_generate = steerable.model.generate
    captured = {}

    def generate_with_an_early_eos(**kw):
        full = real_generate(**kw)
        width = kw["input_ids"].shape[1]
        full[0, width + 1] = eos  # the first reply ends after one token; what follows must not count
        captured["full"], captured["width"] = full.clone(), width
        return full

    monkeypatch.setattr(steerable.model, "generate", generate_with_an_early_eos)
    ratios = kl.reply_log_ratios(steerable.model, steerable.tokenizer, _ids(steerable, PROMPTS), max_new_tokens=5,
                                 seed=3, batch_size=len(PROMPTS))
    full, width = captured["full"], captured["width"]
    for i, prompt in enumerate(PROMPTS):
        prompt_ids = steered_prompt_ids(steerable, prompt, None)
        reply = full[i, width:].tolist()
        reply = reply[: reply.index(eos) + 1] if eos in reply else reply
        policy = _naive_logp(steerable.model, prompt_ids, reply)
        with steerable.model.disable_adapter():
            ref = _naive_logp(steerable.model, prompt_ids, reply)
        assert ratios[i].item() == pytest.approx(policy - ref, abs=1e-4)
    assert len(full[0, width:].tolist()) == 5 and full[0, width + 1] == eos


def test_reply_mask_keeps_tokens_up_to_the_first_eos():
    new = torch.tensor([[5, 7, 0, 0, 0], [5, 6, 7, 8, 9], [0, 0, 0, 0, 0]])
    assert kl._reply_mask(new, eos_id=0).tolist() == [[True, True, True, False, False], [True] * 5,
                                                      [True, False, False, False, False]]


def test_a_model_without_an_adapter_is_its_own_reference():
    tok = gpt2_tokenizer()
    sm = SteerableModel(tiny_model("llama", vocab_size=len(tok)).eval(), tok, ("a",), "none")
    assert kl.sampled_kl(sm.model, tok, _ids(sm, PROMPTS), max_new_tokens=4, samples=2).abs().max().item() < 1e-5


def test_the_estimate_converges_to_the_exact_kl_of_the_first_token(steerable):
    """One new token: KL(pi || pi_ref) = sum_v pi(v) log(pi(v) / pi_ref(v)), exactly, from the logits.
    The Monte-Carlo mean of 400 samples lies within 4 standard errors of it (samples from pi itself:
    a top-k or top-p truncation in the sampler would bias it)."""
    ids = torch.tensor([steered_prompt_ids(steerable, PROMPTS[0], None)])
    with torch.no_grad():
        p = torch.log_softmax(steerable.model(input_ids=ids).logits[0, -1].float(), -1)
        with steerable.model.disable_adapter():
            q = torch.log_softmax(steerable.model(input_ids=ids).logits[0, -1].float(), -1)
    exact = (p.exp() * (p - q)).sum().item()
    draws = kl.reply_log_ratios(steerable.model, steerable.tokenizer, _ids(steerable, [PROMPTS[0]] * 400),
                                max_new_tokens=1, seed=0, batch_size=200)
    se = draws.std().item() / math.sqrt(len(draws))
    assert exact > 0.01  # the adapter moved the model measurably
    assert abs(draws.mean().item() - exact) < 4 * se
