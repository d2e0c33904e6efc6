"""Mixed decoding (lambda_dpo.generation.generate_mixed): a vertex gives `generate`'s greedy reply, a mixture is the argmax
of the weighted vertices' log-probs computed naively (no cache, no padding), batching changes nothing."""

import copy
import dataclasses

import pytest
import torch

from conftest import PLAYGROUND_ASPECTS
from lambda_dpo.conditioning import LambdaText
from lambda_dpo.generation import SteerableModel, generate, generate_mixed, load_steerable, steered_prompt_ids
from lambda_dpo.testing import gpt2_tokenizer, tiny_model

PROMPTS = ["Why is the sky blue?", "Name a prime number larger than ten and say why it is prime.", "Hi"]
TOKENS = 6


@pytest.fixture(scope="module")
def sm(playground_model_dir):
    return load_steerable(playground_model_dir)


def _vertex(k: str) -> dict[str, float]:
    return {a: float(a == k) for a in PLAYGROUND_ASPECTS}


def _naive(sm, prompt: str, lam: dict[str, float], n: int) -> list[int]:
    """Token by token: each vertex's prompt plus the reply so far, one unpadded forward each, log-probs mixed."""
    rows = {k: steered_prompt_ids(sm, prompt, _vertex(k)) for k, w in lam.items() if w > 0}
    reply = []
    for _ in range(n):
        mixed = sum(lam[k] * torch.log_softmax(sm.model(torch.tensor([ids + reply])).logits[0, -1].float(), -1)
                    for k, ids in rows.items())
        reply.append(int(mixed.argmax()))
        if reply[-1] == sm.tokenizer.eos_token_id:
            break
    return reply


def test_a_vertex_decodes_as_generate_does(sm):
    for k in PLAYGROUND_ASPECTS:
        assert generate_mixed(sm, PROMPTS, _vertex(k), max_new_tokens=TOKENS) == \
            generate(sm, PROMPTS, _vertex(k), max_new_tokens=TOKENS)


@pytest.fixture(scope="module")
def gpt2_sm():
    """Learned positions: a position numbered from the padding rather than the prompt changes the argmax (the
    tiny Llama's rotary positions barely move its near-uniform attention)."""
    tok = gpt2_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok)).eval()
    return SteerableModel(model, tok, PLAYGROUND_ASPECTS, "prompt", LambdaText("instructions"))


@torch.no_grad()
@pytest.mark.parametrize("which", ["sm", "gpt2_sm"])
def test_a_mixture_is_the_argmax_of_the_weighted_vertex_log_probs(which, request):
    sm = request.getfixturevalue(which)
    lams = [{"conciseness": 0.3, "informativeness": 0.7}, {"conciseness": 0.9, "informativeness": 0.1},
            {"conciseness": 0.5, "informativeness": 0.5}]
    got = generate_mixed(sm, PROMPTS, lams, max_new_tokens=TOKENS)
    want = [sm.tokenizer.decode(_naive(sm, p, lam, TOKENS), skip_special_tokens=True).strip()
            for p, lam in zip(PROMPTS, lams)]
    assert got == want
    # and the mixture is not one of its vertices' replies everywhere (the test can tell them apart)
    ends = [generate(sm, PROMPTS, _vertex(k), max_new_tokens=TOKENS) for k in PLAYGROUND_ASPECTS]
    assert got not in ends


def test_batches_do_not_change_replies(sm):
    lams = [{"conciseness": w, "informativeness": 1 - w} for w in (0.2, 0.6, 1.0)]
    assert generate_mixed(sm, PROMPTS, lams, max_new_tokens=TOKENS, batch_size=1) == \
        generate_mixed(sm, PROMPTS, lams, max_new_tokens=TOKENS, batch_size=3)


def test_needs_prompt_conditioning(sm):
    with pytest.raises(ValueError, match="conditioning: prompt"):
        generate_mixed(dataclasses.replace(sm, conditioning="none"), PROMPTS, None)


def test_cli_generate_decodes_mixed(playground_model_dir, sm, capsys):
    from lambda_dpo.cli import main

    lam = "conciseness=0.4,informativeness=0.6"
    capsys.readouterr()
    assert main(["generate", *PROMPTS[:2], "--model", playground_model_dir, "--lambda", lam, "--decoding", "mixed",
                 "--max-new-tokens", str(TOKENS)]) == 0
    assert capsys.readouterr().out.splitlines() == generate_mixed(sm, PROMPTS[:2], lam, max_new_tokens=TOKENS)
    with pytest.raises(SystemExit, match="decodes greedily; drop --sample"):
        main(["generate", "Hi", "--model", playground_model_dir, "--decoding", "mixed", "--sample"])


@torch.no_grad()
def test_rows_that_end_early_leave_the_others_as_they_were(gpt2_sm):
    """A reply that reaches EOS stops there (padding after it) while the batch goes on: make a token that one
    prompt writes only after its first tokens the tokenizer's EOS, and every reply still equals its own naive
    decoding."""
    lam = {"conciseness": 0.3, "informativeness": 0.7}
    replies = [_naive(gpt2_sm, p, lam, TOKENS) for p in PROMPTS]
    stop, which = min((i, j) for j, r in enumerate(replies) for i in range(1, TOKENS - 1) if r[i] not in r[:i])
    tok = copy.deepcopy(gpt2_sm.tokenizer)
    tok.eos_token = tok.convert_ids_to_tokens(replies[which][stop])
    sm = dataclasses.replace(gpt2_sm, tokenizer=tok)
    want = [_naive(sm, p, lam, TOKENS) for p in PROMPTS]
    assert len(want[which]) == stop + 1 and want[which][-1] == tok.eos_token_id and max(map(len, want)) == TOKENS
    assert generate_mixed(sm, PROMPTS, lam, max_new_tokens=TOKENS) == \
        [tok.decode(w, skip_special_tokens=True).strip() for w in want]


def test_processors_generate_would_apply_are_named(gpt2_sm, caplog):
    model = copy.deepcopy(gpt2_sm.model)
    model.generation_config.repetition_penalty = 1.2
    with caplog.at_level("WARNING", logger="lambda_dpo.generation"):
        generate_mixed(dataclasses.replace(gpt2_sm, model=model), PROMPTS[:1], None, max_new_tokens=1)
    assert "does not apply the generation_config's {'repetition_penalty': 1.2}" in caplog.text


class _DropsCache(torch.nn.Module):
    """A model that takes the cache argument and ignores it."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config = inner, inner.config

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, cache=None, **kwargs):
        return self.inner(**kwargs)


def test_a_model_that_ignores_the_cache_is_refused(gpt2_sm):
    with pytest.raises(RuntimeError, match="did not fill the key/value cache"):
        generate_mixed(dataclasses.replace(gpt2_sm, model=_DropsCache(gpt2_sm.model)), PROMPTS[:1], None,
                       max_new_tokens=2)
