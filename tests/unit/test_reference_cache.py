"""The reference: the adapter-disabled model for LoRA, and its on-disk cache (hit, stale key, corrupt file)."""

import logging

import torch

from lambda_dpo import reference as ref_mod
from lambda_dpo.models import load_model
from lambda_dpo.layouts import build_batch
from lambda_dpo.logprobs import score_batch


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
