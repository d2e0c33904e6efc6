"""Shared fixtures: tiny random models saved to disk, so tests exercise the real loading path."""

import pytest

from lambda_dpo.models import gpt2_tokenizer, tiny_model


def save_tiny(path, kind="llama"):
    tok = gpt2_tokenizer()
    tiny_model(kind, vocab_size=len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny_llama"), "llama")


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny_gpt2"), "gpt2")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An isolated lambda-dpo cache for reference log-probs (the model cache stays shared)."""
    path = tmp_path / "refcache"
    return str(path)
