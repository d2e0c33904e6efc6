"""The bf16 mixed mode (model_dtype: bfloat16) against fp32, on a tiny random Llama; no GPU needed. A short
training run in both modes: tests/e2e/test_mixed_precision_training.py.

Tolerances are derived, not tuned. bf16 keeps 8 significant bits, so one round-to-nearest has
relative error <= 2^-9. On the path from a token id to its logits the tiny Llama (2 layers) rounds
each value at most M = 36 times in series: embedding weight (1); per layer, attention: norm
output, q/k/v weight, q/k/v output, RoPE product and sum (2), attention output, o_proj weight,
o_proj output, residual sum (9); MLP: norm output, gate/up weight, gate/up output, act * up,
down weight, down output, residual sum (7); final norm output, head weight, logits (3): 1 + 2 * 16
+ 3 = 36 (the LoRA branches run beside these products, with as many roundings, and are
counted with them). To first order, a value that passed through M roundings carries a relative
error <= EPS = M * 2^-9 = 0.0703 of its componentwise magnitude, assuming the random network does
not amplify relative errors (weights of std 0.02: each residual branch adds a small fraction to
the stream, which carries errors through with gain ~1). Hence, with h the final hidden state and
W the head:

- logit j: |dz_j| <= EPS * sum_k |h_k W_jk|, so a token's log-prob z_t - logsumexp(z) moves by at
  most 2 max_j |dz_j| = 2 EPS S_t, S_t = max_j sum_k |h_k W_jk| (measured in fp32);
- a response's summed log-prob s_i: tol_i = sum over its tokens of 2 EPS S_t;
- the listwise loss L = -sum_i p_i log softmax(beta s)_i: dL/ds_i = beta (softmax_i - p_i) and
  sum_i |softmax_i - p_i| <= 2, so |dL| <= 2 beta max_i tol_i;
- that bound adds every rounding error with the same sign. Treating them as independent (each
  uniform in +-2^-9 relative, standard deviation 2^-9 / sqrt(3)), a logit's error is a random walk:
  sigma(dz_j) <= sqrt(M / 3) 2^-9 ||h * W_j||_2 (the terms' 2-norm, not their 1-norm), so a token's
  log-prob has sigma_t <= 2 sqrt(M / 3) 2^-9 max_j ||h * W_j||_2. Weight roundings are shared by all
  tokens, so errors of one response's tokens are summed linearly (fully correlated), and the
  response's error is held to 6 sigma = 6 sum_t sigma_t (stat_i), about 8x tighter than tol_i;
- a gradient runs the path forward and back (twice the roundings): ||d grad s_i|| <= 2 EPS ||grad s_i||;
  grad L = sum_i c_i grad s_i with c_i = beta (softmax_i - p_i), and |dc_i| <= 2 beta^2 max_i tol_i
  (d softmax_i / d s_j = beta softmax_i (delta_ij - softmax_j)), so
  ||d grad L|| <= sum_i (|c_i| 2 EPS + 2 beta^2 max tol) ||grad s_i||.
"""

import json
import math
from contextlib import nullcontext

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors import safe_open
from safetensors.torch import load_file

from lambda_dpo import precision
from lambda_dpo import reference as ref_mod
from lambda_dpo.losses import lambda_dpo_loss
from lambda_dpo.models import contiguous_head_inputs
from lambda_dpo.precision import precision_context, precision_label, resolve_model_dtype
from lambda_dpo.testing import tiny_model
from lambda_dpo.layouts import build_batch
from lambda_dpo.logprobs import score_batch
from lambda_dpo.segment_attention import segmented

VOCAB = 97
M_ROUNDINGS = 36
EPS = M_ROUNDINGS * 2.0 ** -9
BETA = 0.5


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def lora(model):
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))


def model_pair():
    """(fp32 model, mixed model): the same weights, LoRA B non-zero so the adapter contributes;
    the mixed one built as training builds it: bf16 base loaded, then PEFT (fp32 adapters)."""
    fp = lora(tiny_model("llama", vocab_size=VOCAB, seed=3))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in fp.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    mixed = lora(tiny_model("llama", vocab_size=VOCAB, seed=3).to(torch.bfloat16))
    mixed.load_state_dict(fp.state_dict())  # LoRA weights exactly; base weights rounded to bf16
    return fp, mixed


def lists_batch(layout="prompt_cache"):
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in (9, 14)]
    responses = [[torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in lens]
                 for lens in ((6, 11, 3), (8, 5, 12))]
    return prompts, responses, build_batch(prompts, responses, layout=layout)


def token_tolerances(fp, prompts, responses, statistical=False):
    """tol_i, or with statistical=True stat_i (module docstring), of every response, [B, N], from the
    fp32 model's final hidden states."""
    head = fp.get_base_model().get_output_embeddings().weight.detach()
    tol = torch.zeros(len(prompts), max(map(len, responses)))
    with torch.no_grad():
        for b, (prompt, resps) in enumerate(zip(prompts, responses)):
            for i, r in enumerate(resps):
                ids = torch.tensor([prompt + r])
                h = fp(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, len(prompt) - 1:-1]
                if statistical:  # 6 * sum_t 2 sqrt(M/3) 2^-9 max_j ||h * W_j||_2
                    norm2 = (h ** 2 @ (head ** 2).T).sqrt().max(-1).values
                    tol[b, i] = 6 * (2 * (M_ROUNDINGS / 3) ** 0.5 * 2.0 ** -9 * norm2).sum()
                else:  # sum_t 2 EPS S_t, S_t = max_j sum_k |h_k W_jk|
                    tol[b, i] = (2 * EPS * (h.abs() @ head.abs().T).max(-1).values).sum()
    return tol


def test_mixed_model_layout_dtypes():
    _, mixed = model_pair()
    for name, p in mixed.named_parameters():
        assert p.dtype == (torch.float32 if "lora_" in name else torch.bfloat16), name
    assert precision_label(mixed) == "bfloat16-mixed"
    _, _, batch = lists_batch()
    logps, n_tok = score_batch(mixed, batch, chunk_size=5)
    assert logps.dtype == n_tok.dtype == torch.float32
    logps.sum().backward()
    for name, p in mixed.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.dtype == torch.float32, name


@pytest.mark.parametrize("layout", ["prompt_cache", "packed", "packed_segments", "naive"])
def test_sequence_logps_and_loss_within_derived_tolerance(layout):
    """packed_segments: the packed row through segment attention (the same roundings as prompt_cache),
    on both models."""
    fp, mixed = model_pair()
    prompts, responses, batch = lists_batch(layout.removesuffix("_segments"))
    tol = token_tolerances(fp, prompts, responses)
    segments = layout.endswith("_segments")
    with torch.no_grad(), segmented(fp) if segments else nullcontext(), \
            segmented(mixed) if segments else nullcontext():
        lp_fp, _ = score_batch(fp, batch, chunk_size=5)
        lp_mx, _ = score_batch(mixed, batch, chunk_size=5)
    err = (lp_fp - lp_mx).abs()
    assert (err <= tol).all(), f"errors {err} above tolerances {tol}"
    stat = token_tolerances(fp, prompts, responses, statistical=True)
    assert (err <= stat).all(), f"errors {err} above 6 sigma {stat}"
    assert err.max() > 0  # the mixed path really ran in bf16

    mask = torch.tensor([[True] * 3] * 2)
    target = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    loss_fp = lambda_dpo_loss(lp_fp, target, mask, BETA).mean()
    loss_mx = lambda_dpo_loss(lp_mx, target, mask, BETA).mean()
    assert loss_mx.dtype == torch.float32
    assert abs(loss_fp - loss_mx) <= 2 * BETA * tol.max()


def lora_grad(model, fn) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    fn().backward()
    names = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    params = dict(model.named_parameters())
    return torch.cat([params[n].grad.flatten().float() for n in names])


def test_lora_gradients_within_derived_tolerance():
    fp, mixed = model_pair()
    prompts, responses, batch = lists_batch()
    tol = token_tolerances(fp, prompts, responses)
    mask = torch.tensor([[True] * 3] * 2)
    target = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])

    def loss(model):
        return lambda_dpo_loss(score_batch(model, batch, chunk_size=5)[0], target, mask, BETA).sum()

    # Per-response gradients: ||d grad s_i|| <= 2 EPS ||grad s_i||.
    grad_s = {}
    for b in range(2):
        for i in range(3):
            g_fp = lora_grad(fp, lambda: score_batch(fp, batch, chunk_size=5)[0][b, i])
            g_mx = lora_grad(mixed, lambda: score_batch(mixed, batch, chunk_size=5)[0][b, i])
            assert (g_fp - g_mx).norm() <= 2 * EPS * g_fp.norm(), (b, i)
            grad_s[b, i] = g_fp.norm()
    # The loss gradient.
    with torch.no_grad():
        lp = score_batch(fp, batch, chunk_size=5)[0]
    c = BETA * (torch.softmax(BETA * lp, -1) - target)
    bound = sum((c[b, i].abs() * 2 * EPS + 2 * BETA ** 2 * tol.max()) * grad_s[b, i] for b, i in grad_s)
    g_fp, g_mx = lora_grad(fp, lambda: loss(fp)), lora_grad(mixed, lambda: loss(mixed))
    assert (g_fp - g_mx).norm() <= bound
    assert torch.nn.functional.cosine_similarity(g_fp, g_mx, dim=0) > 0.9  # same direction, not just small


def test_fp32_is_untouched_by_precision_context():
    fp, _ = model_pair()
    with precision_context(fp):
        assert not torch.is_autocast_enabled("cpu")
    _, _, batch = lists_batch()
    with torch.no_grad():
        a, _ = score_batch(fp, batch, chunk_size=5)
    assert a.dtype == torch.float32


def test_contiguous_head_hook_keeps_results(tmp_path):
    model = tiny_model("llama", vocab_size=VOCAB).to(torch.bfloat16).eval()
    ids = torch.randint(0, VOCAB, (3, 7))
    with torch.no_grad():
        before = model(input_ids=ids, logits_to_keep=1).logits
        contiguous_head_inputs(model)
        contiguous_head_inputs(model)  # idempotent
        after = model(input_ids=ids, logits_to_keep=1).logits
    assert torch.equal(before, after)
    assert len(model.get_output_embeddings()._forward_pre_hooks) == 1


# ---------------------------------------------------------------------------- auto


def test_cpu_bf16_features_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n\nprocessor\t: 1\n")
    assert precision.cpu_bf16_features(info) == ("avx512_bf16",)
    info.write_text("flags\t\t: fpu sse avx2\n")
    assert precision.cpu_bf16_features(info) == ()
    assert precision.cpu_bf16_features(tmp_path / "missing") == ()


def test_resolve_model_dtype(monkeypatch):
    assert resolve_model_dtype("float32", "cpu") == ("float32", "set in the config")
    assert resolve_model_dtype("bfloat16", "cpu")[0] == "bfloat16"
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ("avx512_bf16",))
    dtype, why = resolve_model_dtype("auto", "cpu")
    assert dtype == "bfloat16" and "avx512_bf16" in why
    assert resolve_model_dtype("auto", "cpu", trains_base_weights=True)[0] == "float32"
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ())
    dtype, why = resolve_model_dtype("auto", "cpu")
    assert dtype == "float32" and "no avx512_bf16" in why
    with pytest.raises(ValueError, match="model_dtype"):
        resolve_model_dtype("bf16", "cpu")


def test_config_default_is_auto(tmp_path):
    from lambda_dpo.training.config import load_config

    assert load_config(None, output_dir=str(tmp_path)).model_dtype == "auto"
    with pytest.raises(ValueError, match="model_dtype"):
        load_config(None, output_dir=str(tmp_path), model_dtype="bf16")


# ---------------------------------------------------------------------------- reference cache


def tokenized(prompts, responses):
    from lambda_dpo.data.schema import PreferenceList
    from lambda_dpo.tokenization import TokenizedList

    out = []
    for prompt, resps in zip(prompts, responses):
        src = PreferenceList(prompt=({"role": "user", "content": "x"},), responses=tuple("r" * len(resps)),
                             ratings={})
        out.append(TokenizedList(source=src, prompt=src.prompt, prompt_ids=tuple(prompt),
                                 response_ids=tuple(map(tuple, resps))))
    return out


def test_reference_cache_records_dtype_and_refuses_a_mismatch(tmp_path, caplog):
    fp, mixed = model_pair()
    prompts, responses, _ = lists_batch()
    tls = tokenized(prompts, responses)
    settings = {"layout": "prompt_cache"}
    first = ref_mod.reference_logps(mixed, tls, tmp_path, settings=settings, batch_size=2)
    (path,) = tmp_path.glob("reference-*.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["dtype"] == "bfloat16-mixed"
    again = ref_mod.reference_logps(mixed, tls, tmp_path, settings=settings, batch_size=2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))

    # Same key, other precision recorded: an error, never a silent mix.
    from lambda_dpo.atomic import atomic_save_file

    tensors = load_file(str(path))
    atomic_save_file(tensors, path, {**meta, "dtype": "float32"})
    with pytest.raises(ref_mod.ReferenceDtypeError, match="float32.*bfloat16-mixed"):
        ref_mod.reference_logps(mixed, tls, tmp_path, settings=settings, batch_size=2)

    # A file from before dtypes were recorded is recomputed, not trusted.
    atomic_save_file(tensors, path, {k: v for k, v in meta.items() if k != "dtype"})
    ref_mod.reference_logps(mixed, tls, tmp_path, settings=settings, batch_size=2)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["dtype"] == "bfloat16-mixed"

    # fp32 and mixed weights hash differently: separate files, both labelled.
    ref_mod.reference_logps(fp, tls, tmp_path, settings=settings, batch_size=2)
    labels = set()
    for p in tmp_path.glob("reference-*.safetensors"):
        with safe_open(str(p), framework="pt") as f:
            labels.add(f.metadata()["dtype"])
    assert labels == {"float32", "bfloat16-mixed"}


def test_generate_runs_in_mixed_mode():
    from lambda_dpo.generation import SteerableModel, generate
    from lambda_dpo.testing import gpt2_tokenizer

    tok = gpt2_tokenizer()
    model = lora(tiny_model("llama", vocab_size=len(tok)).to(torch.bfloat16)).eval()
    contiguous_head_inputs(model)
    out = generate(SteerableModel(model, tok, ("a",), "none"), ["Hello there", "Hi"], max_new_tokens=3)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)


def test_bench_gpu_smoke_runs_lora_in_the_mixed_mode(tmp_path, capsys):
    from conftest import load_bench

    bench_gpu = load_bench("bench_gpu")
    assert bench_gpu.main(["--smoke", "--dtype", "bfloat16", "--modes", "lora", "--out", str(tmp_path)]) == 0
    (rec,) = json.loads((tmp_path / "gpu.json").read_text())["results"]
    assert "error" not in rec, rec
    assert rec["precision"] == "bfloat16-mixed" and rec["trainable_dtypes"] == ["float32"]
    assert math.isfinite(rec["loss"]) and rec["median_step_s"] > 0
    assert "bfloat16" in capsys.readouterr().out
