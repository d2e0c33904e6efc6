"""attn_implementation: the auto rule, eager scoring the shared-prompt layout exactly as sdpa does, and a saved
model loading with the kernel it trained with."""

import json
import shutil

import pytest
import torch

from lambda_dpo.layouts import build_batch
from lambda_dpo.logprobs import score_batch
from lambda_dpo.models import load_model
from lambda_dpo.precision import EAGER_MAX_LENGTH, resolve_attn_implementation
from lambda_dpo.training.config import load_config
from lambda_dpo.training.settings import load_policy


def test_auto_picks_eager_only_for_bf16_on_the_cpu_within_the_length_bound():
    assert resolve_attn_implementation("auto", "bfloat16", "cpu", 384)[0] == "eager"
    assert resolve_attn_implementation("auto", "bfloat16", "cpu", EAGER_MAX_LENGTH)[0] == "eager"
    name, why = resolve_attn_implementation("auto", "bfloat16", "cpu", EAGER_MAX_LENGTH + 1)
    assert name == "sdpa" and "past eager's bound" in why
    assert resolve_attn_implementation("auto", "float32", "cpu", 384)[0] == "sdpa"
    assert resolve_attn_implementation("auto", "float16", "cpu", 384)[0] == "sdpa"  # not measured: default
    assert resolve_attn_implementation("auto", "bfloat16", "cuda", 384)[0] == "sdpa"
    assert resolve_attn_implementation("eager", "float32", "cuda", 9999) == ("eager", "set in the config")
    with pytest.raises(ValueError, match="flash"):
        resolve_attn_implementation("flash", "float32")
    with pytest.raises(ValueError, match="attn_implementation='flash' is not one of auto, sdpa, eager"):
        load_config(None, attn_implementation="flash")


def test_the_run_loads_the_kernel_it_resolved_and_says_why(tiny_llama_dir, tmp_path):
    cfg = load_config(None, model_name_or_path=str(tiny_llama_dir), model_dtype="bfloat16",
                      max_prompt_length=64, max_response_length=32, output_dir=str(tmp_path))
    model, _, choice = load_policy(cfg)
    assert choice.attn_implementation == "eager" and model.config._attn_implementation == "eager"
    assert choice.attn_why.startswith("auto: bf16 on the CPU") and cfg.attn_implementation == "auto"
    cfg = load_config(None, model_name_or_path=str(tiny_llama_dir), model_dtype="float32", output_dir=str(tmp_path))
    model, _, choice = load_policy(cfg)
    assert choice.attn_implementation == "sdpa" and model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("layout", ["prompt_cache", "packed", "naive"])
def test_eager_and_sdpa_score_the_same_log_probs(tiny_llama_dir, layout):
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 200, (n,), generator=g).tolist() for n in (7, 12)]
    responses = [[torch.randint(3, 200, (n,), generator=g).tolist() for n in lens] for lens in ((3, 9, 5), (6, 2, 8))]
    batch = build_batch(prompts, responses, layout=layout)
    logps = {}
    for attn in ("sdpa", "eager"):
        model = load_model(tiny_llama_dir, attn_implementation=attn).eval()
        with torch.no_grad():
            logps[attn], n_tok = score_batch(model, batch)
    # fp32 throughout: the two kernels differ only in summation order (~1e-6 relative)
    torch.testing.assert_close(logps["eager"], logps["sdpa"], rtol=1e-5, atol=1e-5)
    assert n_tok.min() > 0


def test_the_reference_cache_is_keyed_by_the_kernel(tiny_llama_dir, tmp_path):
    from lambda_dpo.training.prepare import score_reference
    from test_mixed_precision import tokenized

    tls = tokenized([[5, 6, 7], [8, 9]], [[[10, 11], [12]], [[13], [14, 15, 16]]])
    cfg = load_config(None, model_name_or_path=str(tiny_llama_dir), model_dtype="float32",
                      reference_cache_dir=str(tmp_path / "c"), output_dir=str(tmp_path / "o"))
    for attn in ("sdpa", "eager", "sdpa"):
        score_reference(cfg, load_model(tiny_llama_dir, attn_implementation=attn).eval(), tls, "prompt_cache", "t",
                        "float32")
    assert len(list((tmp_path / "c").glob("reference-*.safetensors"))) == 2  # one per kernel; the third call hit


def test_a_saved_model_loads_with_the_kernel_it_trained_with_unless_told_otherwise(playground_model_dir, tmp_path):
    from lambda_dpo.conditioning import LambdaText
    from lambda_dpo.generation import load_steerable
    from lambda_dpo.saved_model import write_model_files

    model_dir = tmp_path / "m"
    shutil.copytree(playground_model_dir, model_dir)
    aspects = json.loads((model_dir / "lambda_dpo.json").read_text())["aspects"]
    cfg = load_config(None, output_dir=str(model_dir), model_name_or_path=str(model_dir), use_lora=False,
                      model_dtype="float32", aspects=aspects, attn_implementation="eager")
    write_model_files(model_dir, cfg, aspects, {}, LambdaText("instructions"))  # trained under eager

    def kernel(**kw) -> str:
        return load_steerable(model_dir, **kw).model.config._attn_implementation

    assert kernel() == "eager"  # what evaluate and the demo measured it with
    assert kernel(attn_implementation=None) == "sdpa"  # transformers' default for a float32 Llama
    assert kernel(attn_implementation="sdpa") == "sdpa"
