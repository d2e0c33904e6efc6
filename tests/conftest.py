"""Shared fixtures: tiny random models saved to disk, so tests exercise the real loading path."""

import importlib.util
from pathlib import Path

import pytest
import torch

from lambda_dpo.data import load_lists
from lambda_dpo.models import load_tokenizer
from lambda_dpo.testing import gpt2_tokenizer, tiny_model
from lambda_dpo.tokenization import tokenize_lists


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


@pytest.fixture(scope="module")
def tok(tiny_llama_dir):
    """The tiny Llama's tokenizer, loaded from disk as training loads it."""
    return load_tokenizer(tiny_llama_dir)


@pytest.fixture(scope="module")
def lists():
    """The example listwise file's lists (helpfulness, honesty, conciseness; some ratings missing)."""
    return load_lists("examples/tiny_listwise.jsonl")[0]


@pytest.fixture(scope="module")
def tokenized(tok, lists):
    """The first five example lists, tokenised."""
    return tokenize_lists(tok, lists[:5], 256, 64)[0]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An isolated lambda-dpo cache for reference log-probs (the model cache stays shared)."""
    path = tmp_path / "refcache"
    return str(path)


@pytest.fixture
def one_thread():
    """One intra-op thread for tiny training runs: on a shared, loaded CPU two spinning threads
    make them several times slower, and one thread keeps float sums identical across runs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def load_bench(name: str):
    """A script under bench/ (not a package) imported as a module, for the smoke tests."""
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
