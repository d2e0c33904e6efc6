"""How B tokenised lists are laid out for one forward pass: the layouts, `build_batch`, and the policy
that picks one (`choose_layout`).

Three layouts of the same computation (`Layout`; `logprobs.score_batch` runs each):

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
  under a dense block mask (`block_attention_mask`), (P + N*R)^2 pairs.
- "naive": one row per response, [prompt, resp_i] (the authors' approach). Used as the oracle in
  tests, for architectures the shared-prompt layouts are not verified on (`verified_for_packed`), and
  in the benchmark. The `layout` option calls it "per_response" (`LAYOUT_OPTIONS`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from .segment_attention import PREFIX as SEGMENT_PREFIX
from .wrappers import unwrap_model

logger = logging.getLogger(__name__)

# Model types whose attention honours a custom 4D additive mask and whose positions come from
# position_ids (tested against the naive forward in tests/unit/test_scoring.py).
PACKED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "gpt2"})
PACKED_ATTENTION = frozenset({"eager", "sdpa", SEGMENT_PREFIX + "eager", SEGMENT_PREFIX + "sdpa"})
Layout = Literal["prompt_cache", "packed", "naive"]
LAYOUTS = ("prompt_cache", "packed", "naive")
LAYOUT_OPTIONS = ("auto", "packed", "prompt_cache", "per_response")
"""Values of the `layout` option: auto (`choose_layout` picks packed or prompt_cache) or one layout, the
"naive" one under the name users see, per_response (`as_option`)."""
_OPTION_NAMES = {"naive": "per_response"}  # a layout's name as the `layout` option writes it, where it differs
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


def verified_for_packed(config) -> bool:
    """Whether a model with this transformers `config` (architecture and attention kernel) is verified for the
    shared-prompt layouts (PACKED_MODEL_TYPES, PACKED_ATTENTION); the others score one row per response."""
    return config.model_type in PACKED_MODEL_TYPES and config._attn_implementation in PACKED_ATTENTION

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


def as_option(layout: Layout) -> str:
    """`layout`'s name as a value of the `layout` option (LAYOUT_OPTIONS): "naive" is "per_response"."""
    return _OPTION_NAMES.get(layout, layout)


def choose_layout(model, preferred: str = "auto", gradient_checkpointing: bool = False,
                  row_tokens: float | None = None) -> Layout:
    """The layout to train and score with, for `preferred`, a value of the `layout` option
    (LAYOUT_OPTIONS): "naive" for per_response or when the architecture is not verified (logged once);
    else `preferred`, where "auto" is "packed" under gradient checkpointing (checkpointed layers drop
    key/value caches) or when `row_tokens` (a typical list's prompt + all its responses, in tokens) is
    at most PACKED_AUTO_MAX_TOKENS, and "prompt_cache" otherwise.
    """
    if preferred not in LAYOUT_OPTIONS:
        raise ValueError(f"layout={preferred!r} is not one of {', '.join(LAYOUT_OPTIONS)}")
    if preferred == "per_response":
        return "naive"
    base = unwrap_model(model)
    if verified_for_packed(base.config):
        if preferred != "auto":
            return preferred
        # transformers >= 5.24 renamed the flag (the old name warns)
        checkpointing = gradient_checkpointing or getattr(
            base, "is_activation_checkpointing" if hasattr(type(base), "is_activation_checkpointing")
            else "is_gradient_checkpointing", False)
        short = row_tokens is not None and row_tokens <= PACKED_AUTO_MAX_TOKENS
        return "packed" if checkpointing or short else "prompt_cache"
    config = base.config
    key = f"{config.model_type}/{config._attn_implementation}"
    if key not in _warned:
        _warned.add(key)
        logger.warning("shared-prompt forward not verified for model_type=%s attn_implementation=%s; "
                       "using the plain per-response forward (correct, slower). Verified: %s with %s.",
                       config.model_type, config._attn_implementation, sorted(PACKED_MODEL_TYPES),
                       sorted(PACKED_ATTENTION))
    return "naive"
