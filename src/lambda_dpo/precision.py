"""How a model runs numerically: its dtype, its attention kernel, autocast, and fp32 copies of it.

`MODEL_DTYPES` / `resolve_model_dtype` turn `model_dtype` (auto picks bf16 where the hardware has it)
into a dtype and the reason, and `ATTN_IMPLEMENTATIONS` / `resolve_attn_implementation` do the same
for `attn_implementation`, for the run's log line. `precision_context` is where a bf16/fp16 model
runs (autocast, PEFT's input casting off); `precision_label` names what log-probs depend on;
`upcast_to_float32` / `weights_in_float32` / `float32_label` serve fp32 scoring of half-precision
weights (measurements: docs/performance.md, bench/bench_mixed_precision.py).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from .segment_attention import INNER as SEGMENT_KERNELS
from .wrappers import unwrap_model

__all__ = [
    "MODEL_DTYPES",
    "EVAL_DTYPES",
    "cpu_bf16_features",
    "resolve_model_dtype",
    "ATTN_IMPLEMENTATIONS",
    "EAGER_MAX_LENGTH",
    "resolve_attn_implementation",
    "precision_context",
    "precision_label",
    "upcast_to_float32",
    "weights_in_float32",
    "float32_label",
]

MODEL_DTYPES = ("auto", "float32", "bfloat16", "float16")
"""Values of `model_dtype`. bfloat16/float16 = the mixed mode: frozen weights in that dtype, trainable
ones (LoRA, lambda embedding) and optimiser states in fp32, matrix products under autocast, response
log-softmax and the listwise loss in fp32."""

EVAL_DTYPES = ("model", "float32")
"""Values of `eval_dtype`: the held-out lists scored in the model's dtype, or with its bf16/fp16 weights held
in fp32 (`weights_in_float32`)."""

_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_features(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> tuple[str, ...]:
    """The CPU's native bf16 instruction sets (avx512_bf16, amx_bf16) named in its flags; () if none
    or unreadable (torch.backends.cpu.get_cpu_capability() says "AVX512" with or without them)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return ()
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
            break
    return tuple(f for f in _CPU_BF16_FLAGS if f in flags)


def resolve_model_dtype(requested: str, device: str | torch.device | None = None, *,
                        trains_base_weights: bool = False) -> tuple[str, str]:
    """`model_dtype` -> (dtype name, why), for the run's log line.

    "auto": bfloat16 on a CUDA device that supports it or a CPU with avx512_bf16 / amx_bf16, else
    float32 (a CPU without them emulates bf16 products, slower than fp32). Full fine-tuning
    (`trains_base_weights`) stays float32 under auto: its trained weights would be bf16 and AdamW's
    small updates would round away (Trainer's `bf16: true` autocasts fp32 weights instead).
    """
    if requested not in MODEL_DTYPES:
        raise ValueError(f"model_dtype={requested!r} is not one of {', '.join(MODEL_DTYPES)}")
    if requested != "auto":
        return requested, "set in the config"
    if trains_base_weights:
        return "float32", ("auto: full fine-tuning trains the base weights, which must stay fp32 "
                           "(set bf16: true for autocast, or use_lora: true for the bf16 mixed mode)")
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bfloat16", f"auto: CUDA device {torch.cuda.get_device_name(device)} supports bf16"
        return "float32", "auto: this CUDA device has no native bf16"
    if device.type == "cpu":
        found = cpu_bf16_features()
        if found:
            return "bfloat16", f"auto: the CPU has native bf16 instructions ({', '.join(found)})"
        return "float32", ("auto: the CPU has no avx512_bf16 / amx_bf16 (bf16 would be emulated, "
                           "slower than fp32)")
    return "float32", f"auto: bf16 speed on {device.type} devices is not verified"


# Values of `attn_implementation`: auto or a kernel segment attention wraps (the packed layout, `auto`'s
# choice for short lists, attends by segment through it).
ATTN_IMPLEMENTATIONS = ("auto", *SEGMENT_KERNELS)
EAGER_MAX_LENGTH = 1024  # eager attention keeps every [query x key] probability for backward


def resolve_attn_implementation(requested: str, model_dtype: str, device: str | torch.device | None = None,
                                max_length: int = 0) -> tuple[str, str]:
    """`attn_implementation` -> (transformers' attn_implementation, why), for the run's log line.

    "auto": "eager" for a bfloat16 model on the CPU whose rows are at most EAGER_MAX_LENGTH tokens
    (max_length: prompt + response budget), else "sdpa" (transformers' default). On the CPUs measured the
    fused SDPA kernel runs no faster in bf16 than in fp32, while eager's explicit bf16 products do; in fp32
    the two are even (`python bench/bench_attention.py`; docs/performance.md). Eager stores the
    attention probabilities for backward, hence the length bound.
    """
    if requested not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attn_implementation={requested!r} is not one of {', '.join(ATTN_IMPLEMENTATIONS)}")
    if requested != "auto":
        return requested, "set in the config"
    kind = torch.device(device if device is not None else "cpu").type
    if kind != "cpu" or model_dtype != "bfloat16":
        return "sdpa", f"auto: transformers' default for {model_dtype} on {kind}"
    if max_length > EAGER_MAX_LENGTH:
        return "sdpa", f"auto: rows of {max_length} tokens are past eager's bound ({EAGER_MAX_LENGTH})"
    return "eager", (f"auto: bf16 on the CPU, rows of at most {max_length} tokens: explicit bf16 products "
                     "beat the fused SDPA kernel here (bench/bench_attention.py)")


def upcast_to_float32(model) -> list[tuple[torch.Tensor, torch.dtype]]:
    """Cast every bf16/fp16 parameter and buffer of `model` to fp32 in place; returns (tensor, old dtype)
    for each (fp32 tensors such as LoRA weights are left alone, and optimisers keep their references)."""
    cast = [(t, t.dtype) for t in (*model.parameters(), *model.buffers()) if t.dtype in (torch.bfloat16, torch.float16)]
    for t, _ in cast:
        t.data = t.data.float()
    return cast


@contextlib.contextmanager
def weights_in_float32(model):
    """Run the block with `model`'s bf16/fp16 weights in fp32 (`upcast_to_float32`), then cast them
    back: bf16 -> fp32 -> bf16 is exact, so the weights after the block are bit for bit those before."""
    cast = upcast_to_float32(model)
    try:
        yield [t for t, _ in cast]
    finally:
        for t, dtype in cast:
            t.data = t.data.to(dtype)


def float32_label(dtype: str) -> str:
    """The reference cache's name for fp32 scoring of weights trained in `dtype` (bf16 values held
    in fp32 differ from a checkpoint loaded in fp32, so they never share a cache entry)."""
    return "float32" if dtype in ("float32", "auto") else f"float32 (weights from {dtype})"


def precision_label(model) -> str:
    """"float32", or e.g. "bfloat16-mixed" (half-precision weights, autocast): what log-probs depend on."""
    dtype = unwrap_model(model).get_input_embeddings().weight.dtype
    return "float32" if dtype == torch.float32 else f"{str(dtype).removeprefix('torch.')}-mixed"


def precision_context(model, base: torch.nn.Module | None = None) -> contextlib.AbstractContextManager:
    """Where a model with bf16/fp16 weights runs: autocast to that dtype, PEFT's input casting off.
    `base`: `model` unwrapped (`wrappers.unwrap_model`), when the caller already has it.

    PEFT keeps LoRA weights in fp32 (autocast_adapter_dtype) and, without this, casts every LoRA
    input to fp32 and its output back: two copies per adapted layer and fp32 products. Under
    autocast the fp32 LoRA weights are cast to bf16 once per forward (cached), the products run in
    bf16, and their gradients reach the fp32 weights. fp32 models: a no-op.
    """
    weight = (base if base is not None else unwrap_model(model)).get_input_embeddings().weight
    if weight.dtype not in (torch.bfloat16, torch.float16):
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(weight.device.type, dtype=weight.dtype))
    try:
        from peft.helpers import disable_input_dtype_casting
    except ImportError:  # older PEFT: it casts inputs, which is slower but correct
        return stack
    stack.enter_context(disable_input_dtype_casting(model))
    return stack
