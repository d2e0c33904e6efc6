"""The shared-prompt forward and the chunked log-probs equal the naive full-logits computation."""

import pytest
import torch

from lambda_dpo.layouts import LAYOUTS, PACKED_AUTO_MAX_TOKENS, block_attention_mask, build_batch, choose_layout
from lambda_dpo.logprobs import _softmax_, chunked_token_logps, score_batch
from lambda_dpo.testing import tiny_model

VOCAB = 97


def oracle_logps(model, prompt, response):
    """Plain forward on prompt+response, full fp64 log-softmax, summed over the response."""
    ids = torch.tensor([list(prompt) + list(response)])
    logits = model(input_ids=ids).logits[0].double()
    logp = logits.log_softmax(-1)
    p = len(prompt)
    return sum(logp[p - 1 + k, t].item() for k, t in enumerate(response))


def random_lists(seed, n_lists, n_range, p_range, r_range):
    g = torch.Generator().manual_seed(seed)
    rnd = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))  # noqa: E731
    prompts, responses = [], []
    for _ in range(n_lists):
        prompts.append(torch.randint(0, VOCAB, (rnd(*p_range),), generator=g).tolist())
        responses.append([torch.randint(0, VOCAB, (rnd(*r_range),), generator=g).tolist()
                          for _ in range(rnd(*n_range))])
    return prompts, responses


@pytest.mark.parametrize("kind", ["llama", "gpt2", "mistral", "qwen2"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_logps_match_naive_forward(kind, layout):
    model = tiny_model(kind, vocab_size=VOCAB).eval()
    prompts, responses = random_lists(0, n_lists=3, n_range=(2, 8), p_range=(1, 12), r_range=(1, 9))
    batch = build_batch(prompts, responses, layout=layout)
    with torch.no_grad():
        logps, n_tok = score_batch(model, batch, chunk_size=7)
    for b, (prompt, resps) in enumerate(zip(prompts, responses)):
        for i, r in enumerate(resps):
            expected = oracle_logps(model, prompt, r)
            assert logps[b, i].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)
            assert n_tok[b, i].item() == len(r)
        assert (logps[b, len(resps):] == 0).all()  # padding slots stay empty


@pytest.mark.parametrize("n", [2, 4, 8])
@pytest.mark.parametrize("lengths", [((3, 3), (2, 5)), ((20, 30), (1, 16)), ((1, 1), (10, 12))])
@pytest.mark.parametrize("layout", ["packed", "prompt_cache"])
def test_shared_prompt_gradients_equal_naive(n, lengths, layout):
    """d(weighted sum of log-probs)/d(params) is the same through a shared-prompt layout and the naive one."""
    model = tiny_model("llama", vocab_size=VOCAB).train(False)
    prompts, responses = random_lists(n, n_lists=2, n_range=(n, n), p_range=lengths[0], r_range=lengths[1])
    weights = torch.randn(2, n, generator=torch.Generator().manual_seed(1))
    grads = {}
    for name in (layout, "naive"):
        model.zero_grad()
        logps, _ = score_batch(model, build_batch(prompts, responses, layout=name), chunk_size=5)
        (logps * weights).sum().backward()
        grads[name] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    err = (grads[layout] - grads["naive"]).norm() / grads["naive"].norm()
    assert err < 1e-5


@pytest.mark.parametrize("kind", ["gpt2", "mistral", "qwen2"])
def test_prompt_cache_gradients_equal_naive_other_architectures(kind):
    """Uneven N per list and padded prompts of different lengths, through the cache's gather."""
    model = tiny_model(kind, vocab_size=VOCAB).train(False)
    prompts, responses = random_lists(5, n_lists=3, n_range=(2, 8), p_range=(1, 20), r_range=(1, 12))
    weights = torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
    grads = {}
    for name in ("prompt_cache", "naive"):
        model.zero_grad()
        logps, _ = score_batch(model, build_batch(prompts, responses, layout=name), chunk_size=5)
        (logps * weights).sum().backward()
        grads[name] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert (grads["prompt_cache"] - grads["naive"]).norm() / grads["naive"].norm() < 1e-5


def test_shared_prompt_layouts_count_prompt_once():
    prompts, responses = [[1] * 50], [[[2] * 10] * 4]
    real = lambda b: int((b.segment_ids >= 0).sum())  # noqa: E731
    assert real(build_batch(prompts, responses, layout="packed")) == 50 + 4 * 10
    assert real(build_batch(prompts, responses, layout="prompt_cache")) == 50 + 4 * 10
    assert real(build_batch(prompts, responses, layout="naive")) == 4 * (50 + 10)


def test_layout_choice():
    model = tiny_model("llama", vocab_size=VOCAB)
    assert choose_layout(model) == "prompt_cache"
    assert choose_layout(model, preferred="packed") == "packed"
    assert choose_layout(model, "per_response") == "naive"
    assert choose_layout(model, gradient_checkpointing=True) == "packed"  # checkpointed layers drop caches
    # auto packs short lists into one row (one model call instead of two), keeps long ones cached
    assert choose_layout(model, row_tokens=PACKED_AUTO_MAX_TOKENS) == "packed"
    assert choose_layout(model, row_tokens=PACKED_AUTO_MAX_TOKENS + 1) == "prompt_cache"
    assert choose_layout(model, preferred="prompt_cache", row_tokens=10) == "prompt_cache"
    assert choose_layout(model, "per_response", row_tokens=10) == "naive"
    with pytest.raises(ValueError, match="layout='naive' is not one of"):  # per_response is the option's name
        choose_layout(model, "naive")
    model.gradient_checkpointing_enable()
    assert choose_layout(model) == "packed"
    model.train()
    prompts, responses = random_lists(4, 1, (2, 3), (2, 5), (2, 5))
    with pytest.raises(RuntimeError, match="use layout=packed"):
        score_batch(model, build_batch(prompts, responses, layout="prompt_cache"))
    with pytest.raises(ValueError, match="layout must be one of"):
        build_batch([[1]], [[[2]]], layout="fast")


def test_block_mask_isolates_responses():
    seg = torch.tensor([[0, 0, 1, 1, 2, 2, -1]])
    allowed = block_attention_mask(seg, torch.float32)[0, 0] == 0
    assert allowed[2, :2].all() and allowed[4, :2].all()  # responses see the prompt
    assert not allowed[4, 2] and not allowed[4, 3]  # response 2 never sees response 1
    assert allowed[5, 4] and not allowed[4, 5]  # causal within a response
    assert not allowed[:, 6].any()  # nobody attends to padding


def test_chunked_logps_match_full_softmax_and_grad():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(23, 16, requires_grad=True)
    targets = torch.randint(0, 50, (23,))
    full = head(hidden).log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
    chunked = chunked_token_logps(hidden, head, targets, chunk_size=4)
    torch.testing.assert_close(chunked, full)
    g_full, = torch.autograd.grad(full.sum(), hidden)
    g_chunk, = torch.autograd.grad(chunked_token_logps(hidden, head, targets, chunk_size=4).sum(), hidden)
    torch.testing.assert_close(g_chunk, g_full)


def test_in_place_softmax_matches_torch_and_is_stable():
    """`_softmax_` overwrites fp32 logits with their softmax and returns the log-sum-exp, also for
    logits far outside exp's range (shifted by 1e4)."""
    torch.manual_seed(0)
    logits = torch.randn(7, 50) * 5 + torch.tensor([0.0, 1e4, -1e4, 0, 0, 0, 0])[:, None]
    expected_lse, expected_probs = logits.logsumexp(-1), logits.softmax(-1)
    buffer = logits.clone()
    lse = _softmax_(buffer)
    torch.testing.assert_close(lse, expected_lse)
    torch.testing.assert_close(buffer, expected_probs)
    assert torch.isfinite(lse).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_no_grad_chunked_logps_match_log_softmax(dtype):
    """Without grad (reference and evaluation scoring) the in-place log-softmax gives
    log_softmax's values in fp32, for fp32 and bf16 heads alike."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False).to(dtype)
    hidden = torch.randn(23, 16, dtype=dtype)
    targets = torch.randint(0, 50, (23,))
    full = head(hidden).float().log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
    with torch.no_grad():
        chunked = chunked_token_logps(hidden, head, targets, chunk_size=4)
    assert chunked.dtype == torch.float32
    torch.testing.assert_close(chunked, full)


def test_score_batch_unwraps_the_model_once(monkeypatch):
    """The model is unwrapped where the call enters scoring and the unwrapped module passed down, not looked
    up again by each helper on the way (every `wrappers.unwrap_model` goes through accelerate's extractor)."""
    import accelerate.utils

    calls = []
    extract = accelerate.utils.extract_model_from_parallel
    monkeypatch.setattr(accelerate.utils, "extract_model_from_parallel",
                        lambda model, *a, **kw: calls.append(model) or extract(model, *a, **kw))
    model = tiny_model("llama", vocab_size=VOCAB)
    prompts, responses = random_lists(5, 2, (2, 3), (2, 5), (2, 5))
    for layout in LAYOUTS:
        calls.clear()
        with torch.no_grad():
            score_batch(model, build_batch(prompts, responses, layout=layout))
        assert len(calls) == 1, (layout, len(calls))


def test_unverified_architecture_falls_back_with_one_warning(caplog):
    model = tiny_model("llama", vocab_size=VOCAB)
    model.config.model_type = "somethingnew"
    with caplog.at_level("WARNING"):
        assert choose_layout(model) == "naive"
        assert choose_layout(model) == "naive"
    assert sum("shared-prompt forward not verified" in r.message for r in caplog.records) == 1
    prompts, responses = random_lists(3, 1, (2, 3), (2, 5), (2, 5))
    with torch.no_grad():
        logps, _ = score_batch(model, build_batch(prompts, responses, layout="naive"))
    assert logps[0, 0].item() == pytest.approx(oracle_logps(model, prompts[0], responses[0][0]), rel=1e-5)


@pytest.mark.parametrize("bias", [False, True])
def test_frozen_head_logps_and_grad_match_autograd(bias):
    """The frozen-head path (input gradient formed in forward) equals plain autograd, in float64."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=bias).double().requires_grad_(False)
    hidden = torch.randn(23, 16, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (23,))
    weights = torch.randn(23, dtype=torch.float64)
    full = head(hidden).log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
    g_full, = torch.autograd.grad((full * weights).sum(), hidden)
    fused = chunked_token_logps(hidden, head, targets, chunk_size=4)
    assert fused.grad_fn is not None and "FrozenHead" in type(fused.grad_fn.next_functions[0][0]).__name__
    torch.testing.assert_close(fused.double(), full, rtol=1e-6, atol=1e-6)
    g_fused, = torch.autograd.grad((fused.double() * weights).sum(), hidden)
    torch.testing.assert_close(g_fused, g_full)


def test_frozen_head_training_step_matches_full_logits_autograd():
    """LoRA-style model (output layer frozen): score_batch's gradients equal those of a plain
    forward with full logits and log_softmax, so the frozen-head shortcut is exact end to end."""
    model = tiny_model("llama", vocab_size=VOCAB).train(False)
    model.get_output_embeddings().weight.requires_grad_(False)
    prompts, responses = random_lists(8, n_lists=2, n_range=(3, 5), p_range=(2, 9), r_range=(1, 7))
    weights = torch.randn(2, 5, generator=torch.Generator().manual_seed(3))
    logps, _ = score_batch(model, build_batch(prompts, responses, layout="prompt_cache"), chunk_size=4)
    (logps * weights[:, :logps.shape[1]]).sum().backward()
    fused = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    total = 0
    for b, (prompt, resps) in enumerate(zip(prompts, responses)):
        for i, r in enumerate(resps):
            logp = model(input_ids=torch.tensor([prompt + r])).logits[0].log_softmax(-1)
            total = total + weights[b, i] * sum(logp[len(prompt) - 1 + k, t] for k, t in enumerate(r))
    total.backward()
    plain = [p.grad for p in model.parameters() if p.requires_grad]
    err = torch.cat([(f - g).flatten() for f, g in zip(fused, plain)]).norm() / torch.cat(
        [g.flatten() for g in plain]).norm()
    assert err < 1e-5
