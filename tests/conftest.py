"""Shared fixtures: tiny random models saved to disk, so tests exercise the real loading path; and the
tiers: each test gets its folder's marker (tests/unit -> `unit`, ...; docs/design.md, "Tests", says what
each tier holds).

Test files reach the repository through REPO (`from conftest import REPO`), never by counting their own
parent folders, so a file can move between tiers without changing what it reads."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lambda_dpo.data import load_lists
from lambda_dpo.models import load_tokenizer
from lambda_dpo.testing import gpt2_tokenizer, tiny_model
from lambda_dpo.tokenization import tokenize_lists

REPO = Path(__file__).resolve().parent.parent  # this file stays at tests/conftest.py
TESTS = REPO / "tests"
# Each folder of tests/ is a tier, with the marker of the same name (registered in pyproject.toml).
TIERS = ("unit", "integration", "distributed", "browser", "e2e", "serving")


def pytest_collection_modifyitems(config, items):
    """Mark each test with its tier, from the folder it sits in: `pytest -m unit` and `pytest tests/unit`
    select the same tests."""
    for item in items:
        try:
            tier = Path(str(item.path)).resolve().relative_to(TESTS).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


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
    path = REPO / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- shared by a unit file and a tier apart ------------------------------------------------------------

PLAYGROUND_ASPECTS = ("conciseness", "informativeness")


@pytest.fixture(scope="module")
def playground_model_dir(tiny_llama_dir, tmp_path_factory):
    """The tiny random Llama saved as a lambda-dpo model directory (full weights, prompt conditioning,
    the instructions style): what `lambda-dpo train` leaves, without the training. For the playground's
    tests, unit (tests/unit/test_playground.py) and browser (tests/browser/test_playground_browser.py)."""
    from lambda_dpo.conditioning import LambdaText
    from lambda_dpo.saved_model import write_model_files
    from lambda_dpo.training.config import load_config

    path = tmp_path_factory.mktemp("playground") / "model"
    shutil.copytree(tiny_llama_dir, path)
    cfg = load_config(None, output_dir=str(path), model_name_or_path=str(path), conditioning="prompt",
                      use_lora=False, model_dtype="float32", aspects=list(PLAYGROUND_ASPECTS),
                      lambda_text="instructions")
    write_model_files(path, cfg, PLAYGROUND_ASPECTS, {}, LambdaText("instructions"))
    return str(path)


@pytest.fixture(scope="module")
def tiny_data(tiny_llama_dir, tmp_path_factory):
    """The demo's dataset built afresh on the tiny model: 10 training prompts, 3 held out. For the e2e
    tier's pipelines of the demo and the loss and scheduler studies."""
    from lambda_dpo.demo.dataset.build import build_demo_dataset

    out = tmp_path_factory.mktemp("demo_data")
    build_demo_dataset(out, seed=1, n_prompts=10, n_eval=3, max_new_tokens=8, model=tiny_llama_dir, batch_size=8,
                       progress=False)
    return out


def measured_vs_predicted_peak(bench, spec):
    """bench/memory_model.py's worker: (measured, predicted) CPU peak RSS increment in MiB. Measured in a
    fresh process with 2 threads, as the calibration measured: glibc keeps less with one (SmolLM2 fp32 at
    128/64: about 1100 MiB instead of 1350), more with more (per-thread arenas). For the memory model's
    tests, unit (tests/unit/test_memory_model.py) and integration (tests/integration/test_memory_model_smollm2.py)."""
    cmd = [sys.executable, str(REPO / "bench" / "memory_model.py"), "--worker", json.dumps(spec), "--threads", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "2"})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, proc.stderr[-3000:]
    rec = json.loads(line[len("RESULT "):])
    return rec["increment_mib"], bench.estimate(rec).cpu_rss_increment_bytes / 2**20
