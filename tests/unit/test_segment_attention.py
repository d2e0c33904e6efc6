"""Segment attention (lambda_dpo.segment_attention): the packed row scored by segment equals the naive
forward, in log-probs and gradients, for every verified architecture and both inner kernels."""

import pytest
import torch
from test_scoring import VOCAB, oracle_logps, random_lists

from lambda_dpo.testing import tiny_model
from lambda_dpo.layouts import build_batch
from lambda_dpo.logprobs import score_batch
from lambda_dpo.segment_attention import PREFIX, SegmentAttention, install, installed, segmented


@pytest.mark.parametrize("kind", ["llama", "gpt2", "mistral", "qwen2"])
@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_logps_match_naive_forward(kind, kernel):
    model = tiny_model(kind, vocab_size=VOCAB, attn_implementation=kernel).eval()
    prompts, responses = random_lists(3, n_lists=3, n_range=(2, 6), p_range=(1, 12), r_range=(1, 9))
    with torch.no_grad(), segmented(model):
        assert model.config._attn_implementation == PREFIX + kernel
        logps, n_tok = score_batch(model, build_batch(prompts, responses, layout="packed"), chunk_size=7)
    assert model.config._attn_implementation == kernel  # restored
    for b, (prompt, resps) in enumerate(zip(prompts, responses)):
        for i, r in enumerate(resps):
            assert logps[b, i].item() == pytest.approx(oracle_logps(model, prompt, r), rel=1e-5, abs=1e-5)
            assert n_tok[b, i].item() == len(r)
        assert (logps[b, len(resps):] == 0).all()


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
@pytest.mark.parametrize("lengths", [((3, 3), (2, 5)), ((20, 30), (1, 16)), ((1, 1), (10, 12)), ((6, 6), (4, 4))])
def test_gradients_equal_naive(kernel, lengths):
    """Uneven prompts and responses (padding in both gathers), uneven N, and the all-equal case
    (no prompt mask: sdpa runs causal)."""
    model = tiny_model("llama", vocab_size=VOCAB, attn_implementation=kernel).train(False)
    prompts, responses = random_lists(7, n_lists=2, n_range=(2, 5), p_range=lengths[0], r_range=lengths[1])
    weights = torch.randn(2, 5, generator=torch.Generator().manual_seed(1))
    grads = {}
    for name in ("segments", "naive"):
        model.zero_grad()
        layout = "packed" if name == "segments" else "naive"
        with segmented(model) if name == "segments" else torch.enable_grad():
            logps, _ = score_batch(model, build_batch(prompts, responses, layout=layout), chunk_size=5)
        (logps * weights[:, :logps.shape[1]]).sum().backward()
        grads[name] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert (grads["segments"] - grads["naive"]).norm() / grads["naive"].norm() < 1e-5


def test_gradient_checkpointing_recomputes_by_segment():
    """Checkpointed layers rerun their forward in backward: the segments must reach it again."""
    prompts, responses = random_lists(11, n_lists=2, n_range=(3, 3), p_range=(4, 9), r_range=(2, 6))
    grads = []
    for checkpointing in (False, True):
        model = tiny_model("llama", vocab_size=VOCAB).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        with segmented(model):  # backward inside: the recomputation must find the same implementation
            logps, _ = score_batch(model, build_batch(prompts, responses, layout="packed"))
            logps.sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_without_segments_the_wrapper_is_its_kernel():
    """Generation, naive rows and prompt_cache calls pass no segments: outputs equal the plain kernel's."""
    model = tiny_model("llama", vocab_size=VOCAB).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [0, 0, 3, 4, 5, 6]])
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).logits
        generated = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
        with segmented(model):
            wrapped = model(input_ids=ids, attention_mask=mask).logits
            generated_wrapped = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    assert torch.equal(plain, wrapped) and torch.equal(generated, generated_wrapped)


def test_masks_from_segments():
    seg = torch.tensor([[0, 0, 0, 1, 1, 2, -1, -1],
                        [0, 0, 1, 2, 2, 2, 3, -1]])
    s = SegmentAttention.from_segments(seg)
    assert (s.rows, s.length, s.p_max, s.r_max) == (2, 8, 3, 3)
    assert s.resp_list.tolist() == [0, 0, 1, 1, 1]
    assert s.resp_idx.view(5, 3).tolist() == [[3, 4, 4], [5, 5, 5], [10, 10, 10], [11, 12, 13], [14, 14, 14]]
    # Row 1's prompt is 2 tokens: its third prompt key is blocked for its responses and in its prompt mask.
    assert s.resp_mask[2, 0, 0].tolist() == [True, True, False, True, False, False]
    assert s.prompt_mask is not None and s.prompt_mask[1, 0, 1].tolist() == [True, True, False]
    assert s.resp_mask.any(-1).all() and s.prompt_mask.any(-1).all()  # no query row blocked everywhere
    # Every response token is written back once (prompts come from their slice); padding is not.
    assert sorted(s.keep_idx.tolist()) == [3, 4, 5, 10, 11, 12, 13, 14]
    assert s.keep_src.tolist() == [0, 1, 3, 6, 9, 10, 11, 12]
    assert SegmentAttention.from_segments(seg[:1, :6]).prompt_mask is None  # equal prompts: causal kernel
    assert s.masks("sdpa", torch.float32) == (s.prompt_mask, s.resp_mask)
    prompt, resp = s.masks("eager", torch.bfloat16)
    low = torch.finfo(torch.bfloat16).min
    assert torch.equal(resp, torch.where(s.resp_mask, 0.0, low).to(torch.bfloat16))
    assert torch.equal(prompt, torch.where(s.prompt_mask, 0.0, low).to(torch.bfloat16))
    assert s.masks("eager", torch.bfloat16)[1] is resp  # built once per batch, not per layer
    causal = SegmentAttention.from_segments(seg[:1, :6]).masks("eager", torch.float32)[0]
    assert torch.equal(causal[0, 0] == 0, torch.ones(3, 3, dtype=torch.bool).tril())


def test_install_is_idempotent_and_refuses_other_kernels():
    model = tiny_model("llama", vocab_size=VOCAB, attn_implementation="eager")
    assert not installed(model)
    assert install(model) == "eager" and install(model) == "eager"
    assert installed(model) and model.config._attn_implementation == PREFIX + "eager"
    with pytest.raises(ValueError, match="already installed"):
        with segmented(model):
            pass
    other = tiny_model("llama", vocab_size=VOCAB)
    other.config._attn_implementation = "flex_attention"  # what a user might have picked
    with pytest.raises(ValueError, match="wraps"):
        install(other)
