"""Model + a laid-out batch (`layouts.ScoringBatch`) -> summed log-probs of each response (nats).

The model runs through its own forward (so distributed wrappers sync gradients), asked for the
logits of no position; the positions that predict response tokens then go through the vocabulary
projection and an fp32 log-softmax in chunks of `chunk_size` tokens (`chunked_token_logps`), under
activation checkpointing or, for a frozen output layer, an autograd function that forms the input
gradient in forward; so no [batch, length, vocab] tensor, fp32 or otherwise, is ever held. The
prompt_cache layout takes two model calls, the prompts' key/value cache carrying gradients to the
responses. How the output layer's weights are reached when they are sharded (FSDP2, ZeRO-3) is
`sharding`'s.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import DynamicCache

from .layouts import ScoringBatch, block_attention_mask, verified_for_packed
from .precision import precision_context
from .segment_attention import SegmentAttention, installed as segments_installed
from .sharding import (ZERO3_LAYOUT_ERROR, fsdp_module_class, fsdp_unit, gathered, regather_before_backward,
                       zero3_partitioned)
from .wrappers import unwrap_model


def _softmax_(logits: torch.Tensor) -> torch.Tensor:
    """[c, vocab] fp32 logits, overwritten in place with their softmax; returns their [c] log-sum-exp.

    In place because a second [c, vocab] buffer is costly on the CPU: chunks of that size come
    straight from the kernel (mmap) and each page is faulted in and zeroed on first touch, which
    made the out-of-place `logsumexp` take longer than the projection itself
    (`python bench/head_variants.py`; docs/performance.md).
    """
    top = logits.amax(-1, keepdim=True)
    total = logits.sub_(top).exp_().sum(-1, keepdim=True)
    logits.div_(total)
    return (top + total.log()).squeeze(-1)


def _token_logps(hidden: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor], targets: torch.Tensor
                 ) -> torch.Tensor:
    """[c, d] hidden states -> [c] fp32 log-probs of `targets` under the vocabulary projection `head`."""
    logits = head(hidden).float()
    picked = logits.gather(-1, targets[:, None]).squeeze(-1)
    if logits.requires_grad:  # under checkpointing: autograd needs the logits unmodified
        return picked - logits.logsumexp(-1)
    return picked - _softmax_(logits)


class _FrozenHeadTokenLogps(torch.autograd.Function):
    """log p(target | h) through a frozen linear output layer, its input gradient formed in forward.

    d logp_t / d h_t = W[target_t] - softmax_t @ W depends on h_t alone, so forward stores that
    [c, d] vector instead of the logits and backward scales it by the incoming gradient: two
    [c, vocab] matrix products per chunk instead of checkpointing's three (forward, recompute,
    input gradient), and still no [c, vocab] tensor kept for backward.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets):
        logits = F.linear(hidden, weight, bias).float()
        logps = logits.gather(-1, targets[:, None]).squeeze(-1)
        logps -= _softmax_(logits)
        probs = logits.to(weight.dtype)
        ctx.save_for_backward((weight[targets] - probs @ weight).float())
        ctx.hidden_dtype = hidden.dtype
        return logps

    @staticmethod
    def backward(ctx, grad):
        (dlogp_dh,) = ctx.saved_tensors
        return (grad[:, None] * dlogp_dh).to(ctx.hidden_dtype), None, None, None


def _plain_linear(head: torch.nn.Module) -> bool:
    """An nn.Linear (not a subclass such as a LoRA or quantised layer), also once FSDP2's `fully_shard`
    has swapped its class for the generated `FSDPLinear(FSDPModule, Linear)`."""
    cls = type(head)
    if fsdp_module_class() is not None and isinstance(head, fsdp_module_class()):
        cls = cls.__bases__[-1]
    return cls is torch.nn.Linear


def _frozen(head: torch.nn.Module) -> bool:
    return not head.weight.requires_grad and (head.bias is None or not head.bias.requires_grad)


def chunked_token_logps(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor,
                        chunk_size: int = 1024) -> torch.Tensor:
    """Log-probs [T] for [T, d] hidden states, `chunk_size` tokens of fp32 logits at a time.

    With grad enabled, a frozen linear head (LoRA) goes through `_FrozenHeadTokenLogps`; a
    trainable one is recomputed in backward (activation checkpointing). Either way peak extra
    memory is one chunk's [chunk_size, vocab] fp32 logits. A linear head is applied as F.linear on
    its weights, not called: a module call would fire FSDP2's per-call hooks once per chunk, and
    their post-backward reshards (frees) the weights while later chunks still need them.
    """
    linear = _plain_linear(head)
    project = functools.partial(F.linear, weight=head.weight, bias=head.bias) if linear else head
    out = []
    for start in range(0, hidden.shape[0], chunk_size):
        h, t = hidden[start:start + chunk_size], targets[start:start + chunk_size]
        if torch.is_grad_enabled() and h.requires_grad and linear and _frozen(head):
            out.append(_FrozenHeadTokenLogps.apply(h, head.weight, head.bias, t))
        elif torch.is_grad_enabled() and h.requires_grad:
            out.append(checkpoint(_token_logps, h, project, t, use_reentrant=False))
        else:
            out.append(_token_logps(h, project, t))
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)


def _no_logits(batch: ScoringBatch) -> torch.Tensor:
    """`logits_to_keep` selecting no position: the model's own head is not run (the response positions
    go through it below, in chunks). An int would keep the last position: a strided [rows, 1, d]
    input, which CPU bf16 matmul multiplies by copying the whole head once per row."""
    return torch.zeros(0, dtype=torch.long, device=batch.input_ids.device)


def cache_argument(base: torch.nn.Module) -> str:
    """The forward's key/value cache argument: `cache` in transformers >= 5.24 (where `past_key_values`
    is deprecated and warns on every call), `past_key_values` before."""
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _prompt_cache_hidden(model, base: torch.nn.Module, batch: ScoringBatch, embeds: torch.Tensor | None,
                         unit: torch.nn.Module | None) -> torch.Tensor:
    """Final hidden states [rows, L, d] of the prompt_cache layout: two forwards through `model` (`base`:
    the transformers model under its wrappers, for its config and forward signature).

    The prompt rows' key/value cache keeps its autograd graph, so the responses' loss reaches the
    prompt's activations and weights through it; `reorder_cache` gathers one copy per response row
    (lists may have different N).
    """
    n = batch.n_lists
    real = batch.segment_ids >= 0
    p_len, r_len = int(real[:n].sum(1).max()), int(real[n:].sum(1).max())
    prompt_mask = real[:n, :p_len].long()
    prompt_in = ({"inputs_embeds": embeds[:n, :p_len]} if embeds is not None
                 else {"input_ids": batch.input_ids[:n, :p_len]})
    cache = DynamicCache(config=base.config)  # filled in place by the prompt call
    cache_kw = cache_argument(base)
    prompt_out = model(attention_mask=prompt_mask, position_ids=batch.position_ids[:n, :p_len], use_cache=True,
                       output_hidden_states=True, logits_to_keep=_no_logits(batch), **{cache_kw: cache}, **prompt_in)
    if cache.get_seq_length() != p_len:  # e.g. checkpointed layers in training mode drop it
        raise RuntimeError("the model returned no key/value cache for the prompts (gradient checkpointing?); "
                           "use layout=packed")
    owner = batch.row_list[n:]
    cache.reorder_cache(owner)
    resp_out = model(input_ids=batch.input_ids[n:, :r_len], position_ids=batch.position_ids[n:, :r_len],
                     attention_mask=torch.cat([prompt_mask[owner], real[n:, :r_len].long()], dim=1),
                     use_cache=True, output_hidden_states=True, logits_to_keep=_no_logits(batch), **{cache_kw: cache})
    length = batch.input_ids.shape[1]
    pad = lambda h: F.pad(h, (0, 0, 0, length - h.shape[1]))  # noqa: E731
    return torch.cat([pad(regather_before_backward(out.hidden_states[-1], unit)) for out in (prompt_out, resp_out)])


def score_batch(model, batch: ScoringBatch, chunk_size: int = 1024, prefix_embeds: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs and token counts, both [B, Nmax] fp32 (0 where no response).

    The decoder body runs on `batch` (once, or prompts then responses for prompt_cache); only the
    positions that predict response tokens go through the output projection. prefix_embeds
    [B, n_prefix, d] fill the prompts' reserved leading positions (embedding conditioning).
    A model with bf16/fp16 weights runs under `precision.precision_context` (autocast; fp32 LoRA
    weights cast once per forward); the log-softmax and the sums stay fp32 either way.
    The model is unwrapped here, once (`wrappers.unwrap_model`); the helpers below take both: `model`
    to call (so DDP/FSDP wrappers see the forward), its unwrapped `base` for config, embeddings and head.
    """
    base = unwrap_model(model)
    with precision_context(model, base):
        return _score_batch(model, base, batch, chunk_size, prefix_embeds)


def _score_batch(model, base: torch.nn.Module, batch: ScoringBatch, chunk_size: int,
                 prefix_embeds: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    embeds = None
    if batch.n_prefix:
        if prefix_embeds is None or prefix_embeds.shape[1] != batch.n_prefix:
            raise ValueError(f"batch reserves {batch.n_prefix} soft-prompt positions; pass prefix_embeds "
                             f"of shape [B, {batch.n_prefix}, d]")
        rows = batch.n_lists if batch.layout == "prompt_cache" else batch.input_ids.shape[0]
        token_embeds = base.get_input_embeddings()(batch.input_ids[:rows, batch.n_prefix:])
        embeds = torch.cat([prefix_embeds[batch.row_list[:rows]].to(token_embeds.dtype), token_embeds], dim=1)
    head = base.get_output_embeddings()
    if zero3_partitioned(head.weight) and batch.layout != "naive":
        raise ValueError(ZERO3_LAYOUT_ERROR)
    verified = verified_for_packed(base.config)
    if batch.layout != "naive" and not verified:
        raise ValueError(f"{batch.layout} layout requested for a model that does not support it; use choose_layout()")
    if verified and not zero3_partitioned(head.weight):
        # Through the model's own forward (so DDP/FSDP wrappers see it and sync gradients), asking
        # for hidden states and the logits of no position; the vocabulary projection of the
        # response positions happens below, in fp32 chunks, on the output layer's (gathered) weights.
        unit = fsdp_unit(model, head)
        if batch.layout == "prompt_cache":
            hidden = _prompt_cache_hidden(model, base, batch, embeds, unit)
        else:
            dtype = base.get_input_embeddings().weight.dtype
            kwargs = {"inputs_embeds": embeds} if embeds is not None else {"input_ids": batch.input_ids}
            if batch.layout == "packed" and segments_installed(base):
                mask, kwargs["segments"] = None, SegmentAttention.from_segments(batch.segment_ids)
            elif batch.layout == "packed":
                mask = block_attention_mask(batch.segment_ids, dtype)
            else:
                mask = (batch.segment_ids >= 0).long()
            out = model(attention_mask=mask, position_ids=batch.position_ids, use_cache=False,
                        output_hidden_states=True, logits_to_keep=_no_logits(batch), **kwargs)
            hidden = regather_before_backward(out.hidden_states[-1], unit)
        with gathered(unit, head, backward_follows=torch.is_grad_enabled() and hidden.requires_grad):
            token_logps = chunked_token_logps(hidden[batch.tgt_row, batch.tgt_pos], head, batch.tgt_id, chunk_size)
    else:
        # Unverified architecture: its CausalLM forward may post-process logits (soft-capping,
        # scaling), so take the model's own logits rather than body + head. Under ZeRO-3 too: the
        # output layer's weights exist only inside the forward.
        kwargs = {"inputs_embeds": embeds} if embeds is not None else {"input_ids": batch.input_ids}
        logits = model(attention_mask=(batch.segment_ids >= 0).long(), position_ids=batch.position_ids,
                       use_cache=False, **kwargs).logits
        selected = logits[batch.tgt_row, batch.tgt_pos]
        token_logps = torch.cat([_token_logps(selected[i:i + chunk_size], torch.nn.Identity(),
                                              batch.tgt_id[i:i + chunk_size])
                                 for i in range(0, selected.shape[0], chunk_size)])

    n_resp = batch.resp_list.shape[0]
    per_resp = token_logps.new_zeros(n_resp).index_add(0, batch.tgt_resp, token_logps)
    counts = torch.zeros(n_resp, device=per_resp.device).index_add_(
        0, batch.tgt_resp, torch.ones_like(token_logps))
    logps = per_resp.new_zeros(batch.n_lists, batch.n_max).index_put((batch.resp_list, batch.resp_slot), per_resp)
    n_tokens = counts.new_zeros(batch.n_lists, batch.n_max).index_put((batch.resp_list, batch.resp_slot), counts)
    return logps, n_tokens
