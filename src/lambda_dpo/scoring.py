"""Model + tokenised lists -> summed log-probs of each response (nats).

Three layouts of the same computation (`Layout`):

- "prompt_cache" (shared prompt; `auto`'s choice for lists of more than PACKED_AUTO_MAX_TOKENS
  tokens): the prompts run once as B rows; their key/value cache, gradients attached, is gathered
  to one copy per response, and the N responses of a list then run as N rows attending to it,
  positions continuing after the prompt. P + N*R tokens, and attention over P^2 + N*R*(P+R)
  query-key pairs; two model calls.
- "packed" (shared prompt; `auto`'s choice for shorter lists and under gradient checkpointing,
  which drops caches): one row per list, [prompt, resp_1, ..., resp_N], each response attending to
  the prompt and its own earlier tokens only, position ids restarting after the prompt. P + N*R
  tokens in one model call. On a model with segment attention installed (segment_attention.py,
  what training does for this layout) attention runs by segment, prompt_cache's pairs; otherwise
  under a dense block mask, (P + N*R)^2 pairs.
- "naive": one row per response, [prompt, resp_i] (the authors' approach). Used as the oracle in
  tests, for architectures the shared-prompt layouts are not verified on, and in the benchmark.

Either way the model runs through its own forward (so distributed wrappers sync gradients),
asked for the logits of no position; the positions that predict response tokens then go through
the vocabulary projection and an fp32 log-softmax in chunks of `chunk_size` tokens under
activation checkpointing, so no [batch, length, vocab] tensor, fp32 or otherwise, is ever held.

That projection runs after the forward, on the output layer's weights. Under FSDP2 they are
gathered for it (`_gathered`) and regathered before each model call's backward
(`_regather_before_backward`); tests/test_fsdp.py checks both shared-prompt layouts against one
process. DeepSpeed ZeRO-3 holds them only inside the forward: there, only the per-response layout
runs, on the model's own logits (`ZERO3_LAYOUT_ERROR`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import DynamicCache

from .models import precision_context, unwrap_model
from .segment_attention import PREFIX as SEGMENT_PREFIX, SegmentAttention, installed as segments_installed

logger = logging.getLogger(__name__)

# Model types whose attention honours a custom 4D additive mask and whose positions come from
# position_ids (tested against the naive forward in tests/test_scoring.py).
PACKED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "gpt2"})
PACKED_ATTENTION = frozenset({"eager", "sdpa", SEGMENT_PREFIX + "eager", SEGMENT_PREFIX + "sdpa"})
Layout = Literal["prompt_cache", "packed", "naive"]
LAYOUTS = ("prompt_cache", "packed", "naive")
_warned: set[str] = set()


@dataclass
class ScoringBatch:
    """Tensors describing B lists laid out for one forward pass.

    input_ids, position_ids, segment_ids: [rows, L] ints. segment_ids: -1 padding, 0 prompt,
        i >= 1 response i; in the naive layout every real token is 0. In the prompt_cache layout
        rows 0..B-1 are the prompts and the later rows the responses, all right-padded to L.
    tgt_row, tgt_pos, tgt_id, tgt_resp: [T] for each scored response token: its row, the
        position whose output predicts it, its id, and its response's flat index.
    resp_list, resp_slot: [R] for each response, its list (0..B-1) and slot (0..Nmax-1).
    row_list: [rows] the list each row belongs to.
    layout: "prompt_cache", "packed" or "naive" (module docstring).
    n_prefix: leading positions of every prompt reserved for soft-prompt vectors (embedding
        conditioning); their ids are placeholders replaced by `prefix_embeds` in `score_batch`.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    segment_ids: torch.Tensor
    tgt_row: torch.Tensor
    tgt_pos: torch.Tensor
    tgt_id: torch.Tensor
    tgt_resp: torch.Tensor
    resp_list: torch.Tensor
    resp_slot: torch.Tensor
    row_list: torch.Tensor
    n_lists: int
    n_max: int
    layout: Layout
    n_prefix: int = 0

    def to(self, device) -> "ScoringBatch":
        return ScoringBatch(**{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in vars(self).items()})

    def as_dict(self, prefix: str = "") -> dict:
        return {prefix + k: v for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, d: dict, prefix: str = "") -> "ScoringBatch":
        return cls(**{k: d[prefix + k] for k in cls.__dataclass_fields__})


def build_batch(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[Sequence[int]]], layout: Layout,
                pad_id: int = 0, n_prefix: int = 0) -> ScoringBatch:
    """Lay out B lists (prompt ids, N_b response ids each) as a ScoringBatch.

    With n_prefix > 0 every prompt is preceded by n_prefix placeholder positions (soft prompt).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    rows_ids, rows_pos, rows_seg, row_list = [], [], [], []
    tgt_row, tgt_pos, tgt_id, tgt_resp, resp_list, resp_slot = [], [], [], [], [], []

    def add_row(ids, pos, seg):
        rows_ids.append(ids), rows_pos.append(pos), rows_seg.append(seg), row_list.append(b)
        return len(rows_ids) - 1

    prompts = [[pad_id] * n_prefix + list(prompt) for prompt in prompts]
    if layout == "prompt_cache":
        for b, prompt in enumerate(prompts):
            add_row(prompt, list(range(len(prompt))), [0] * len(prompt))
    for b, (prompt, resps) in enumerate(zip(prompts, responses)):
        p = len(prompt)
        if layout == "prompt_cache":
            for i, r in enumerate(resps):
                row = add_row(list(r), list(range(p, p + len(r))), [i + 1] * len(r))
                flat = len(resp_list)
                # The first token is predicted by the prompt's last position, the rest by the response row.
                tgt_row += [b] + [row] * (len(r) - 1)
                tgt_pos += [p - 1] + list(range(len(r) - 1))
                tgt_id += r
                tgt_resp += [flat] * len(r)
                resp_list.append(b), resp_slot.append(i)
        elif layout == "packed":
            ids, pos, seg = list(prompt), list(range(p)), [0] * p
            for i, r in enumerate(resps):
                start = len(ids)
                ids += r
                pos += range(p, p + len(r))
                seg += [i + 1] * len(r)
                flat = len(resp_list)
                tgt_pos += [p - 1] + list(range(start, start + len(r) - 1))
                tgt_id += r
                tgt_resp += [flat] * len(r)
                resp_list.append(b), resp_slot.append(i)
            row = add_row(ids, pos, seg)
            tgt_row += [row] * (len(ids) - p)
        else:
            for i, r in enumerate(resps):
                row = add_row(list(prompt) + list(r), list(range(p + len(r))), [0] * (p + len(r)))
                flat = len(resp_list)
                tgt_row += [row] * len(r)
                tgt_pos += list(range(p - 1, p + len(r) - 1))
                tgt_id += r
                tgt_resp += [flat] * len(r)
                resp_list.append(b), resp_slot.append(i)

    length = max(len(r) for r in rows_ids)

    def pad(rows, value):
        return torch.tensor([r + [value] * (length - len(r)) for r in rows], dtype=torch.long)

    long = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
    return ScoringBatch(pad(rows_ids, pad_id), pad(rows_pos, 0), pad(rows_seg, -1), long(tgt_row), long(tgt_pos),
                        long(tgt_id), long(tgt_resp), long(resp_list), long(resp_slot), long(row_list), len(prompts),
                        max(len(r) for r in responses), layout, n_prefix)


def block_attention_mask(segment_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[rows, L] segment ids -> [rows, 1, L, L] additive mask (0 = attend, dtype's min = blocked).

    Query q may attend key k iff k <= q, k is real, and k is in the prompt or in q's segment.
    Padding queries attend to nothing real; their outputs are never read.
    """
    seg_q = segment_ids[:, :, None]
    seg_k = segment_ids[:, None, :]
    length = segment_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    allowed = causal & (seg_k >= 0) & ((seg_k == 0) | (seg_k == seg_q))
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segment_ids.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def supports_packed(model) -> bool:
    config = unwrap_model(model).config
    return config.model_type in PACKED_MODEL_TYPES and config._attn_implementation in PACKED_ATTENTION


ZERO3_LAYOUT_ERROR = (
    "DeepSpeed ZeRO-3 partitions the output layer's weights and gathers them only inside the model's forward, "
    "while the shared-prompt layouts (prompt_cache and packed alike) apply that layer after the forward, to the "
    "response positions only; set `shared_prompt: false` under ZeRO-3 (one row per response, the model's own "
    "logits), or shard with FSDP instead (configs/accelerate/fsdp.yaml, tested with both shared-prompt layouts)")


def zero3_partitioned(param: torch.Tensor) -> bool:
    """True for a parameter DeepSpeed ZeRO-3 has partitioned (it then carries a `ds_id`)."""
    return hasattr(param, "ds_id")


@functools.cache
def _fsdp_module_class() -> type | None:
    """torch's FSDPModule (the class `fully_shard` mixes into every module it shards), or None."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch build without torch.distributed
        return None
    return FSDPModule


def _is_dtensor(t: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def _fsdp_unit(model, module: torch.nn.Module) -> torch.nn.Module | None:
    """The FSDP2 unit holding `module`'s parameters: the innermost `fully_shard`-ed module containing
    it (Accelerate makes the output layer and the final norm one unit). None when `model` (the
    outermost module, which FSDP2 always shards) is not under FSDP2."""
    fsdp = _fsdp_module_class()
    if fsdp is None or not isinstance(model, fsdp):
        return None
    units = [m for m in model.modules() if isinstance(m, fsdp) and any(s is module for s in m.modules())]
    return min(units, key=lambda m: sum(1 for _ in m.modules()))


def _regather_before_backward(hidden: torch.Tensor, unit: torch.nn.Module | None) -> torch.Tensor:
    """Final hidden states [rows, L, d] of one model call, unchanged; under FSDP2, its unit
    (`_fsdp_unit` of the output layer) is all-gathered again just before this call's final-norm
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
def _gathered(unit: torch.nn.Module | None, head: torch.nn.Module, backward_follows: bool):
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
    if _fsdp_module_class() is not None and isinstance(head, _fsdp_module_class()):
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


def _cache_argument(model) -> str:
    """The forward's key/value cache argument: `cache` in transformers >= 5.24 (where `past_key_values`
    is deprecated and warns on every call), `past_key_values` before."""
    params = inspect.signature(unwrap_model(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _prompt_cache_hidden(model, batch: ScoringBatch, embeds: torch.Tensor | None, unit: torch.nn.Module | None
                         ) -> torch.Tensor:
    """Final hidden states [rows, L, d] of the prompt_cache layout: two forwards through `model`.

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
    cache = DynamicCache(config=unwrap_model(model).config)  # filled in place by the prompt call
    cache_kw = _cache_argument(model)
    prompt_out = model(attention_mask=prompt_mask, position_ids=batch.position_ids[:n, :p_len], use_cache=True,
                       output_hidden_states=True, logits_to_keep=_no_logits(batch), **{cache_kw: cache}, **prompt_in)
    if cache.get_seq_length() != p_len:  # e.g. checkpointed layers in training mode drop it
        raise RuntimeError("the model returned no key/value cache for the prompts (gradient checkpointing?); "
                           "use shared_prompt_layout=packed")
    owner = batch.row_list[n:]
    cache.reorder_cache(owner)
    resp_out = model(input_ids=batch.input_ids[n:, :r_len], position_ids=batch.position_ids[n:, :r_len],
                     attention_mask=torch.cat([prompt_mask[owner], real[n:, :r_len].long()], dim=1),
                     use_cache=True, output_hidden_states=True, logits_to_keep=_no_logits(batch), **{cache_kw: cache})
    length = batch.input_ids.shape[1]
    pad = lambda h: F.pad(h, (0, 0, 0, length - h.shape[1]))  # noqa: E731
    return torch.cat([pad(_regather_before_backward(out.hidden_states[-1], unit)) for out in (prompt_out, resp_out)])


def score_batch(model, batch: ScoringBatch, chunk_size: int = 1024, prefix_embeds: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs and token counts, both [B, Nmax] fp32 (0 where no response).

    The decoder body runs on `batch` (once, or prompts then responses for prompt_cache); only the
    positions that predict response tokens go through the output projection. prefix_embeds
    [B, n_prefix, d] fill the prompts' reserved leading positions (embedding conditioning).
    A model with bf16/fp16 weights runs under `models.precision_context` (autocast; fp32 LoRA
    weights cast once per forward); the log-softmax and the sums stay fp32 either way.
    """
    with precision_context(model):
        return _score_batch(model, batch, chunk_size, prefix_embeds)


def _score_batch(model, batch: ScoringBatch, chunk_size: int, prefix_embeds: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    base = unwrap_model(model)
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
    if batch.layout != "naive" and not supports_packed(model):
        raise ValueError(f"{batch.layout} layout requested for a model that does not support it; use choose_layout()")
    if supports_packed(model) and not zero3_partitioned(head.weight):
        # Through the model's own forward (so DDP/FSDP wrappers see it and sync gradients), asking
        # for hidden states and the logits of no position; the vocabulary projection of the
        # response positions happens below, in fp32 chunks, on the output layer's (gathered) weights.
        unit = _fsdp_unit(model, head)
        if batch.layout == "prompt_cache":
            hidden = _prompt_cache_hidden(model, batch, embeds, unit)
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
            hidden = _regather_before_backward(out.hidden_states[-1], unit)
        with _gathered(unit, head, backward_follows=torch.is_grad_enabled() and hidden.requires_grad):
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


PACKED_AUTO_MAX_TOKENS = 1024
"""`auto` packs a list into one row when its prompt and responses total at most this many tokens
(the median over the training lists). Each model call has a cost independent of its tokens (few-row
products still read every weight, forward and backward, and each operator pays the framework's
overhead); prompt_cache makes two calls per step, packed one. Attending by segment
(lambda_dpo.segment_attention, what training runs) packed pays prompt_cache's query-key pairs, not
the whole row's (P + N*R)^2, and measured within a few percent of prompt_cache or faster for rows
of up to 1024 tokens, on CPUs, in fp32 and bf16 (`python bench/bench_layouts.py --methods
ours,ours_segments`; docs/performance.md). Longer rows are not measured, so they keep
prompt_cache."""


def choose_layout(model, shared_prompt: bool = True, preferred: str = "auto",
                  gradient_checkpointing: bool = False, row_tokens: float | None = None) -> Layout:
    """The layout to train and score with: "naive" when shared_prompt is off or the architecture is
    not verified (logged once); else `preferred`, where "auto" is "packed" under gradient
    checkpointing (checkpointed layers drop key/value caches) or when `row_tokens` (a typical list's
    prompt + all its responses, in tokens) is at most PACKED_AUTO_MAX_TOKENS, and "prompt_cache"
    otherwise.
    """
    if not shared_prompt:
        return "naive"
    if supports_packed(model):
        if preferred != "auto":
            return preferred
        base = unwrap_model(model)  # transformers >= 5.24 renamed the flag (the old name warns)
        checkpointing = gradient_checkpointing or getattr(
            base, "is_activation_checkpointing" if hasattr(type(base), "is_activation_checkpointing")
            else "is_gradient_checkpointing", False)
        short = row_tokens is not None and row_tokens <= PACKED_AUTO_MAX_TOKENS
        return "packed" if checkpointing or short else "prompt_cache"
    config = unwrap_model(model).config
    key = f"{config.model_type}/{config._attn_implementation}"
    if key not in _warned:
        _warned.add(key)
        logger.warning("shared-prompt forward not verified for model_type=%s attn_implementation=%s; "
                       "using the plain per-response forward (correct, slower). Verified: %s with %s.",
                       config.model_type, config._attn_implementation, sorted(PACKED_MODEL_TYPES),
                       sorted(PACKED_ATTENTION))
    return "naive"
