"""Multi-process: `accelerate launch` with 2 CPU processes trains through the same CLI and, with the
same global batch and seed, reaches the same per-step losses and weights as one process; only
the main process writes the outputs, and it alone computes the reference (the other reads the cache).

On a machine without GPUs, `accelerate launch --cpu --num_processes 2` starts ONE process (its
multi-CPU path goes through mpirun). What starts 2 gloo processes is the torchrun launcher
(`--multi_gpu`, here through configs/accelerate/ddp.yaml) plus `use_cpu=true` in the config (or
ACCELERATE_USE_CPU=true), as below.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO
import torch
import yaml
from safetensors.torch import load_file

from lambda_dpo.training.config import load_config
from lambda_dpo.training.run import train

ROOT = REPO


pytestmark = pytest.mark.usefixtures("one_thread")

# Runs the CLI exactly as `-m lambda_dpo.cli` would, recording every file each rank opens for writing.
SPY = textwrap.dedent("""
    import os, sys
    import safetensors.torch
    written = []
    def hook(event, args):
        if event == "os.rename":  # os.rename and os.replace: the destination is written
            written.append(os.fspath(args[1]))
        elif event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) and (
                (isinstance(args[1], str) and any(m in args[1] for m in "wax+"))
                or (isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))):
            written.append(os.fsdecode(args[0]))
    sys.addaudithook(hook)
    _save = safetensors.torch.save_file
    def save_file(tensors, filename, *a, **k):
        written.append(os.fspath(filename))
        return _save(tensors, filename, *a, **k)
    safetensors.torch.save_file = save_file
    from lambda_dpo.cli import main
    code = main(sys.argv[1:])
    rank = os.environ.get("RANK", "0")
    with open(os.path.join(os.environ["SPY_DIR"], f"rank{rank}.json"), "w") as f:
        f.write(__import__("json").dumps(written))
    sys.exit(code)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(run_dir: Path) -> list[float]:
    state = json.loads((run_dir / "checkpoint-4" / "trainer_state.json").read_text())
    return [h["loss"] for h in state["log_history"] if "loss" in h]


@pytest.mark.skipif(shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists(),
                    reason="the accelerate launcher is not installed")
def test_two_processes_match_one_process_with_the_same_global_batch(tiny_llama_dir, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(dict(
        model_name_or_path=tiny_llama_dir, train_file=str(ROOT / "examples/tiny_listwise.jsonl"), max_train_lists=8,
        eval_fraction=0.0, max_steps=4, save_strategy="steps", save_steps=4, logging_steps=1, learning_rate=1e-2,
        lambda_source="dirichlet", conditioning="prompt", lora_r=4, seed=5, rating_temperature=1.0,  # the settings
        lambda_text="weights",  # this equality was established with (sharper targets move weights more per step)
        model_dtype="float32")))  # exact agreement is an fp32 property; auto would pick bf16 on bf16 CPUs
    two, one, spy_dir = tmp_path / "two", tmp_path / "one", tmp_path / "spy"
    spy_dir.mkdir()
    (tmp_path / "spy.py").write_text(SPY)

    launcher = Path(sys.executable).parent / "accelerate"
    cmd = [str(launcher) if launcher.exists() else "accelerate", "launch",
           "--config_file", str(ROOT / "configs/accelerate/ddp.yaml"), "--num_processes", "2",
           "--mixed_precision", "no", "--main_process_port", str(free_port()), str(tmp_path / "spy.py"),
           "train", str(cfg), f"output_dir={two}", "per_device_train_batch_size=1", "use_cpu=true",
           f"reference_cache_dir={tmp_path / 'cache2'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SPY_DIR": str(spy_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stderr + proc.stdout
    assert "MULTI_CPU" in log or log.count("model saved to") == 2, "did not run as 2 processes"
    # The main process computed and cached the reference; the other one read that cache.
    assert log.count("reference log-probs cached at") == 1 and log.count("reference log-probs from cache") == 1

    result = train(load_config(str(cfg), [f"output_dir={one}", "per_device_train_batch_size=2",
                                          f"reference_cache_dir={tmp_path / 'cache1'}"]))
    assert result.trainer.args.world_size == 1
    torch.testing.assert_close(torch.tensor(losses(two)), torch.tensor(losses(one)), rtol=1e-5, atol=1e-6)
    assert len(losses(one)) == 4
    a, b = load_file(str(one / "adapter_model.safetensors")), load_file(str(two / "adapter_model.safetensors"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6)

    # Only the main process wrote outputs: rank 1 wrote nothing under output_dir but its RNG state.
    by_rank = {r: json.loads((spy_dir / f"rank{r}.json").read_text()) for r in (0, 1)}
    outputs = {r: {Path(p).resolve().relative_to(two.resolve()).as_posix() for p in paths
                   if Path(p).resolve().is_relative_to(two.resolve())} for r, paths in by_rank.items()}
    assert "adapter_model.safetensors" in outputs[0] and "lambda_dpo.json" in outputs[0]
    assert all(Path(p).name == "rng_state_1.pth" for p in outputs[1]), sorted(outputs[1])
    assert not any("cache2" in p and "reference-" in p for p in by_rank[1])  # nor the reference cache


def test_zero3_weights_are_gathered_on_every_process_for_the_reference(tiny_llama_dir, tmp_path, monkeypatch):
    """ZeRO-3 partitions weights at load time; the reference pass runs inside GatheredParameters over
    all of them, entered before main_process_first (the gather is a collective). DeepSpeed is not
    installed here, so a stand-in records what the real one would be asked to do."""
    import importlib.machinery
    import types
    from contextlib import contextmanager

    import transformers.integrations

    import lambda_dpo.training.prepare as prepare

    events = []

    @contextmanager
    def gathered(params, modifier_rank=None):
        events.append(("gather", len(params), modifier_rank))
        try:
            yield
        finally:
            events.append(("release",))

    fake = types.ModuleType("deepspeed")
    fake.__spec__ = importlib.machinery.ModuleSpec("deepspeed", None)
    fake.zero = types.SimpleNamespace(GatheredParameters=gathered)
    monkeypatch.setitem(sys.modules, "deepspeed", fake)
    monkeypatch.setattr(transformers.integrations, "is_deepspeed_zero3_enabled", lambda: True)

    class Stop(Exception):
        pass

    def score_reference(cfg, model, lists, layout, name, dtype):
        events.append(("score", len(list(model.parameters()))))
        raise Stop

    monkeypatch.setattr(prepare, "score_reference", score_reference)
    cfg = load_config(None, train_file=str(ROOT / "examples/tiny_listwise.jsonl"), model_name_or_path=tiny_llama_dir,
                      output_dir=str(tmp_path / "o"), eval_fraction=0.0,
                      layout="per_response")  # the shared-prompt layouts are refused under ZeRO-3 (tests/distributed/test_fsdp.py)
    with pytest.raises(Stop):
        train(cfg)
    (_, n_gathered, rank), (_, n_params), release = events
    assert n_gathered == n_params and rank is None and release == ("release",)
