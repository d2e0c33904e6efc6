"""The one-time SmolLM2 GGUF -> safetensors conversion (integration: the real SmolLM2-135M-Instruct),
and the tokenizer it leaves. Provisioning without the real model: tests/unit/test_models.py."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lambda_dpo import models
from lambda_dpo.models import DEFAULT_MODEL, find_smollm2_gguf, load_tokenizer, provision_smollm2, resolve_model_path

CHAT = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="session")
def smollm2_dir():
    """One conversion per session, into the real cache (or $LAMBDA_DPO_CACHE) so the rest of
    the suite and the demo reuse it."""
    try:
        find_smollm2_gguf()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    return provision_smollm2()


@pytest.mark.integration
def test_provisioned_checkpoint_matches_gguf(smollm2_dir):
    gguf = find_smollm2_gguf()
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert (smollm2_dir / "model.safetensors").is_file()
    provenance = json.loads((smollm2_dir / models.PROVENANCE_FILE).read_text())
    assert provenance["source_size"] == gguf.stat().st_size

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    saved = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(saved(ids).logits, reference(ids).logits)
    assert getattr(saved, "hf_quantizer", None) is None
    assert all(p.requires_grad for p in saved.parameters())


@pytest.mark.integration
def test_second_provision_does_not_convert(smollm2_dir, monkeypatch):
    mtime = (smollm2_dir / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(models, "_convert_gguf", lambda *a: pytest.fail("converted again"))
    assert provision_smollm2() == smollm2_dir
    assert resolve_model_path(DEFAULT_MODEL) == str(smollm2_dir)
    assert (smollm2_dir / "model.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.integration
def test_provisioned_tokenizer_chatml(smollm2_dir):
    tok = load_tokenizer(DEFAULT_MODEL)
    assert tok.eos_token == "<|im_end|>"
    assert tok.pad_token is not None and tok.padding_side == "right"
    prompt = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>")
    assert "<|im_start|>user\nName a colour.<|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
