"""Tokenisation, conditioning, collation and the reference cache on a tiny saved model."""

import logging
import math
from pathlib import Path

import pytest
import torch

from lambda_dpo import reference as ref_mod
from lambda_dpo.conditioning import LAMBDA_HEADER, condition_prompt, conditioned_prompt_ids
from lambda_dpo.data import load_lists
from lambda_dpo.data.schema import DataError, make_list
from lambda_dpo.lambdas import FixedLambda
from lambda_dpo.models import load_model, load_tokenizer
from lambda_dpo.scoring import ScoringBatch, build_batch, score_batch
from lambda_dpo.targets import aspect_targets, mix_targets, ratings_tensor
from lambda_dpo.tokenization import encode_prompt, tokenize_list, tokenize_lists
from lambda_dpo.batching import ListCollator, ScoredList
from lambda_dpo.training.config import load_config

ROOT = Path(__file__).resolve().parents[1]

ASPECTS = ("helpfulness", "honesty", "conciseness")


@pytest.fixture(scope="module")
def tok(tiny_llama_dir):
    return load_tokenizer(tiny_llama_dir)


@pytest.fixture(scope="module")
def lists():
    return load_lists("examples/tiny_listwise.jsonl")[0]


def test_response_ids_are_the_template_tail(tok, lists):
    tl = tokenize_list(tok, lists[0], 256, 64)
    for text, ids in zip(lists[0].responses, tl.response_ids):
        full = tok.apply_chat_template([*tl.prompt, {"role": "assistant", "content": text}], tokenize=True,
                                       return_dict=False)
        assert list(tl.prompt_ids) + list(ids) == list(full)
        assert text in tok.decode(ids)


def test_response_ids_do_not_depend_on_conditioning(tok, lists):
    """The policy's conditioned prompt + the stored response ids equal templating the whole thing."""
    tl = tokenize_list(tok, lists[1], 256, 64)
    lam = {"helpfulness": 0.2, "honesty": 0.8, "conciseness": 0.0}
    cond = condition_prompt(tl.prompt, lam, "prompt")
    full = tok.apply_chat_template([*cond, {"role": "assistant", "content": lists[1].responses[0]}],
                                   tokenize=True, return_dict=False)
    assert list(conditioned_prompt_ids(tok, tl, lam, "prompt")) + list(tl.response_ids[0]) == list(full)


def test_conditioning_text_and_modes(tok, lists):
    tl = tokenize_list(tok, lists[0], 256, 64)
    lam = {"helpfulness": 0.7, "honesty": 0.3, "conciseness": 0.0}
    text = tok.decode(conditioned_prompt_ids(tok, tl, lam, "prompt"))
    assert f"{LAMBDA_HEADER} helpfulness=0.70, honesty=0.30, conciseness=0.00." in text
    assert conditioned_prompt_ids(tok, tl, lam, "none") == tl.prompt_ids
    with_system = condition_prompt([{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi"}],
                                   lam, "prompt")
    assert with_system[0]["content"].startswith("Be nice.\n\n" + LAMBDA_HEADER) and len(with_system) == 2


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


def test_collator_builds_mixed_targets_and_conditioned_prompts(tok, lists):
    items = [ScoredList(tokenize_list(tok, l, 256, 64), torch.zeros(l.n)) for l in lists[:3]]
    collator = ListCollator(tok, ASPECTS, FixedLambda(ASPECTS, "helpfulness=1"), "prompt")
    batch = collator(items)
    ratings, mask = ratings_tensor([l for l in lists[:3]], ASPECTS)
    p, usable = aspect_targets(ratings, mask)
    assert torch.allclose(batch["target"], p[..., 0]) and batch["valid"].all()
    assert torch.equal(batch["mask"], mask)
    decoded = tok.decode(batch["policy_input_ids"][0][batch["policy_segment_ids"][0] == 0])
    assert "helpfulness=1.00, honesty=0.00" in decoded


def test_lambda_on_a_missing_aspect_makes_the_list_invalid(tok, lists):
    missing = next(l for l in lists if "honesty" not in l.usable_aspects())
    items = [ScoredList(tokenize_list(tok, missing, 256, 64), torch.zeros(missing.n))]
    batch = ListCollator(tok, ASPECTS, FixedLambda(ASPECTS, "honesty=1"), "none")(items)
    assert not batch["valid"].any()
    batch = ListCollator(tok, ASPECTS, FixedLambda(ASPECTS, "honesty=1,helpfulness=1"), "none")(items)
    ratings, mask = ratings_tensor([missing], ASPECTS)
    p, usable = aspect_targets(ratings, mask)
    assert batch["valid"].all() and torch.allclose(batch["target"], p[..., 0])  # renormalised onto helpfulness


@pytest.fixture(scope="module")
def tokenized(tok, lists):
    return tokenize_lists(tok, lists[:5], 256, 64)[0]


def test_lora_reference_is_the_adapter_disabled_model(tiny_llama_dir, tokenized):
    from peft import LoraConfig, get_peft_model

    base = load_model(tiny_llama_dir)
    with torch.no_grad():
        expected, _ = score_batch(base, build_batch([t.prompt_ids for t in tokenized],
                                                    [t.response_ids for t in tokenized], layout="prompt_cache"))
    model = get_peft_model(load_model(tiny_llama_dir), LoraConfig(r=4, target_modules="all-linear",
                                                                  init_lora_weights=False))
    ref = ref_mod.compute_reference_logps(model, tokenized, batch_size=2)
    for i, r in enumerate(ref):
        torch.testing.assert_close(r, expected[i, :r.numel()])
    with torch.no_grad():  # the adapter is non-trivial, so the policy differs from the reference
        policy, _ = score_batch(model, build_batch([t.prompt_ids for t in tokenized[:1]],
                                                   [t.response_ids for t in tokenized[:1]], layout="prompt_cache"))
    assert not torch.allclose(policy[0, :ref[0].numel()], ref[0])


def test_reference_cache_hit_stale_and_corrupt(tiny_llama_dir, tokenized, cache_dir, monkeypatch, caplog):
    model = load_model(tiny_llama_dir)
    first = ref_mod.reference_logps(model, tokenized, cache_dir, settings={"x": 1})
    files = list(__import__("pathlib").Path(cache_dir).glob("reference-*.safetensors"))
    assert len(files) == 1

    calls = []
    real = ref_mod.compute_reference_logps
    monkeypatch.setattr(ref_mod, "compute_reference_logps", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = ref_mod.reference_logps(model, tokenized, cache_dir, settings={"x": 1})
    assert calls == [] and all(torch.equal(a, b) for a, b in zip(first, again))  # hit: nothing recomputed

    ref_mod.reference_logps(model, tokenized[:3], cache_dir, settings={"x": 1})  # other data -> other key
    ref_mod.reference_logps(model, tokenized, cache_dir, settings={"x": 2})  # other settings -> other key
    weight = model.model.layers[0].mlp.up_proj.weight
    saved = weight.detach().clone()
    with torch.no_grad():
        weight.mul_(1.5)  # other weights -> other key
    ref_mod.reference_logps(model, tokenized, cache_dir, settings={"x": 1})
    assert len(calls) == 3

    data = bytearray(files[0].read_bytes())  # flip bytes inside the tensor payload
    data[-8:] = b"\x7f" * 8
    files[0].write_bytes(bytes(data))
    with torch.no_grad():
        weight.copy_(saved)
    with caplog.at_level(logging.WARNING):
        rebuilt = ref_mod.reference_logps(model, tokenized, cache_dir, settings={"x": 1})
    assert "checksum" in caplog.text and len(calls) == 4
    assert all(torch.allclose(a, b) for a, b in zip(first, rebuilt))

    files[0].write_bytes(files[0].read_bytes()[:50])  # truncated file
    with caplog.at_level(logging.WARNING):
        ref_mod.reference_logps(model, tokenized, cache_dir, settings={"x": 1})
    assert "unreadable" in caplog.text and len(calls) == 5


def test_scoring_batch_round_trips_through_a_dict(tokenized):
    batch = build_batch([t.prompt_ids for t in tokenized], [t.response_ids for t in tokenized], layout="prompt_cache")
    again = ScoringBatch.from_dict(batch.as_dict("policy_"), "policy_")
    assert torch.equal(again.input_ids, batch.input_ids) and again.n_max == batch.n_max


def test_mixed_target_equals_weighted_aspect_targets(lists):
    ratings, mask = ratings_tensor(lists[:4], ASPECTS)
    p, usable = aspect_targets(ratings, mask)
    lam = torch.tensor([0.5, 0.0, 0.5])
    target, valid = mix_targets(p, usable, lam)
    assert torch.allclose(target, 0.5 * p[..., 0] + 0.5 * p[..., 2])


def test_training_picks_the_scoring_layout_and_every_layout_trains_alike(tiny_llama_dir, tmp_path, caplog):
    """Same seed, data and lambda draws: the first two logged losses agree whichever layout scores them."""
    from lambda_dpo.training.run import train

    cases = [({}, "prompt_cache"), ({"gradient_checkpointing": True}, "packed"),  # checkpointing drops caches
             ({"shared_prompt_layout": "packed"}, "packed"), ({"shared_prompt": False}, "naive")]
    losses = []
    for i, (overrides, layout) in enumerate(cases):
        cfg = load_config(None, train_file=str(ROOT / "examples/tiny_listwise.jsonl"), max_train_lists=4,
                          model_name_or_path=tiny_llama_dir, output_dir=str(tmp_path / f"o{i}"), max_steps=2,
                          eval_fraction=0.0, reference_cache_dir=None, lambda_source="dirichlet",
                          save_strategy="no", logging_steps=1, learning_rate=0.1,
                          model_dtype="float32", **overrides)  # 5e-6 agreement is fp32's, not bf16's
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="lambda_dpo.training.run"):
            result = train(cfg)
        assert f"scoring layout: {layout}" in caplog.text
        losses.append([h["loss"] for h in result.trainer.state.log_history if "loss" in h])
    assert len(losses[0]) == 2 and all(math.isfinite(x) for x in losses[0])
    for other in losses[1:]:
        assert other == pytest.approx(losses[0], abs=5e-6)


def test_config_refuses_an_unknown_layout():
    with pytest.raises(ValueError, match="shared_prompt_layout='fast' is not one of auto, prompt_cache, packed"):
        load_config(None, ["shared_prompt_layout=fast"])
