"""The TRL-shaped entry point: LambdaDPOTrainer(model=..., args=LambdaDPOConfig(...), train_dataset=Dataset,
processing_class=tokenizer), on each supported record layout; the CLI path is the same trainer."""

import json

import pytest
import torch
from datasets import Dataset

from lambda_dpo.generation import generate, load_steerable
from lambda_dpo.models import load_model, load_tokenizer
from lambda_dpo.training import LambdaDPOConfig, LambdaDPOTrainer
from lambda_dpo.training.config import load_config
from lambda_dpo.training.run import train

UF = "tests/fixtures/ultrafeedback_sample.jsonl"
NATIVE = "examples/tiny_listwise.jsonl"


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def args(tmp_path, **over):
    fields = dict(output_dir=str(tmp_path / "out"), max_steps=2, logging_steps=1, per_device_train_batch_size=2,
                  learning_rate=1e-2, reference_cache_dir=None, model_dtype="float32", seed=3, report_to="none")
    return LambdaDPOConfig(**{**fields, **over})


@pytest.mark.parametrize("rows", [
    [{"prompt": "Say hi.", "responses": ["Hi!", "Hello there, friend."], "ratings": {"a": [5, 1], "b": [1, 5]}},
     {"prompt": "Count to two.", "responses": ["1 2", "one, two", "12"], "ratings": {"a": [3, 2, 1], "b": [1, 2, 3]}}],
    [{"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Go away."},
     {"prompt": "Count to two.", "chosen": "1 2", "rejected": "3"}],
    records(UF)[:3],
], ids=["native", "trl_pairwise", "ultrafeedback"])
def test_trains_from_a_dataset_and_saves_a_model_generate_reads(rows, tiny_llama_dir, tmp_path, one_thread):
    model, tok = load_model(tiny_llama_dir), load_tokenizer(tiny_llama_dir)
    trainer = LambdaDPOTrainer(model=model, args=args(tmp_path), train_dataset=Dataset.from_list(rows),
                               eval_dataset=Dataset.from_list(rows), processing_class=tok)
    losses = [h["loss"] for h in trainer.train() and trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    metrics = trainer.evaluate()
    assert any(k.endswith("/top1") for k in metrics)
    trainer.save_model(str(tmp_path / "saved"))
    sm = load_steerable(tmp_path / "saved")
    assert sm.aspects == trainer.prepared.aspects and sm.conditioning == "prompt"
    assert generate(sm, ["Say hi."], max_new_tokens=3)[0] is not None


def test_the_cli_path_is_the_same_trainer(tiny_llama_dir, tmp_path, one_thread):
    """run.train (files) and the Python API (a Dataset of the same records) give the same losses."""
    cfg = load_config(None, model_name_or_path=tiny_llama_dir, train_file=NATIVE, eval_fraction=0,
                      output_dir=str(tmp_path / "cli"), max_steps=3, logging_steps=1, per_device_train_batch_size=2,
                      learning_rate=1e-2, reference_cache_dir=None, model_dtype="float32", seed=3)
    cli = [h["loss"] for h in train(cfg).trainer.state.log_history if "loss" in h]
    api = LambdaDPOTrainer(model=load_model(tiny_llama_dir), processing_class=load_tokenizer(tiny_llama_dir),
                           args=args(tmp_path, max_steps=3), train_dataset=Dataset.from_list(records(NATIVE)))
    api.train()
    assert [h["loss"] for h in api.state.log_history if "loss" in h] == pytest.approx(cli, abs=1e-6)


def test_a_bad_record_names_its_row(tiny_llama_dir, tmp_path):
    rows = [{"prompt": "Say hi.", "responses": ["Hi!"], "ratings": {"a": [5]}}]
    with pytest.raises(ValueError, match=r"<dataset>:row 1.*at least 2"):
        LambdaDPOTrainer(model=load_model(tiny_llama_dir), args=args(tmp_path), train_dataset=Dataset.from_list(rows),
                         processing_class=load_tokenizer(tiny_llama_dir))


def test_the_python_example_runs(tiny_llama_dir, tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "examples/train_with_python.py", "--model", tiny_llama_dir, "--steps", "1",
                          "--out", str(tmp_path / "ex")], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "helpfulness=1 ->" in out.stdout and (tmp_path / "ex" / "lambda_dpo.json").exists()
