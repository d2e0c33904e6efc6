"""KL(pi || pi_ref) from sampled replies: each sampled token scored as the naive unpadded computation
scores it (rotary and learned positions), the reply cut at its first EOS, and the estimate converging to
the exact KL even when the model's generation_config would truncate or penalise its sampling."""

import math
from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, get_peft_model

from lambda_dpo.evaluation import kl
from lambda_dpo.generation import SteerableModel, steered_prompt_ids
from lambda_dpo.testing import gpt2_tokenizer, tiny_model

PROMPTS = ["a short one", "a somewhat longer prompt than the first one", "third"]
TARGETS = {"llama": ["q_proj", "v_proj", "down_proj"], "gpt2": ["c_attn", "c_fc"]}


def _with_random_lora(base, targets):
    """PEFT's LoRA with a random B (not zeros), so the policy differs from the reference."""
    torch.manual_seed(0)
    return get_peft_model(base, LoraConfig(r=4, target_modules=targets, init_lora_weights=False)).eval()


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def steerable(request):
    tok = gpt2_tokenizer()
    model = _with_random_lora(tiny_model(request.param, vocab_size=len(tok)), TARGETS[request.param])
    return SteerableModel(model, tok, ("a", "b"), "none")


def _ids(sm, prompts):
    return [steered_prompt_ids(sm, p, None) for p in prompts]


def _naive_logp(model, prompt_ids: list[int], reply_ids: list[int]) -> float:
    """One unpadded sequence, token by token from the full logits."""
    ids = torch.tensor([prompt_ids + reply_ids])
    logps = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return sum(logps[len(prompt_ids) - 1 + t, tok].item() for t, tok in enumerate(reply_ids))


def test_log_ratios_equal_the_naive_unpadded_computation_and_stop_at_eos(steerable, monkeypatch):
    """Prompts of different lengths share a left-padded batch; the first reply is cut by an EOS after one
    token, and the tokens sampled after it must not count."""
    eos = steerable.tokenizer.eos_token_id
    real_generate = steerable.model.generate
    captured = {}

    def generate_with_an_early_eos(**kw):
        full = real_generate(**kw)
        width = kw["input_ids"].shape[1]
        full[0, width + 1] = eos
        captured["full"], captured["width"] = full.clone(), width
        return full

    monkeypatch.setattr(steerable.model, "generate", generate_with_an_early_eos)
    ratios = kl.reply_log_ratios(steerable.model, steerable.tokenizer, _ids(steerable, PROMPTS), max_new_tokens=5,
                                 seed=3, batch_size=len(PROMPTS))
    full, width = captured["full"], captured["width"]
    assert eos not in full[0, width + 2:].tolist()  # so counting past the EOS would change the figure
    for i, prompt in enumerate(PROMPTS):
        prompt_ids = steered_prompt_ids(steerable, prompt, None)
        reply = full[i, width:].tolist()
        reply = reply[: reply.index(eos) + 1] if eos in reply else reply
        policy = _naive_logp(steerable.model, prompt_ids, reply)
        with steerable.model.disable_adapter():
            ref = _naive_logp(steerable.model, prompt_ids, reply)
        assert ratios[i].item() == pytest.approx(policy - ref, abs=1e-4)


def test_reply_mask_keeps_tokens_up_to_the_first_eos():
    new = torch.tensor([[5, 7, 0, 0, 0], [5, 6, 7, 8, 9], [0, 0, 0, 0, 0]])
    assert kl._reply_mask(new, eos_id=0).tolist() == [[True, True, True, False, False], [True] * 5,
                                                      [True, False, False, False, False]]


def test_a_model_without_an_adapter_needs_its_reference():
    tok = gpt2_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok)).eval()
    sm = SteerableModel(model, tok, ("a",), "none")
    with pytest.raises(ValueError, match="pass reference="):
        kl.sampled_kl(model, tok, _ids(sm, PROMPTS), max_new_tokens=2)
    same = kl.sampled_kl(model, tok, _ids(sm, PROMPTS), reference=model, max_new_tokens=4, samples=2)
    assert same.abs().max().item() < 1e-5
    other = tiny_model("llama", vocab_size=len(tok), seed=1).eval()
    assert kl.sampled_kl(model, tok, _ids(sm, PROMPTS), reference=other, max_new_tokens=4).abs().min().item() > 1e-3


def test_the_estimate_converges_to_the_exact_kl_despite_the_models_generation_config():
    """One new token: KL(pi || pi_ref) = sum_v pi(v) log(pi(v) / pi_ref(v)), exactly, from the logits. The
    model's generation_config asks for top-k 2 and a repetition penalty; the Monte-Carlo mean of 2000
    samples still lies within 4 standard errors of the exact KL (truncated sampling would bias it)."""
    model = _with_random_lora(tiny_model("llama", vocab_size=64), TARGETS["llama"])
    model.generation_config.top_k, model.generation_config.repetition_penalty = 2, 3.0
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=0)
    prompt = [5, 17, 33, 9]
    with torch.no_grad():
        p = torch.log_softmax(model(input_ids=torch.tensor([prompt])).logits[0, -1].float(), -1)
        with model.disable_adapter():
            q = torch.log_softmax(model(input_ids=torch.tensor([prompt])).logits[0, -1].float(), -1)
    exact = (p.exp() * (p - q)).sum().item()
    draws = kl.reply_log_ratios(model, tok, [prompt] * 2000, max_new_tokens=1, seed=0, batch_size=500)
    se = draws.std().item() / math.sqrt(len(draws))
    assert exact > 0.01  # the adapter moved the model measurably
    assert abs(draws.mean().item() - exact) < 4 * se
