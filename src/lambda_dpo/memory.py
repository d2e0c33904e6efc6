"""Peak memory of one lambda-dpo training step, predicted from the configuration (arithmetic, no weights).

`memory_estimate(model, ...)` adds up what a training step (forward, backward, AdamW) holds at its
peak, term by term, from a `ModelShape` (built in, from a transformers config, or a local model
directory's config.json) and the step's sizes; `estimate_for_config(cfg)` takes them from a training
config (`lambda-dpo estimate-memory CONFIG`). Use it to check on paper whether a configuration fits
a GPU; `python bench/bench_gpu.py` measures the real figure there, and `python bench/memory_model.py`
writes the predicted table for 1B-2B shapes (docs/performance.md, "Memory").

Sizes: d hidden, L layers, H heads, Hkv key/value heads, q = H * head_dim, k = Hkv * head_dim, I
intermediate, V vocabulary; P prompt, R response tokens, N responses per list, B lists per step;
b = bytes of the compute dtype (4 fp32, 2 bf16), w = bytes of the weights' dtype, t = bytes of a
trainable parameter (4 with LoRA, whose weights stay fp32; w in full fine-tuning). T = tokens of a
list's forward: P + N*R (packed, prompt_cache) or N*(P + R) (naive, the per_response option).
Every term is in bytes; each formula is in the docstring of the function that computes it:
`parameter_terms`, `activation_terms` (and `attention_saved`), `transient_terms`; the phases and the
peak in `memory_estimate`.

Two figures come out. `gpu_peak_bytes`: the model-derived terms at the peak phase, what
torch.cuda.max_memory_allocated() measures (the CUDA context, ~0.3-0.5 GB, and the caching
allocator's reserve come on top). `cpu_rss_increment_bytes`: what the step adds to the resident set
of a process that has loaded the model (bench/peak_memory.py's measurement): the peak without the
weights, plus two fitted CPU terms (`CPU_FIT`): glibc keeps the pages of tensors that forward frees
(a share of the activations' size), and a constant (kernel code paged in, thread and library
scratch). The model-derived part was checked against the tensors autograd saves and, with glibc's
retention turned off (MALLOC_MMAP_THRESHOLD_), against RSS itself (docs/performance.md, "Memory").

Scope: Llama-style decoders (RMSNorm, rotary positions, SwiGLU, grouped-query attention: Llama,
Mistral, Qwen2, SmolLM2) under transformers 5.x and torch 2.x, LoRA on linear modules or full
fine-tuning, fused AdamW, sdpa or eager attention, gradient checkpointing of every decoder layer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .layouts import LAYOUT_OPTIONS, LAYOUTS, PACKED_AUTO_MAX_TOKENS
from .precision import ATTN_IMPLEMENTATIONS, MODEL_DTYPES

__all__ = ["ModelShape", "BUILTIN_SHAPES", "CPU_FIT", "model_shape", "parameter_terms", "activation_terms",
           "attention_saved", "transient_terms", "MemoryEstimate", "memory_estimate", "estimate_for_config"]

MIB = 2**20
GB = 10**9  # the paper's "20 GB", and bench_gpu.py's GB
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

CPU_FIT = {"float32": (1.07, 17.0), "bfloat16": (0.51, 58.0)}
"""Fitted, not derived: per weight dtype, (share of the activations' bytes that glibc keeps resident
after forward frees its intermediates, constant MiB). CPU only; no GPU figure uses them. Fitted by
`python bench/memory_model.py --calibrate` (least squares over its runs; docs/performance.md, "Memory",
lists each run's measured and predicted increments)."""


@dataclass(frozen=True)
class ModelShape:
    """The sizes memory depends on: hidden_size d, num_hidden_layers L, num_attention_heads H,
    num_key_value_heads Hkv, intermediate_size I, vocab_size V, head_dim (default d / H),
    tie_word_embeddings (one V x d matrix for input and output), attention_bias (q/k/v biases: Qwen2)."""

    name: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    head_dim: int | None = None
    tie_word_embeddings: bool = True
    attention_bias: bool = False

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * (self.head_dim or self.hidden_size // self.num_attention_heads)

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * (self.head_dim or self.hidden_size // self.num_attention_heads)

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear module of a decoder layer: what LoRA's all-linear adapts (PEFT
        leaves the output layer out)."""
        d, q, k, i = self.hidden_size, self.q_dim, self.kv_dim, self.intermediate_size
        return {"q_proj": (d, q), "k_proj": (d, k), "v_proj": (d, k), "o_proj": (q, d),
                "gate_proj": (d, i), "up_proj": (d, i), "down_proj": (i, d)}

    def lora_targets(self, targets: str | tuple[str, ...] = "all-linear") -> dict[str, tuple[int, int]]:
        if targets == "all-linear":
            return self.linear_shapes()
        names = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else list(targets)
        unknown = sorted(set(names) - set(self.linear_shapes()))
        if unknown:
            raise ValueError(f"LoRA targets {unknown} are not linear modules of a Llama-style layer "
                             f"({', '.join(self.linear_shapes())})")
        return {n: self.linear_shapes()[n] for n in names}

    def layer_parameters(self) -> int:
        """One decoder layer: d*q + 2*d*k + q*d + 3*d*I weights, q + 2k biases (attention_bias), 2d norm weights."""
        bias = self.q_dim + 2 * self.kv_dim if self.attention_bias else 0
        return sum(a * b for a, b in self.linear_shapes().values()) + bias + 2 * self.hidden_size

    def outer_parameters(self) -> int:
        """Outside the layers: V*d embedding (+ V*d untied output layer) + d final norm."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2) + self.hidden_size

    def parameter_count(self) -> int:
        return self.num_hidden_layers * self.layer_parameters() + self.outer_parameters()

    def lora_parameter_count(self, rank: int, targets: str | tuple[str, ...] = "all-linear") -> int:
        """L * r * sum over adapted modules of (in + out): A is in x r, B is r x out."""
        return self.num_hidden_layers * rank * sum(a + b for a, b in self.lora_targets(targets).values())


BUILTIN_SHAPES: dict[str, ModelShape] = {  # the published config.json values
    "smollm2-135m": ModelShape("SmolLM2-135M", 576, 30, 9, 3, 1536, 49152, 64),
    "llama-3.2-1b": ModelShape("Llama-3.2-1B", 2048, 16, 32, 8, 8192, 128256, 64),
    "qwen2.5-1.5b": ModelShape("Qwen2.5-1.5B", 1536, 28, 12, 2, 8960, 151936, 128, attention_bias=True),
}
_ALIASES = {"huggingfacetb/smollm2-135m": "smollm2-135m", "meta-llama/llama-3.2-1b": "llama-3.2-1b",
            "qwen/qwen2.5-1.5b": "qwen2.5-1.5b"}


def model_shape(model: Any) -> ModelShape:
    """A ModelShape from a ModelShape; a built-in name (a BUILTIN_SHAPES key or its hub id, with or without
    -instruct, any case); a transformers config or its dict; or a local model directory's config.json."""
    if isinstance(model, ModelShape):
        return model
    if isinstance(model, str):
        key = model.strip().lower().removesuffix("-instruct")
        key = _ALIASES.get(key, key)
        if key in BUILTIN_SHAPES:
            return BUILTIN_SHAPES[key]
        path = Path(model).expanduser()
        if not (path / "config.json").is_file():
            raise ValueError(f"{model!r} is neither a built-in shape ({', '.join(BUILTIN_SHAPES)}) nor a local "
                             "model directory with a config.json")
        from transformers import AutoConfig

        return model_shape(AutoConfig.from_pretrained(str(path), local_files_only=True))
    config = model.to_dict() if hasattr(model, "to_dict") else dict(model)
    config = config.get("text_config") or config
    needed = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    if any(k not in config for k in needed):
        raise ValueError(f"not a Llama-style decoder config: it needs {', '.join(needed)}")
    kind = config.get("model_type", "")
    return ModelShape(config.get("_name_or_path") or kind or "model", config["hidden_size"],
                      config["num_hidden_layers"], config["num_attention_heads"],
                      config.get("num_key_value_heads") or config["num_attention_heads"], config["intermediate_size"],
                      config["vocab_size"], config.get("head_dim"), bool(config.get("tie_word_embeddings", True)),
                      bool(config.get("attention_bias", kind == "qwen2")))


def parameter_terms(shape: ModelShape, lora_rank: int | None, lora_targets="all-linear", dtype="bfloat16") -> dict:
    """Bytes held from loading to the end of training:

    weights           n_params * w (w = 2 in the bf16 mode: base weights in bf16, also in full fine-tuning)
    lora_weights      n_lora * 4, n_lora = L * r * sum of (in + out) over the adapted modules (fp32: PEFT)
    gradients         n_trainable * t (n_trainable = n_lora with LoRA, else n_params)
    optimizer_states  2 * n_trainable * t: AdamW's two moments, in the parameter's dtype
    """
    w = DTYPE_BYTES[dtype]
    n_params = shape.parameter_count()
    n_lora = shape.lora_parameter_count(lora_rank, lora_targets) if lora_rank else 0
    trainable, t = (n_lora, 4) if lora_rank else (n_params, w)
    return {"weights": n_params * w, "lora_weights": n_lora * 4, "gradients": trainable * t,
            "optimizer_states": 2 * trainable * t}


def attention_saved(shape: ModelShape, p: int, r: int, n: int, layout: str, attention: str, b: int) -> int:
    """Bytes one decoder layer's attention saves for backward, one list (lse = 4H bytes per query, fp32):

    sdpa  naive         N(P+R) * (b(2q + 2k) + 4H): query, output (= o_proj input), keys, values, lse
          prompt_cache  P(b(2q + 2k) + 4H)  [the prompt call, causal, no mask]
                        + b(2NRq + 2N(P+R)q' + NR(P+R)) + 4H*NR  [responses over P + R keys under a mask:
                        q' = q when grouped (a masked call repeats keys/values to H heads), else k; the
                        mask, NR(P+R), in the compute dtype]
          packed        prompt_cache's, but the prompt's query/keys/values keep the whole row's alive
                        (T(q + 2k) + Pq instead of P(2q + 2k)), + b(Tq + NRq): the outputs scattered back
                        (the o_proj input) and the gathered response outputs
    eager keeps the softmax probabilities: H(4 + b) bytes per query-key pair (H*4 in fp32), pairs
          N(P+R)^2 naive, P^2 + NR(P+R) otherwise; query, keys and values repeated to H heads, o_proj input:
          naive b*N(P+R)*4q; otherwise b(P'q + 2Pq + NRq + 2N(P+R)q + Tq) (+ NRq packed), P' = T packed, P.
    """
    q, k, h = shape.q_dim, shape.kv_dim, shape.num_attention_heads
    t = p + n * r
    span = t if layout == "packed" else p
    if attention == "eager":
        pair = h * (4 + (b if b != 4 else 0))
        if layout == "naive":
            return b * n * (p + r) * 4 * q + n * (p + r) ** 2 * pair
        tail = n * r * q if layout == "packed" else 0
        return b * (span * q + 2 * p * q + n * r * q + 2 * n * (p + r) * q + t * q + tail) + (
            p * p + n * r * (p + r)) * pair
    lse = 4 * h
    if layout == "naive":
        return n * (p + r) * (b * (2 * q + 2 * k) + lse)
    repeated = q if shape.num_key_value_heads < h else k
    prompt = b * (span * (q + 2 * k) + p * q) + p * lse
    resp = b * (2 * n * r * q + 2 * n * (p + r) * repeated + n * r * (p + r)) + n * r * lse
    if layout == "packed":
        resp += b * (t * q + n * r * q)
    return prompt + resp


def activation_terms(shape: ModelShape, p: int, r: int, n: int, bsz: int, layout: str, attention: str, b: int,
                     lora_rank: int | None, lora_targets="all-linear", gradient_checkpointing: bool = False) -> dict:
    """What autograd saves for backward (bytes), B lists:

    layer     per decoder layer: T * (2d*4 [RMSNorm inputs, kept in fp32] + 2d*b [normed outputs: the inputs
              of q/k/v and of gate/up] + 4I*b [gate output, its SiLU, up output, their product] + m*r*b
              [LoRA A outputs, m adapted modules] + 2*4 [norms' reciprocal roots]) + attention_saved;
              full fine-tuning has 2d*b (the normed values the norm weights multiply) instead of m*r*b
    nonlayer  S*d*4 with LoRA (S = N*R scored tokens: the frozen output layer's input gradients, formed in
              forward); full fine-tuning: S*d*b (the checkpointed head's input) + T*d*(4 + b) (the first
              and the final norm's extra inputs)
    activations  B * (L * layer + nonlayer); gradient checkpointing (every layer): B * (L*T*d*b [each
              layer's input] + nonlayer + T*d*4 [the final norm's input, with LoRA])
    recompute    gradient checkpointing: B * layer, one layer's activations rebuilt during backward; else 0
    """
    d, i_dim = shape.hidden_size, shape.intermediate_size
    tokens = n * (p + r) if layout == "naive" else p + n * r
    adapted = len(shape.lora_targets(lora_targets)) if lora_rank else 0
    per_token = 2 * d * 4 + 2 * d * b + 4 * i_dim * b + 2 * 4 + (adapted * lora_rank * b if lora_rank else 2 * d * b)
    layer = tokens * per_token + attention_saved(shape, p, r, n, layout, attention, b)
    nonlayer = n * r * d * 4 if lora_rank else n * r * d * b + tokens * d * (4 + b)
    if gradient_checkpointing:
        saved = shape.num_hidden_layers * tokens * d * b + nonlayer + (tokens * d * 4 if lora_rank else 0)
        return {"layer": bsz * layer, "layers": bsz * (saved - nonlayer), "nonlayer": bsz * nonlayer,
                "activations": bsz * saved, "recompute": bsz * layer}
    return {"layer": bsz * layer, "layers": bsz * shape.num_hidden_layers * layer, "nonlayer": bsz * nonlayer,
            "activations": bsz * (shape.num_hidden_layers * layer + nonlayer), "recompute": 0}


def transient_terms(shape: ModelShape, p: int, r: int, n: int, bsz: int, layout: str, b: int,
                    lora_rank: int | None, chunk_size: int, gradient_checkpointing: bool = False) -> dict:
    """Buffers that live for part of the step (bytes):

    head_buffer       c*V*(4 + 2 if b = 2), c = min(chunk_size, B*N*R): one chunk of fp32 logits, softmax in
                      place (+ the bf16 product before its cast, and the bf16 probabilities); a trainable
                      output layer (full fine-tuning) is recomputed in backward: c*V*(12 + 2 if b = 2)
                      (the logits and the two fp32 gradients of log-softmax and gather, + the cast)
    kv_cache          prompt_cache: 2 * L * B*N(P+R) * k * b, the response rows' keys and values (N copies of
                      the prompt's), held until the second model call returns; else 0
    hidden_states     bf16 without checkpointing: (L + 1) * B*T * d * b, the residual stream the model returns
                      (output_hidden_states) until the output layer is done; else B*T*d*b (the last one)
    autocast_cache    bf16 LoRA: n_lora * 2, the adapter weights cast once per forward
    backward_working  4 * B*T * I * b: gradients of one MLP's four I-wide tensors in flight
    """
    d, L = shape.hidden_size, shape.num_hidden_layers
    tokens = n * (p + r) if layout == "naive" else p + n * r
    c = min(chunk_size, bsz * n * r)
    half = 2 if b == 2 else 0
    return {"head_buffer": c * shape.vocab_size * ((4 if lora_rank else 12) + half),
            "kv_cache": 2 * L * bsz * n * (p + r) * shape.kv_dim * b if layout == "prompt_cache" else 0,
            "hidden_states": bsz * tokens * d * b * (L + 1 if b != 4 and not gradient_checkpointing else 1),
            "autocast_cache": shape.lora_parameter_count(lora_rank) * 2 if lora_rank and b == 2 else 0,
            "backward_working": 4 * bsz * tokens * shape.intermediate_size * b}


@dataclass
class MemoryEstimate:
    """A prediction (bytes): `terms` (every model-derived term), `phases` (what each phase adds on top of the
    persistent terms), the peak phase and its total (`gpu_peak_bytes`), and the CPU figure."""

    inputs: dict
    terms: dict[str, int]
    phases: dict[str, int]
    peak_phase: str
    gpu_peak_bytes: int
    loaded_bytes: int
    cpu_retained_bytes: int
    cpu_overhead_bytes: int

    @property
    def cpu_rss_increment_bytes(self) -> int:
        """Peak - weights loaded before the step + the fitted CPU terms (CPU_FIT)."""
        return self.gpu_peak_bytes - self.loaded_bytes + self.cpu_retained_bytes + self.cpu_overhead_bytes

    @property
    def gpu_peak_gb(self) -> float:
        return self.gpu_peak_bytes / GB

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "gpu_peak_gb": self.gpu_peak_gb,
                "cpu_rss_increment_bytes": self.cpu_rss_increment_bytes}

    def table(self) -> str:
        i = self.inputs
        mode = f"LoRA r{i['lora_rank']}" if i["lora_rank"] else "full fine-tuning"
        lines = [f"{i['model']}, {mode}, {i['dtype']}, {i['attention']}, layout {i['layout']}"
                 + (", gradient checkpointing" if i["gradient_checkpointing"] else "")
                 + f": P={i['prompt_len']} R={i['response_len']} N={i['n_responses']}, {i['lists_per_step']} list(s) "
                 f"per step ({i['tokens_per_list']} tokens each)"]
        lines += [f"{name:<18} {value / MIB:>10.1f} MiB" for name, value in self.terms.items()]
        lines.append(f"peak at {self.peak_phase}: {self.gpu_peak_bytes / MIB:.0f} MiB = {self.gpu_peak_gb:.2f} GB "
                     "(model-derived; a GPU's max_memory_allocated)")
        lines.append(f"CPU: the step adds {self.cpu_rss_increment_bytes / MIB:.0f} MiB to a loaded process's RSS "
                     f"(incl. fitted {(self.cpu_retained_bytes + self.cpu_overhead_bytes) / MIB:.0f} MiB)")
        return "\n".join(lines)


def _check(layout: str, attention: str, dtype: str, gradient_checkpointing: bool, tokens: int) -> str:
    """The layout the step runs in (auto resolved as layouts.choose_layout does), after checking the values."""
    if dtype not in MODEL_DTYPES or dtype == "auto":
        raise ValueError(f"dtype must be one of {', '.join(d for d in MODEL_DTYPES if d != 'auto')}, got {dtype!r}")
    if attention not in ATTN_IMPLEMENTATIONS or attention == "auto":
        raise ValueError(f"attention must be one of {', '.join(a for a in ATTN_IMPLEMENTATIONS if a != 'auto')}")
    if layout == "auto":
        return "packed" if gradient_checkpointing or tokens <= PACKED_AUTO_MAX_TOKENS else "prompt_cache"
    layout = "naive" if layout == "per_response" else layout
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUT_OPTIONS)}, got {layout!r}")
    if gradient_checkpointing and layout == "prompt_cache":
        raise ValueError("gradient checkpointing drops the prompt's key/value cache: use layout packed")
    return layout


def memory_estimate(model: Any = "llama-3.2-1b", *, prompt_len: int = 512, response_len: int = 256,
                    n_responses: int = 4, lists_per_step: int = 1, layout: str = "auto", lora_rank: int | None = 16,
                    lora_targets: str | tuple[str, ...] = "all-linear", dtype: str = "bfloat16",
                    attention: str = "sdpa", gradient_checkpointing: bool = False, chunk_size: int = 1024,
                    reference_lists: int | None = None, cpu_fit: tuple[float, float] | None = None) -> MemoryEstimate:
    """Predicted peak memory of one training step. `model`: anything `model_shape` takes. `lists_per_step`:
    lists per optimizer step and device (lambda_contrast scores each twice: pass 2x). `layout`: auto |
    packed | prompt_cache | per_response (naive). `lora_rank`: None for full fine-tuning. `dtype`: float32,
    or bfloat16 (lambda-dpo's mixed mode: frozen weights bf16, LoRA weights and AdamW states fp32; full
    fine-tuning all in bf16). `cpu_fit`: (retained share, MiB) instead of CPU_FIT[dtype].

    Persistent: weights + lora_weights + optimizer_states + reference_cache (reference_lists * N * 4: one
    fp32 log-prob per response; reference_lists defaults to B). On top, the largest phase (`phases`):
      forward end  activations + hidden_states + autocast_cache + max(head_buffer, kv_cache)
      backward     nonlayer + max(layer activations, layer gradients) + recompute + backward_working
                   + output-layer gradients and head_buffer (full fine-tuning: the recomputed head comes first)
                   (backward frees each layer's activations as it makes its gradients)
      optimizer    gradients (fused AdamW: no temporaries)
    """
    shape = model_shape(model)
    p, r, n, bsz = prompt_len, response_len, n_responses, lists_per_step
    layout = _check(layout, attention, dtype, gradient_checkpointing, p + n * r)
    b = DTYPE_BYTES[dtype]
    terms = parameter_terms(shape, lora_rank, lora_targets, dtype)
    acts = activation_terms(shape, p, r, n, bsz, layout, attention, b, lora_rank, lora_targets, gradient_checkpointing)
    terms.update(activations=acts["activations"], recompute=acts["recompute"])
    terms.update(transient_terms(shape, p, r, n, bsz, layout, b, lora_rank, chunk_size, gradient_checkpointing))
    terms["reference_cache"] = (bsz if reference_lists is None else reference_lists) * n * 4
    layer_grads = terms["gradients"] if lora_rank else shape.num_hidden_layers * shape.layer_parameters() * b
    outer = 0 if lora_rank else shape.outer_parameters() * b + terms["head_buffer"]
    phases = {"forward end": (terms["activations"] + terms["hidden_states"] + terms["autocast_cache"]
                              + max(terms["head_buffer"], terms["kv_cache"])),
              "backward": (acts["nonlayer"] + max(acts["layers"], layer_grads) + terms["recompute"]
                           + terms["backward_working"] + outer),
              "optimizer": terms["gradients"]}
    peak_phase = max(phases, key=phases.get)
    persistent = terms["weights"] + terms["lora_weights"] + terms["optimizer_states"] + terms["reference_cache"]
    retained, overhead = CPU_FIT[dtype if dtype in CPU_FIT else "bfloat16"] if cpu_fit is None else cpu_fit
    inputs = dict(model=shape.name, prompt_len=p, response_len=r, n_responses=n, lists_per_step=bsz, layout=layout,
                  lora_rank=lora_rank, lora_targets=lora_targets, dtype=dtype, attention=attention,
                  gradient_checkpointing=gradient_checkpointing, chunk_size=chunk_size,
                  tokens_per_list=n * (p + r) if layout == "naive" else p + n * r,
                  parameters=shape.parameter_count(),
                  trainable_parameters=shape.lora_parameter_count(lora_rank, lora_targets) if lora_rank
                  else shape.parameter_count())
    return MemoryEstimate(inputs, terms, phases, peak_phase, persistent + phases[peak_phase],
                          terms["weights"] + terms["lora_weights"], int(retained * terms["activations"]),
                          int(overhead * MIB))


def estimate_for_config(cfg, n_responses: int = 4, device: str = "cuda") -> MemoryEstimate:
    """`memory_estimate` for a training config (a LambdaDPOConfig), at its longest lists: P = max_prompt_length
    (+ embedding_tokens with embedding conditioning), R = max_response_length, N = n_responses (the data's
    largest list; the config does not say), B = per_device_train_batch_size (x2 with lambda_contrast), and
    model_dtype / attn_implementation / layout resolved for `device` as training resolves them (model_dtype
    auto for a CUDA device this machine does not have: bf16 for LoRA, as on any GPU with bf16)."""
    import torch

    from .precision import resolve_attn_implementation, resolve_model_dtype

    lora = bool(cfg.use_lora)
    if cfg.model_dtype == "auto" and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        dtype = "bfloat16" if lora else "float32"
    else:
        dtype, _ = resolve_model_dtype(cfg.model_dtype, device, trains_base_weights=not lora)
    p = cfg.max_prompt_length + (cfg.embedding_tokens if cfg.conditioning == "embedding" else 0)
    r = cfg.max_response_length
    attention, _ = resolve_attn_implementation(cfg.attn_implementation, dtype, device, max_length=p + r)
    return memory_estimate(cfg.model_name_or_path, prompt_len=p, response_len=r, n_responses=n_responses,
                           lists_per_step=cfg.per_device_train_batch_size * (2 if cfg.lambda_contrast else 1),
                           layout=cfg.layout, lora_rank=cfg.lora_r if lora else None,
                           lora_targets=cfg.lora_target_modules, dtype=dtype, attention=attention,
                           gradient_checkpointing=bool(cfg.gradient_checkpointing), chunk_size=cfg.logprob_chunk_size)
