"""What sharded weights mean for scoring: the output layer under FSDP2 and DeepSpeed ZeRO-3.

Scoring (`logprobs.score_batch`) applies the output layer after the model's forward, to the
response positions only. Under FSDP2 its weights are gathered for that (`gathered`) and regathered
before each model call's backward (`regather_before_backward`), in the unit that holds them
(`fsdp_unit`); tests/distributed/test_fsdp.py checks both shared-prompt layouts against one process. DeepSpeed
ZeRO-3 holds them only inside the forward (`zero3_partitioned`): there, only the per-response
layout runs, on the model's own logits (`ZERO3_LAYOUT_ERROR`).
"""

from __future__ import annotations

import contextlib
import functools

import torch

ZERO3_LAYOUT_ERROR = (
    "DeepSpeed ZeRO-3 partitions the output layer's weights and gathers them only inside the model's forward, "
    "while the shared-prompt layouts (prompt_cache and packed alike) apply that layer after the forward, to the "
    "response positions only; set `layout: per_response` under ZeRO-3 (one row per response, the model's own "
    "logits), or shard with FSDP instead (configs/accelerate/fsdp.yaml, tested with both shared-prompt layouts)")


def zero3_partitioned(param: torch.Tensor) -> bool:
    """True for a parameter DeepSpeed ZeRO-3 has partitioned (it then carries a `ds_id`)."""
    return hasattr(param, "ds_id")


@functools.cache
def fsdp_module_class() -> type | None:
    """torch's FSDPModule (the class `fully_shard` mixes into every module it shards), or None."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch build without torch.distributed
        return None
    return FSDPModule


def _is_dtensor(t: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def fsdp_unit(model, module: torch.nn.Module) -> torch.nn.Module | None:
    """The FSDP2 unit holding `module`'s parameters: the innermost `fully_shard`-ed module containing
    it (Accelerate makes the output layer and the final norm one unit). None when `model` (the
    outermost module, which FSDP2 always shards) is not under FSDP2."""
    fsdp = fsdp_module_class()
    if fsdp is None or not isinstance(model, fsdp):
        return None
    units = [m for m in model.modules() if isinstance(m, fsdp) and any(s is module for s in m.modules())]
    return min(units, key=lambda m: sum(1 for _ in m.modules()))


def regather_before_backward(hidden: torch.Tensor, unit: torch.nn.Module | None) -> torch.Tensor:
    """Final hidden states [rows, L, d] of one model call, unchanged; under FSDP2, its unit
    (`fsdp_unit` of the output layer) is all-gathered again just before this call's final-norm
    backward.

    FSDP2 all-gathers a unit for backward from a hook on the unit's forward output, here the output
    layer's logits, which scoring never uses (no position is kept). When the final norm shares the
    unit, its post-backward hook (on the norm's input) reshards the unit after the first call's norm
    backward; prompt_cache's other call would then run its norm backward on freed weights.
    """
    if unit is not None and hidden.requires_grad:
        hidden.register_hook(lambda grad: unit.unshard())  # a no-op while the unit is unsharded
    return hidden


@contextlib.contextmanager
def gathered(unit: torch.nn.Module | None, head: torch.nn.Module, backward_follows: bool):
    """The block runs with `head`'s own (unsharded) weights.

    After the model calls Accelerate's FSDP2 units still hold the output layer unsharded (it is not
    resharded after forward); a unit that was resharded is all-gathered here. Its gradient, accumulated
    on the unsharded weights, is then reduce-scattered once by the unit's post-backward (or the root's
    end-of-backward callback), which also reshards it; without a backward to follow, it is resharded
    on exit.
    """
    resharded = unit is not None and _is_dtensor(head.weight)
    if resharded:
        unit.unshard()
    try:
        yield
    finally:
        if resharded and not backward_follows:
            unit.reshard()
