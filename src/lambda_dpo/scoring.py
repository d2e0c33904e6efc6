"""Model + tokenised lists -> summed log-probs of each response (nats).

Two layouts of the same computation:

- shared prompt ("packed"): one row per list, [prompt, resp_1, ..., resp_N]. A block mask lets
  each response attend to the prompt and to its own earlier tokens only, and position ids
  restart after the prompt for each response, so every response sees exactly what it would see
  alone. The prompt is computed once: P + N*R tokens instead of N*(P+R).
- naive: one row per response, [prompt, resp_i] (the authors' approach). Used as the oracle in
  tests, for architectures the packed path is not verified on, and in the benchmark.

Either way the model runs through its own forward (so distributed wrappers sync gradients),
asked for the logits of one position only; the positions that predict response tokens then go
through the vocabulary projection and an fp32 log-softmax in chunks of `chunk_size` tokens under
activation checkpointing, so no [batch, length, vocab] tensor, fp32 or otherwise, is ever held.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from accelerate.utils import extract_model_from_parallel
from torch.utils.checkpoint import checkpoint

logger = logging.getLogger(__name__)

# Model types whose attention honours a custom 4D additive mask and whose positions come from
# position_ids (tested against the naive forward in tests/test_scoring.py).
PACKED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "gpt2"})
PACKED_ATTENTION = frozenset({"eager", "sdpa"})
_warned: set[str] = set()


@dataclass
class ScoringBatch:
    """Tensors describing B lists laid out for one forward pass.

    input_ids, position_ids, segment_ids: [rows, L] ints. segment_ids: -1 padding, 0 prompt,
        i >= 1 response i (packed layout); in the naive layout every real token is 0.
    tgt_row, tgt_pos, tgt_id, tgt_resp: [T] for each scored response token: its row, the
        position whose output predicts it, its id, and its response's flat index.
    resp_list, resp_slot: [R] for each response, its list (0..B-1) and slot (0..Nmax-1).
    row_list: [rows] the list each row belongs to.
    packed: True for the shared-prompt layout.
    n_prefix: leading positions of every row reserved for soft-prompt vectors (embedding
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
    packed: bool
    n_prefix: int = 0

    def to(self, device) -> "ScoringBatch":
        return ScoringBatch(**{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in vars(self).items()})

    def as_dict(self, prefix: str = "") -> dict:
        return {prefix + k: v for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, d: dict, prefix: str = "") -> "ScoringBatch":
        return cls(**{k: d[prefix + k] for k in cls.__dataclass_fields__})


def build_batch(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[Sequence[int]]], packed: bool,
                pad_id: int = 0, n_prefix: int = 0) -> ScoringBatch:
    """Lay out B lists (prompt ids, N_b response ids each) as a ScoringBatch.

    With n_prefix > 0 every prompt is preceded by n_prefix placeholder positions (soft prompt).
    """
    rows_ids, rows_pos, rows_seg, row_list = [], [], [], []
    tgt_row, tgt_pos, tgt_id, tgt_resp, resp_list, resp_slot = [], [], [], [], [], []

    def add_row(ids, pos, seg):
        rows_ids.append(ids), rows_pos.append(pos), rows_seg.append(seg), row_list.append(b)
        return len(rows_ids) - 1

    for b, (prompt, resps) in enumerate(zip(prompts, responses)):
        prompt = [pad_id] * n_prefix + list(prompt)
        p = len(prompt)
        if packed:
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
                        max(len(r) for r in responses), packed, n_prefix)


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


def _unwrap(model):
    """The transformers CausalLM under DDP/FSDP and PEFT wrappers (LoRA layers are injected in place)."""
    model = extract_model_from_parallel(model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports_packed(model) -> bool:
    config = _unwrap(model).config
    return config.model_type in PACKED_MODEL_TYPES and config._attn_implementation in PACKED_ATTENTION


def _token_logps(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor) -> torch.Tensor:
    """[c, d] hidden states -> [c] fp32 log-probs of `targets` under the vocabulary projection."""
    logits = head(hidden).float()
    return logits.gather(-1, targets[:, None]).squeeze(-1) - logits.logsumexp(-1)


def chunked_token_logps(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor,
                        chunk_size: int = 1024) -> torch.Tensor:
    """Log-probs [T] for [T, d] hidden states, `chunk_size` tokens of fp32 logits at a time.

    With grad enabled each chunk is recomputed in backward (activation checkpointing), so peak
    extra memory is one chunk's [chunk_size, vocab] fp32 logits.
    """
    out = []
    for start in range(0, hidden.shape[0], chunk_size):
        h, t = hidden[start:start + chunk_size], targets[start:start + chunk_size]
        if torch.is_grad_enabled() and h.requires_grad:
            out.append(checkpoint(_token_logps, h, head, t, use_reentrant=False))
        else:
            out.append(_token_logps(h, head, t))
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)


def score_batch(model, batch: ScoringBatch, chunk_size: int = 1024, prefix_embeds: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs and token counts, both [B, Nmax] fp32 (0 where no response).

    The decoder body runs once on `batch`; only the positions that predict response tokens go
    through the output projection. prefix_embeds [B, n_prefix, d] fill the batch's reserved
    leading positions (embedding conditioning).
    """
    inputs_embeds = None
    if batch.n_prefix:
        if prefix_embeds is None or prefix_embeds.shape[1] != batch.n_prefix:
            raise ValueError(f"batch reserves {batch.n_prefix} soft-prompt positions; pass prefix_embeds "
                             f"of shape [B, {batch.n_prefix}, d]")
        token_embeds = _unwrap(model).get_input_embeddings()(batch.input_ids[:, batch.n_prefix:])
        inputs_embeds = torch.cat([prefix_embeds[batch.row_list].to(token_embeds.dtype), token_embeds], dim=1)
    base = _unwrap(model)
    kwargs = {"inputs_embeds": inputs_embeds} if inputs_embeds is not None else {"input_ids": batch.input_ids}
    if supports_packed(model):
        dtype = base.get_input_embeddings().weight.dtype
        mask = block_attention_mask(batch.segment_ids, dtype) if batch.packed else (batch.segment_ids >= 0).long()
        # Through the model's own forward (so DDP/FSDP wrappers see it and sync gradients), asking
        # for hidden states and the logits of one position only; the vocabulary projection of the
        # response positions happens below, in fp32 chunks.
        out = model(attention_mask=mask, position_ids=batch.position_ids, use_cache=False, output_hidden_states=True,
                    logits_to_keep=1, **kwargs)
        hidden = out.hidden_states[-1]
        token_logps = chunked_token_logps(hidden[batch.tgt_row, batch.tgt_pos], base.get_output_embeddings(),
                                          batch.tgt_id, chunk_size)
    else:
        # Unverified architecture: its CausalLM forward may post-process logits (soft-capping,
        # scaling), so take the model's own logits rather than body + head.
        if batch.packed:
            raise ValueError("packed layout requested for a model that does not support it; use choose_layout()")
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


def choose_layout(model, shared_prompt: bool = True) -> bool:
    """True for the packed shared-prompt layout; logs once why it falls back to the naive one."""
    if not shared_prompt:
        return False
    if supports_packed(model):
        return True
    config = _unwrap(model).config
    key = f"{config.model_type}/{config._attn_implementation}"
    if key not in _warned:
        _warned.add(key)
        logger.warning("shared-prompt forward not verified for model_type=%s attn_implementation=%s; "
                       "using the plain per-response forward (correct, slower). Verified: %s with %s.",
                       config.model_type, config._attn_implementation, sorted(PACKED_MODEL_TYPES),
                       sorted(PACKED_ATTENTION))
    return False
