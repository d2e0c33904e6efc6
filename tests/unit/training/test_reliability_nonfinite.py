"""Numerical faults: a NaN/inf loss or gradient skips the step (weights and optimiser state
unchanged), is counted, and repeated faults stop the run with a checkpoint of finite weights."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

import lambda_dpo.training.trainer as trainer_module
from lambda_dpo.training.config import load_config
from lambda_dpo.training.guards import NonFiniteError
from lambda_dpo.training.run import train

DATA = "examples/tiny_listwise.jsonl"


pytestmark = pytest.mark.usefixtures("one_thread")


def config(tmp_path, model_dir, **over):
    fields = dict(train_file=DATA, model_name_or_path=model_dir, output_dir=str(tmp_path / "out"),
                  reference_cache_dir=str(tmp_path / "cache"), eval_fraction=0.0, max_train_lists=8,
                  per_device_train_batch_size=2, learning_rate=1e-2, logging_steps=1, lambda_source="fixed",
                  conditioning="none", lora_r=4, seed=3)
    return load_config(None, **{**fields, **over})


def nan_loss_at(monkeypatch, steps: set[int]):
    """Make the listwise loss NaN (with NaN gradients) at the given 1-based optimiser steps."""
    original = trainer_module.LOSSES["lambda_dpo"]
    calls = {"n": 0}

    def loss(scores, target, mask, beta):
        calls["n"] += 1
        out = original(scores, target, mask, beta)
        return out * float("nan") if calls["n"] in steps else out

    monkeypatch.setitem(trainer_module.LOSSES, "lambda_dpo", loss)


class Recorder(TrainerCallback):
    """Trainable weights after every step, and a NaN gradient on one tensor at chosen steps."""

    def __init__(self, nan_grad_steps=()):
        self.snapshots, self.nan_grad_steps, self.step, self.optimizer = [], set(nan_grad_steps), 0, None

    def on_train_begin(self, args, state, control, model=None, **kw):
        param = next(p for n, p in model.named_parameters() if p.requires_grad and "lora_B" in n)
        param.register_hook(lambda g: g * float("nan") if self.step in self.nan_grad_steps else g)

    def on_step_begin(self, args, state, control, **kw):
        self.step = state.global_step + 1

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kw):
        self.optimizer = optimizer
        self.snapshots.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_nonfinite_steps_are_skipped_counted_and_training_goes_on(tiny_llama_dir, tmp_path, monkeypatch):
    # Step 2: NaN loss (and gradients). Step 4: finite loss, NaN gradient on one tensor only.
    nan_loss_at(monkeypatch, {2})
    rec = Recorder(nan_grad_steps={4})
    result = train(config(tmp_path, tiny_llama_dir, max_steps=5, max_nonfinite_steps=2), callbacks=[rec])
    s = rec.snapshots
    assert len(s) == 5
    assert same(s[1], s[0]) and same(s[3], s[2])  # the faulty steps changed no weight at all
    assert not same(s[2], s[1]) and not same(s[4], s[3])  # the steps after them trained
    assert all(torch.isfinite(t).all() for snap in s for t in snap.values())
    # No moment update or weight decay either: AdamW counted 3 steps for every parameter.
    steps = {int(st["step"]) for st in rec.optimizer.state.values()}
    assert steps == {3}
    logs = [h for h in result.trainer.state.log_history if "loss" in h]
    assert [h["nonfinite_steps"] for h in logs] == [0, 1, 1, 2, 2]
    assert result.train_metrics["train_nonfinite_steps"] == 2
    saved = load_file(str(Path(result.output_dir) / "adapter_model.safetensors"))
    assert all(torch.isfinite(t).all() for t in saved.values())

    # Weights that are not finite are never written.
    target = tmp_path / "refused"
    with torch.no_grad():
        next(p for p in result.trainer.model.parameters() if p.requires_grad).fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="refusing to save non-finite weights"):
        result.trainer.save_model(str(target))
    assert not (target / "adapter_model.safetensors").exists()


def test_repeated_nonfinite_steps_stop_with_message_and_finite_checkpoint(tiny_llama_dir, tmp_path, monkeypatch):
    nan_loss_at(monkeypatch, set(range(3, 100)))
    rec = Recorder()
    cfg = config(tmp_path, tiny_llama_dir, max_steps=8, max_nonfinite_steps=2)
    with pytest.raises(NonFiniteError) as err:
        train(cfg, callbacks=[rec])
    message = str(err.value)
    ckpt = Path(cfg.output_dir) / "checkpoint-4"
    assert "2 consecutive" in message and "non-finite" in message and str(ckpt) in message and "Fix:" in message
    assert len(rec.snapshots) == 4 and same(rec.snapshots[3], rec.snapshots[1])
    weights = load_file(str(ckpt / "adapter_model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())
    # The checkpoint holds the weights of step 2, the last finite step (names differ only by peft's prefix).
    after_step2 = {k.replace(".default", ""): v for k, v in rec.snapshots[1].items()}
    assert {k: v for k, v in weights.items()}.keys() == after_step2.keys()
    assert all(torch.equal(weights[k], after_step2[k]) for k in weights)
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and state["log_history"][-1]["nonfinite_steps"] == 2
    assert not (Path(cfg.output_dir) / "adapter_model.safetensors").exists()  # no final model from a failed run


def test_cli_prints_the_stop_message_without_traceback(tiny_llama_dir, tmp_path, monkeypatch, capsys):
    from lambda_dpo.cli import main

    nan_loss_at(monkeypatch, set(range(1, 100)))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(dict(train_file=DATA, model_name_or_path=tiny_llama_dir, output_dir=str(tmp_path / "o"),
                                   reference_cache_dir=str(tmp_path / "cache"), eval_fraction=0.0, max_train_lists=4,
                                   max_steps=3, max_nonfinite_steps=1, lambda_source="fixed", conditioning="none")))
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "lambda-dpo: error: training stopped at step 1" in err and "Traceback" not in err
    assert math.isfinite(sum(t.sum().item() for t in
                             load_file(str(tmp_path / "o" / "checkpoint-1" / "adapter_model.safetensors")).values()))
