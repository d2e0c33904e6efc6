"""Outputs are written atomically (temporary file, then rename), and lambda_dpo.json, written last,
marks a complete model directory: a save that dies half-way leaves no marker, so `generate`
refuses the directory instead of loading half-written weights. (The reference cache's atomic write
and checksum are tested in test_reference_cache.py::test_reference_cache_hit_stale_and_corrupt.)"""

import os

import pytest
import torch

from lambda_dpo.atomic import atomic_save_file, atomic_write_text
from lambda_dpo.cli import main
from lambda_dpo.training.config import load_config
from lambda_dpo.training.run import train
from lambda_dpo.training.trainer import LambdaDPOTrainer


pytestmark = pytest.mark.usefixtures("one_thread")


def boom(*args, **kwargs):
    raise OSError("disk full")


@pytest.mark.parametrize("write", [lambda p, v: atomic_write_text(p, v),
                                   lambda p, v: atomic_save_file({"x": torch.full((3,), float(len(v)))}, p, {})])
def test_an_interrupted_write_keeps_the_old_file_and_no_debris(tmp_path, monkeypatch, write):
    path = tmp_path / "out.file"
    write(path, "old")
    before = path.read_bytes()
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write(path, "newer")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.file"]


def test_a_final_save_that_dies_leaves_no_model_marker(tiny_llama_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "model"
    cfg = load_config(None, train_file="examples/tiny_listwise.jsonl", model_name_or_path=tiny_llama_dir,
                      output_dir=str(out), max_steps=1, eval_fraction=0.0, max_train_lists=4, reference_cache_dir=None,
                      lambda_source="fixed", conditioning="none")
    train(cfg)
    assert (out / "lambda_dpo.json").exists() and (out / "adapter_model.safetensors").exists()

    monkeypatch.setattr(LambdaDPOTrainer, "save_model", boom)  # the next run dies while writing its weights
    with pytest.raises(OSError, match="disk full"):
        train(cfg)
    assert not (out / "lambda_dpo.json").exists()
    capsys.readouterr()
    assert main(["generate", "--model", str(out), "hi"]) == 2
    assert "not a lambda-dpo model directory" in capsys.readouterr().err


def test_json_once_keeps_a_measured_result_and_refuses_other_settings(tmp_path):
    from lambda_dpo.atomic import json_once

    calls = []
    path = tmp_path / "runs" / "arm-seed0.json"
    first = json_once(path, lambda: calls.append(1) or {"score": 3.5}, {"preset": "full", "budget": (1, 2)})
    again = json_once(path, lambda: calls.append(1) or {"score": 0.0}, {"preset": "full", "budget": (1, 2)})
    assert calls == [1] and first == again == {"score": 3.5, "settings": {"preset": "full", "budget": [1, 2]}}
    with pytest.raises(ValueError, match=r"arm-seed0.json was measured with other settings \(preset differ\)"):
        json_once(path, lambda: {"score": 0.0}, {"preset": "quick", "budget": (1, 2)})
