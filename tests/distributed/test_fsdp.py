"""FSDP (PyTorch FSDP2, `fully_shard`) with 2 CPU processes trains as 1 process does on the same global batch.

Launched as a user launches it: `accelerate launch --config_file configs/accelerate/fsdp.yaml`, so
Accelerate's FSDP plugin (fsdp_version 2, one shard unit per decoder layer, the output layer and the
final norm in one unit) shards the model inside the Trainer. 2 gloo processes x 1 list per step
against 1 process x 2 lists, for both shared-prompt layouts (prompt_cache: two model calls per step;
packed: one), with LoRA and with full fine-tuning (output layer trained), on a tiny random Llama
(2 layers, width 64); all four cases run one after another in ONE 2-process launch.

What must agree, and to what tolerance (everything is fp32; the two sides differ only in how sums
are ordered: one batch of 2 against two batches of 1 averaged by a reduce-scatter):
- the per-step losses: rtol 1e-5 (observed ~2e-7);
- the gradients the optimiser applies at step 1, gathered whole: within 3e-5 of each tensor's largest
  entry (observed <= 4e-6: sums over the 50k-token softmax and the reduce-scatter, in another order; a
  lost or doubled reduction would be off by 50% or more). LoRA's A matrices get exactly zero gradient
  at step 1 (B starts at zero) and must stay exactly zero;
- the saved weights after 3 steps (adapters, or the whole model): rtol 1e-4, atol 1e-6 (observed:
  adapters <= 2e-6 on weights ~1e-2, whole model <= 4e-9). The LoRA cases train with AdamW, whose
  state FSDP shards; the full fine-tuning cases with plain SGD, whose update is linear in the
  gradient. AdamW divides each entry's gradient by its running RMS, so an entry whose gradients
  nearly cancel over the steps magnifies a 1e-7 relative rounding difference without bound: with
  AdamW, a few hundred of the tiny model's 6.5M weights differed by 1e-5 to 5e-4 (up to 5% of a
  step at lr 1e-2), the others by < 1e-6; a fact about AdamW, not about sharding.

Accelerate switches FSDP on only for accelerator devices (`AcceleratorState` sets
`distributed_type = FSDP` for MULTI_GPU, MULTI_NPU, ...; MULTI_CPU is not among them), so on CPU
it would silently fall back to DDP. `fsdp_on_cpu` makes the same two assignments for MULTI_CPU, and
the worker checks that the model really is sharded (FSDP2 units, DTensor parameters).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

# The repository: the folder above that holds pyproject.toml. Not conftest's REPO: `accelerate launch` also runs
# this file as a script (the worker, below), where conftest is not importable.
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
FSDP_YAML = ROOT / "configs/accelerate/fsdp.yaml"
CASES = {
    "prompt_cache-lora": {"layout": "prompt_cache", "use_lora": True},
    "prompt_cache-full": {"layout": "prompt_cache", "use_lora": False, "optim": "sgd"},
    "packed-lora": {"layout": "packed", "use_lora": True},
    "packed-full": {"layout": "packed", "use_lora": False, "optim": "sgd"},
}
# The settings the DDP test (test_reliability_multiprocess.py) established equality with.
SETTINGS = dict(train_file=str(ROOT / "examples/tiny_listwise.jsonl"), max_train_lists=8, eval_fraction=0.0,
                max_steps=3, logging_steps=1, save_strategy="no", learning_rate=1e-2, lambda_source="dirichlet",
                conditioning="prompt", lora_r=4, seed=5, rating_temperature=1.0, lambda_text="weights",
                model_dtype="float32", reference_cache_dir=None,
                logprob_chunk_size=4)  # several output-layer chunks per step (each was once an FSDP call)


def weights_file(case: str) -> str:
    return "adapter_model.safetensors" if CASES[case]["use_lora"] else "model.safetensors"


class FirstStepGrads(TrainerCallback):
    """Writes the gradients of optimiser step 1 (after the all-reduce or reduce-scatter, and
    clipping), each gathered whole, to `path`; every process must take part in the gather."""

    def __init__(self, path: Path):
        self.path = path

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step:
            return
        grads = {name: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).detach().clone()
                 for name, p in model.named_parameters() if p.grad is not None}
        if state.is_world_process_zero:
            save_file({k: v.contiguous() for k, v in grads.items()}, str(self.path))


def run_case(config: Path, case: str, out: Path, overrides: list[str]):
    """One training run of `case` into `out`; returns the run's result."""
    from lambda_dpo.training.config import load_config
    from lambda_dpo.training.run import train

    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(str(config), [f"output_dir={out}", *overrides,
                                    *(f"{k}={json.dumps(v)}" for k, v in CASES[case].items())])
    result = train(cfg, callbacks=[FirstStepGrads(out / "grads.safetensors")])
    if result.trainer.is_world_process_zero():
        losses = [h["loss"] for h in result.trainer.state.log_history if "loss" in h]
        (out / "losses.json").write_text(json.dumps(losses))
    return result


# ---- the 2-process side (run by `accelerate launch`, see test below) ------------------------------

def fsdp_on_cpu() -> None:
    """Let Accelerate's FSDP plugin shard on CPU (gloo), as it does on GPUs (module docstring)."""
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    init = AcceleratorState.__init__

    def patched(self, *args, fsdp_plugin=None, **kwargs):
        init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        plugin = fsdp_plugin or getattr(self, "fsdp_plugin", None)
        if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type, self.fsdp_plugin = DistributedType.FSDP, plugin

    AcceleratorState.__init__ = patched


def sharding_report(result) -> dict:
    """What FSDP did to the model: the plugin's settings and which modules became shard units."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    from lambda_dpo.wrappers import unwrap_model

    plugin = result.trainer.accelerator.state.fsdp_plugin
    model, base = result.trainer.model_wrapped, unwrap_model(result.trainer.model)
    return {"fsdp_version": plugin.fsdp_version, "reshard_after_forward": plugin.reshard_after_forward,
            "state_dict_type": str(plugin.state_dict_type),
            "cpu_ram_efficient_loading": plugin.cpu_ram_efficient_loading,
            "root_sharded": isinstance(model, FSDPModule),
            "layers_sharded": all(isinstance(layer, FSDPModule) for layer in base.model.layers),
            "head_sharded": isinstance(base.get_output_embeddings(), FSDPModule),
            "all_params_dtensor": all(isinstance(p, DTensor) for p in model.parameters())}


def worker(config: str, out: str) -> None:
    fsdp_on_cpu()
    for case in CASES:
        result = run_case(Path(config), case, Path(out) / case, ["per_device_train_batch_size=1", "use_cpu=true"])
        if result.trainer.is_world_process_zero():
            (Path(out) / case / "sharding.json").write_text(json.dumps(sharding_report(result)))
    result.trainer.accelerator.end_training()


# ---- the test ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_processes(config: Path, out: Path) -> None:
    launcher = Path(sys.executable).parent / "accelerate"
    cmd = [str(launcher) if launcher.exists() else "accelerate", "launch", "--config_file", str(FSDP_YAML),
           "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(free_port()),
           __file__, str(config), str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.skipif(shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists(),
                    reason="the accelerate launcher is not installed")
def test_fsdp_two_processes_match_one_process(tiny_llama_dir, tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({**SETTINGS, "model_name_or_path": tiny_llama_dir}))
    launch_two_processes(config, tmp_path / "two")

    settings = yaml.safe_load(FSDP_YAML.read_text())["fsdp_config"]
    for case in CASES:
        two, one = tmp_path / "two" / case, tmp_path / "one" / case
        run_case(config, case, one, ["per_device_train_batch_size=2"])

        sharding = json.loads((two / "sharding.json").read_text())  # the yaml's settings, really applied
        assert sharding["fsdp_version"] == settings["fsdp_version"] == 2
        assert sharding["reshard_after_forward"] == settings["fsdp_reshard_after_forward"]
        assert settings["fsdp_state_dict_type"] in sharding["state_dict_type"]
        assert sharding["cpu_ram_efficient_loading"] == settings["fsdp_cpu_ram_efficient_loading"]
        assert settings["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP" and sharding["layers_sharded"]
        assert sharding["root_sharded"] and sharding["head_sharded"] and sharding["all_params_dtensor"], sharding

        losses_two, losses_one = (json.loads((d / "losses.json").read_text()) for d in (two, one))
        assert len(losses_one) == 3
        torch.testing.assert_close(torch.tensor(losses_two), torch.tensor(losses_one), rtol=1e-5, atol=1e-6,
                                   msg=lambda m: f"{case} losses: {m}")

        grads_two, grads_one = (load_file(str(d / "grads.safetensors")) for d in (two, one))
        assert grads_two.keys() == grads_one.keys() and grads_one
        assert any("lm_head" in k for k in grads_one) != CASES[case]["use_lora"]  # full FT trains the head
        for name, g in grads_one.items():
            torch.testing.assert_close(grads_two[name], g, rtol=0, atol=3e-5 * g.abs().max().item(),
                                       msg=lambda m: f"{case} gradient of {name}: {m}")

        weights_two, weights_one = (load_file(str(d / weights_file(case))) for d in (two, one))
        assert weights_two.keys() == weights_one.keys()
        for name, w in weights_one.items():
            torch.testing.assert_close(weights_two[name], w, rtol=1e-4, atol=1e-6,
                                       msg=lambda m: f"{case} weight {name}: {m}")



# ---- DeepSpeed ZeRO-3: refused with the shared-prompt layouts (no DeepSpeed needed) -------------------

def test_zero3_refuses_the_shared_prompt_layouts_before_the_reference(tiny_llama_dir, tmp_path, monkeypatch):
    """ZeRO-3 gathers the output layer only inside the model's forward; both shared-prompt layouts apply
    it after the forward (README, "Scaling out"). The Trainer refuses them before any scoring."""
    import transformers.integrations

    import lambda_dpo.training.prepare as prepare
    from lambda_dpo.training.config import load_config
    from lambda_dpo.training.run import train

    monkeypatch.setattr(transformers.integrations, "is_deepspeed_zero3_enabled", lambda: True)
    monkeypatch.setattr(prepare, "score_reference", lambda *a: pytest.fail("scored before refusing"))
    for layout in ("prompt_cache", "packed"):
        cfg = load_config(None, model_name_or_path=tiny_llama_dir, output_dir=str(tmp_path / layout),
                          train_file=SETTINGS["train_file"], eval_fraction=0.0, layout=layout)
        with pytest.raises(ValueError, match="ZeRO-3 .* set `layout: per_response`"):
            train(cfg)


def test_zero3_partitioned_output_layer_scores_through_the_model_logits():
    """With the output layer partitioned (as ZeRO-3 marks it: `ds_id`), the shared-prompt layouts raise
    and the per-response layout takes the model's own logits, which give the same log-probs."""
    from lambda_dpo.testing import tiny_model
    from lambda_dpo.layouts import build_batch
    from lambda_dpo.logprobs import score_batch

    model = tiny_model("llama", vocab_size=300)
    prompts, responses = [[5, 6, 7], [8, 9]], [[[10, 11], [12]], [[13, 14, 15]]]
    expected, _ = score_batch(model, build_batch(prompts, responses, "naive"))
    model.get_output_embeddings().weight.ds_id = 0
    for layout in ("prompt_cache", "packed"):
        with pytest.raises(ValueError, match="layout: per_response"):
            score_batch(model, build_batch(prompts, responses, layout))
    logps, _ = score_batch(model, build_batch(prompts, responses, "naive"))
    torch.testing.assert_close(logps, expected, rtol=1e-5, atol=1e-5)


if __name__ == "__main__":
    worker(*sys.argv[1:])
