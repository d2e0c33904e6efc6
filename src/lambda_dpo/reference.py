"""Reference log-probs: computed once before training, cached on disk, never recomputed per step.

The reference is the policy's starting point scored on the unconditioned prompt:
- LoRA: the same model with its adapter disabled (peft's `disable_adapter()`);
- full fine-tuning: the initial weights, i.e. the model before the first optimiser step.
So training holds no second model in memory.

Cache files are safetensors named by a key that hashes everything the numbers depend on: the
reference weights, the token ids of every prompt and response (which captures tokenizer, chat
template, data and truncation) and the scoring settings. Each file stores its key and a
checksum of its tensors; a file whose key or checksum does not match is rebuilt, never used.
Each file also records the precision it was scored in (`precision.precision_label`: "float32" or
"bfloat16-mixed"); reading it for a model in another precision raises `ReferenceDtypeError`
instead of mixing an fp32 reference with a bf16 policy (their difference is the reward).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from tqdm.auto import tqdm

from .atomic import atomic_save_file
from .precision import precision_label
from .layouts import Layout, build_batch
from .logprobs import score_batch
from .tokenization import TokenizedList
from .wrappers import eval_mode, unwrap_model

logger = logging.getLogger(__name__)
CACHE_FORMAT = "lambda-dpo-reference-v1"


class ReferenceDtypeError(ValueError):
    """A cached reference was scored in another precision than the model now reading it."""


def model_fingerprint(model) -> str:
    """blake2b of the config and every reference weight (LoRA parameters excluded)."""
    h = hashlib.blake2b(digest_size=20)
    base = unwrap_model(model)
    h.update(base.config.to_json_string(use_diff=False).encode())
    for name, tensor in base.state_dict().items():
        if "lora_" in name:
            continue
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_key(fingerprint: str, lists: Sequence[TokenizedList], settings: dict) -> str:
    h = hashlib.sha256(f"{CACHE_FORMAT}\n{fingerprint}\n{json.dumps(settings, sort_keys=True)}\n".encode())
    for lst in lists:
        h.update(json.dumps([lst.prompt_ids, lst.response_ids]).encode())
    return h.hexdigest()


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _reference_mode(model):
    """Context in which `model` computes reference log-probs (adapter off for PEFT models)."""
    return model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()


@torch.no_grad()
def compute_reference_logps(model, lists: Sequence[TokenizedList], *, batch_size: int = 4, layout: Layout = "prompt_cache",
                            chunk_size: int = 1024, desc: str = "reference log-probs") -> list[torch.Tensor]:
    """Summed log-probs of each response under the reference, one [N] fp32 tensor per list."""
    device = next(model.parameters()).device
    out: list[torch.Tensor] = []
    with eval_mode(model), _reference_mode(model):
        for start in tqdm(range(0, len(lists), batch_size), desc=desc, unit="batch", leave=False,
                          disable=None):  # None: no bar when stderr is not a terminal
            chunk = lists[start:start + batch_size]
            batch = build_batch([l.prompt_ids for l in chunk], [l.response_ids for l in chunk], layout=layout)
            logps, _ = score_batch(model, batch.to(device), chunk_size)
            out.extend(logps[i, :l.source.n].float().cpu() for i, l in enumerate(chunk))
    return out


def _read_cache(path: Path, key: str, lists: Sequence[TokenizedList], precision: str
                ) -> list[torch.Tensor] | None:
    """The cached per-list log-probs, or None (with the reason logged) if absent, stale or corrupt.

    Raises ReferenceDtypeError when the file is for these inputs but was scored in another precision.
    """
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        logger.warning("reference cache %s is unreadable (%s); recomputing", path, err)
        return None
    sizes = [len(l.response_ids) for l in lists]
    if meta.get("key") != key or meta.get("format") != CACHE_FORMAT:
        logger.warning("reference cache %s was built for other inputs; recomputing", path)
        return None
    if meta.get("checksum") != _checksum(tensors) or tensors.get("logps", torch.empty(0)).numel() != sum(sizes):
        logger.warning("reference cache %s fails its checksum (corrupt or truncated); recomputing", path)
        return None
    if "dtype" not in meta:
        logger.warning("reference cache %s does not record its precision (older version); recomputing", path)
        return None
    if meta["dtype"] != precision:
        raise ReferenceDtypeError(
            f"reference cache {path} was scored in {meta['dtype']} but the model now runs in {precision}: the "
            f"implicit reward would mix precisions. Delete the file, or run with the model_dtype it was built with.")
    return list(tensors["logps"].split(sizes))


def reference_logps(model, lists: Sequence[TokenizedList], cache_dir: str | os.PathLike | None, *,
                    settings: dict, batch_size: int = 4, layout: Layout = "prompt_cache", chunk_size: int = 1024,
                    desc: str = "reference log-probs") -> list[torch.Tensor]:
    """Cached reference log-probs for `lists` (computed and written on a miss).

    `settings` holds anything else the numbers depend on (e.g. {"layout": "prompt_cache"}) and is
    part of the key. cache_dir=None disables the cache.
    """
    if cache_dir is None:
        return compute_reference_logps(model, lists, batch_size=batch_size, layout=layout, chunk_size=chunk_size,
                                       desc=desc)
    key = cache_key(model_fingerprint(model), lists, settings)
    path = Path(cache_dir) / f"reference-{key[:24]}.safetensors"
    precision = precision_label(model)
    cached = _read_cache(path, key, lists, precision)
    if cached is not None:
        logger.info("reference log-probs from cache %s (%s)", path, precision)
        return cached
    result = compute_reference_logps(model, lists, batch_size=batch_size, layout=layout, chunk_size=chunk_size,
                                     desc=desc)
    flat = torch.cat(result) if result else torch.zeros(0)
    tensors = {"logps": flat.contiguous()}
    atomic_save_file(tensors, path, {"key": key, "format": CACHE_FORMAT, "checksum": _checksum(tensors),
                                     "dtype": precision})
    logger.info("reference log-probs cached at %s (%s)", path, precision)
    return result
