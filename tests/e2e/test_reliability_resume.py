"""Interrupted runs: SIGKILL a training run mid-way, resume from its last checkpoint, and get the
per-step losses and final weights of an uninterrupted run with the same seed, exactly.

The data order (accelerate's seedable sampler, skip of the batches already seen, restored RNG
states) and lambda (keyed by (seed, epoch, dataset index)) resume with the run; the resume below
lands mid-epoch in the second epoch, so either being off changes the losses."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO
import torch
import yaml
from safetensors.torch import load_file

from lambda_dpo.training.config import load_config
from lambda_dpo.training.run import resume_checkpoint, train

ROOT = REPO


pytestmark = pytest.mark.usefixtures("one_thread")


def losses(run_dir: Path) -> list[tuple[int, float]]:
    state = json.loads((run_dir / "checkpoint-8" / "trainer_state.json").read_text())
    return [(h["step"], h["loss"]) for h in state["log_history"] if "loss" in h]


def test_sigkill_then_resume_matches_uninterrupted_run(tiny_llama_dir, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(dict(
        model_name_or_path=tiny_llama_dir, train_file=str(ROOT / "examples/tiny_listwise.jsonl"),
        max_train_lists=6, eval_fraction=0.0, per_device_train_batch_size=2,  # 3 steps per epoch
        max_steps=8, save_strategy="steps", save_steps=2, logging_steps=1, learning_rate=1e-2,
        lambda_source="dirichlet", conditioning="prompt", lora_r=4, seed=11,
        reference_cache_dir=str(tmp_path / "cache"))))
    full, cut = tmp_path / "full", tmp_path / "cut"

    # The interrupted run: a separate process, SIGKILLed once checkpoint-4 is complete.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}  # as this process
    proc = subprocess.Popen([sys.executable, "-m", "lambda_dpo.cli", "train", str(cfg), f"output_dir={cut}"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = cut / "checkpoint-4" / "trainer_state.json"

    def kill_at_checkpoint_4():
        deadline = time.time() + 300
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_at_checkpoint_4)
    killer.start()
    try:
        train(load_config(str(cfg), [f"output_dir={full}"]))  # the uninterrupted run, meanwhile
    finally:
        killer.join()
    stderr = proc.communicate()[1]
    assert proc.returncode == -signal.SIGKILL, stderr[-3000:]
    assert marker.exists() and not (cut / "checkpoint-8").exists() and not (cut / "adapter_model.safetensors").exists()
    # A kill while saving leaves a newer checkpoint without trainer_state.json; resume skips it.
    partial = cut / "checkpoint-6"
    if not (partial / "trainer_state.json").exists():
        partial.mkdir(exist_ok=True)
        (partial / "adapter_model.safetensors").write_bytes(b"\0" * 10)
        resumed_from = cut / "checkpoint-4"
    else:
        resumed_from = partial
    resume_cfg = load_config(str(cfg), [f"output_dir={cut}", "resume_from_checkpoint=latest"])
    assert resume_checkpoint(resume_cfg) == str(resumed_from)

    result = train(resume_cfg)
    assert result.trainer.state.global_step == 8
    assert losses(cut) == losses(full) and len(losses(full)) == 8
    a, b = load_file(str(full / "adapter_model.safetensors")), load_file(str(cut / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_latest_picks_the_newest_complete_checkpoint(tmp_path):
    for step, state in ((2, {"global_step": 2}), (4, {"global_step": 4}), (6, None), (8, "truncated")):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if state == "truncated":
            (d / "trainer_state.json").write_text('{"global_step": 8, "log_hist')
        elif state is not None:
            (d / "trainer_state.json").write_text(json.dumps(state))
    (tmp_path / "checkpoint-10.tmp").mkdir()
    cfg = load_config(None, output_dir=str(tmp_path), resume_from_checkpoint="latest")
    assert resume_checkpoint(cfg) == str(tmp_path / "checkpoint-4")
    assert resume_checkpoint(load_config(None, output_dir=str(tmp_path / "none"), resume_from_checkpoint="latest")) is None
