"""Attention of the packed layout by segment: prompt_cache's arithmetic in one model call.

A packed row holds [prompt, resp_1, ..., resp_N]; each response attends to the prompt and to its own
earlier tokens. A dense block mask makes the kernel visit every query-key pair of the row,
(P + N*R)^2, most of them blocked. Instead, in every layer, the model's own attention kernel (sdpa
or eager) runs on each row's prompt (a slice: prompts open the rows; causal) and on each response's
tokens, gathered into one row per response, over its prompt's keys and its own earlier ones; the
response outputs are scattered back into the row. That is P^2 / 2 + N*R*(P + R/2) pairs, as in
prompt_cache, in one model call (one pass over the weights forward and one backward, where
prompt_cache makes two of each).

It is a transformers attention implementation (`register`): "lambda_dpo_sdpa" / "lambda_dpo_eager"
wrap "sdpa" / the model's eager function and behave exactly like them unless the forward was given
`segments=SegmentAttention(...)`, which transformers hands through the decoder layers to the
attention function. Masks are built once per batch, not per layer.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass, field

import torch

PREFIX = "lambda_dpo_"
INNER = ("sdpa", "eager")


@dataclass
class SegmentAttention:
    """Index and mask tensors of one packed batch, shared by every layer.

    rows, length: the packed batch's shape [rows, length]. p_max / r_max: longest prompt / response.
    resp_idx [n_resp * r_max]: flat token indices (row * length + position) of each response,
        padded by repeating its last one. Prompts need none: each row's opens at position 0.
    keep_idx, keep_src [response tokens]: where each real response token's output goes in the
        flattened rows, and where it comes from in the flattened [n_resp, r_max] outputs.
    resp_list [n_resp]: each response's row.
    prompt_mask [rows, 1, p_max, p_max], resp_mask [n_resp, 1, r_max, p_max + r_max]: bool, True =
        attend; None for prompt_mask when every prompt has p_max tokens (sdpa then runs causal).
    """

    rows: int
    length: int
    p_max: int
    r_max: int
    resp_idx: torch.Tensor
    keep_idx: torch.Tensor
    keep_src: torch.Tensor
    resp_list: torch.Tensor
    prompt_mask: torch.Tensor | None
    resp_mask: torch.Tensor
    _additive: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_segments(cls, segment_ids: torch.Tensor) -> "SegmentAttention":
        """From the packed layout's [rows, L] segment ids (-1 padding, 0 prompt, i >= 1 response i,
        prompt first, each response contiguous)."""
        rows, length = segment_ids.shape
        dev = segment_ids.device
        seg = segment_ids.cpu()
        p_len = (seg == 0).sum(1)
        p_max = int(p_len.max())
        pos = torch.arange(p_max)
        prompt_ok = pos[None] < p_len[:, None]  # [rows, p_max]
        spans, resp_list = [], []
        for b in range(rows):
            ids = seg[b]
            for i in range(1, int(ids.max()) + 1):
                where = (ids == i).nonzero().flatten()
                if len(where):
                    spans.append(b * length + where)
                    resp_list.append(b)
        r_max = max(len(s) for s in spans)
        r_len = torch.tensor([len(s) for s in spans])
        resp_ok = torch.arange(r_max)[None] < r_len[:, None]  # [n_resp, r_max]
        resp_idx = torch.stack([torch.cat([s, s[-1:].expand(r_max - len(s))]) for s in spans])
        resp_list = torch.tensor(resp_list)
        causal = torch.ones(r_max, r_max, dtype=torch.bool).tril()
        # Padding queries get the causal pattern too, so that no query row is all blocked (NaN).
        resp_mask = torch.cat([prompt_ok[resp_list][:, None, :].expand(-1, r_max, -1),
                               causal[None] & resp_ok[:, None, :]], dim=2)[:, None]
        prompt_mask = None
        if not bool(prompt_ok.all()):
            prompt_mask = (torch.ones(p_max, p_max, dtype=torch.bool).tril()[None] & prompt_ok[:, None, :])
            prompt_mask |= torch.eye(p_max, dtype=torch.bool)[None]  # padding queries see themselves
            prompt_mask = prompt_mask[:, None]
        keep_src = torch.arange(len(spans) * r_max)[resp_ok.flatten()]
        keep_idx = resp_idx.flatten()[resp_ok.flatten()]
        return cls(rows, length, p_max, r_max, resp_idx.flatten().to(dev),
                   keep_idx.to(dev), keep_src.to(dev), resp_list.to(dev),
                   None if prompt_mask is None else prompt_mask.to(dev), resp_mask.to(dev))

    def masks(self, inner: str, dtype: torch.dtype) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(prompt mask, response mask) in the form `inner` takes: sdpa the bool masks (None: causal);
        eager additive ones (0 / dtype's min, added to its scores; it has no causal flag), built
        once per batch and dtype, not per layer."""
        if inner == "sdpa":
            return self.prompt_mask, self.resp_mask
        if dtype not in self._additive:
            prompt = self.prompt_mask
            if prompt is None:
                prompt = torch.ones(self.p_max, self.p_max, dtype=torch.bool, device=self.resp_mask.device).tril()
                prompt = prompt[None, None]
            self._additive[dtype] = tuple(
                torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill_(~m, torch.finfo(dtype).min)
                for m in (prompt, self.resp_mask))
        return self._additive[dtype]


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """[rows, heads, L, d] -> [rows * L, heads, d]."""
    return x.transpose(1, 2).reshape(-1, x.shape[1], x.shape[3])


def _heads(x: torch.Tensor, n: int, length: int) -> torch.Tensor:
    """[n * length, heads, d] -> [n, heads, length, d]."""
    return x.view(n, length, x.shape[1], x.shape[2]).transpose(1, 2)


def _inner_function(name: str, module: torch.nn.Module):
    if name == "sdpa":
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        return sdpa_attention_forward
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if eager is None:
        raise TypeError(f"{type(module).__name__} has no eager_attention_forward in its module")
    return eager


def segment_attention_forward(inner: str, module, query, key, value, attention_mask, segments=None, **kwargs):
    """The attention function registered as PREFIX + inner. query [rows, H, L, d], key / value
    [rows, Hkv, L, d] -> ([rows, L, H, d], None)."""
    fn = _inner_function(inner, module)
    if segments is None:
        return fn(module, query, key, value, attention_mask, **kwargs)
    s: SegmentAttention = segments
    # Prompts open every row: a slice (a shorter prompt's extra keys are masked). Responses are
    # gathered with index_select, whose backward is an index_add (plain indexing's sorts the indices).
    qp, kp, vp = (t[:, :, :s.p_max] for t in (query, key, value))
    n_resp = s.resp_list.shape[0]
    qr, kr, vr = (_heads(_tokens(t).index_select(0, s.resp_idx), n_resp, s.r_max) for t in (query, key, value))
    kr = torch.cat([kp.index_select(0, s.resp_list), kr], dim=2)
    vr = torch.cat([vp.index_select(0, s.resp_list), vr], dim=2)
    masks = s.masks(inner, query.dtype)
    out_p, _ = fn(module, qp, kp, vp, masks[0], **kwargs)  # [rows, p_max, H, d]
    out_r, _ = fn(module, qr, kr, vr, masks[1], **kwargs)  # [n_resp, r_max, H, d]
    row = torch.nn.functional.pad(out_p, (0, 0, 0, 0, 0, s.length - s.p_max)).flatten(0, 1)
    row = row.index_copy(0, s.keep_idx, out_r.flatten(0, 1).index_select(0, s.keep_src))
    return row.view(s.rows, s.length, *row.shape[1:]), None


_FORWARDS = {inner: functools.partial(segment_attention_forward, inner) for inner in INNER}


def register() -> None:
    """Register PREFIX + "sdpa" / PREFIX + "eager" with transformers (attention and mask functions).

    Explicit, never at import (importing lambda_dpo changes no global registry;
    tests/unit/test_layout.py checks it): `install` calls it, so training and `lambda-dpo evaluate` register
    when they pick the packed layout. Idempotent: a repeated call registers the same functions again.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    for inner in INNER:
        AttentionInterface.register(PREFIX + inner, _FORWARDS[inner])
        AttentionMaskInterface.register(PREFIX + inner, ALL_MASK_ATTENTION_FUNCTIONS[inner])


def install(model) -> str:
    """Route `model`'s attention (a transformers or PEFT model, not yet wrapped for distribution; sdpa or
    eager) through PREFIX + its kernel, so
    that the packed layout attends by segment; returns the kernel it wraps. For good, not per call:
    a checkpointed layer reruns its forward during backward and must find the same implementation.
    Idempotent; every call without `segments` behaves exactly as the kernel did."""
    register()
    kernel = model.config._attn_implementation
    if kernel.startswith(PREFIX):
        return kernel.removeprefix(PREFIX)
    if kernel not in INNER:
        raise ValueError(f"segment attention wraps {INNER}, not {kernel!r}")
    model.set_attn_implementation(PREFIX + kernel)
    return kernel


def installed(model) -> bool:
    return model.config._attn_implementation.startswith(PREFIX)


@contextlib.contextmanager
def segmented(model):
    """Within the block, `model` runs its attention through PREFIX + its kernel (`install`); the
    kernel is restored after. Backward of a checkpointed model must run inside the block too."""
    if installed(model):
        raise ValueError("segment attention is already installed on this model")
    kernel = install(model)
    try:
        yield model
    finally:
        model.set_attn_implementation(kernel)
