"""How far a trained model moved from its reference: KL(pi || pi_ref) on replies sampled from pi.

For a prompt x, KL(pi(.|x) || pi_ref(.|x)) = E_{y ~ pi}[log pi(y|x) - log pi_ref(y|x)]. The estimate
samples y from the policy at temperature 1 with every logits processor of the model's generation_config
(top-k, top-p, min-p, repetition penalty, ...) switched off, so the samples come from pi itself; scores
every sampled token under the policy and under the reference (a PEFT model's adapter switched off, or a
reference model given), and averages the summed log-ratio over samples.
A reply cut at `max_new_tokens` measures the KL of the first `max_new_tokens` tokens' distribution.
Units: nats per reply.
"""

from __future__ import annotations

from typing import Sequence

import contextlib

import torch

from ..precision import precision_context
from ..wrappers import eval_mode

__all__ = ["reply_log_ratios", "sampled_kl"]

# generate() fills what is None from the model's generation_config, so plain sampling is written out in full
PLAIN_SAMPLING = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0,
                      epsilon_cutoff=0.0, eta_cutoff=0.0, repetition_penalty=1.0, no_repeat_ngram_size=0,
                      min_new_tokens=0, suppress_tokens=[], begin_suppress_tokens=[], num_beams=1)


def _reply_mask(new_tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """[B, T] True for the sampled tokens up to and including the first EOS (what follows is padding)."""
    is_eos = (new_tokens == eos_id).long()
    return (is_eos.cumsum(-1) - is_eos) == 0


def _reply_logps(model, ids: torch.Tensor, attention: torch.Tensor, width: int, reply_mask: torch.Tensor) -> torch.Tensor:
    """[B] summed log-probs of ids[:, width:] (where reply_mask) given everything before them."""
    positions = (attention.cumsum(-1) - 1).clamp(min=0)  # as generate numbers them: left padding does not count
    with precision_context(model):
        logits = model(input_ids=ids, attention_mask=attention, position_ids=positions).logits[:, width - 1:-1].float()
    logps = torch.log_softmax(logits, -1).gather(-1, ids[:, width:, None]).squeeze(-1)
    return (logps * reply_mask).sum(-1)


@torch.no_grad()
def reply_log_ratios(model, tokenizer, prompt_ids: Sequence[list[int]], *, reference=None, max_new_tokens: int = 96,
                     seed: int = 0, batch_size: int = 16) -> torch.Tensor:
    """[P] log pi(y|x) - log pi_ref(y|x) (nats) of one reply y sampled from pi per prompt x, given each
    prompt's token ids as the model sees it (e.g. `generation.steered_prompt_ids`). reference: the model
    pi_ref; None for a PEFT model, whose reference is itself with the adapter switched off."""
    if reference is None and not hasattr(model, "disable_adapter"):
        raise ValueError("KL to the reference: the model has no adapter to switch off; pass reference= the model "
                         "it was trained from")
    tok = tokenizer
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    out = []
    separate = reference is not None
    with eval_mode(model), eval_mode(reference) if separate else contextlib.nullcontext():
        for start in range(0, len(prompt_ids), batch_size):
            rows = [list(r) for r in prompt_ids[start:start + batch_size]]
            width = max(map(len, rows))
            ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows], device=device)
            prompt_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
            with precision_context(model):
                full = model.generate(input_ids=ids, attention_mask=prompt_mask, max_new_tokens=max_new_tokens,
                                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **PLAIN_SAMPLING)
            reply_mask = _reply_mask(full[:, width:], tok.eos_token_id)
            attention = torch.cat([prompt_mask, reply_mask.long()], -1)
            policy = _reply_logps(model, full, attention, width, reply_mask)
            with contextlib.nullcontext() if separate else model.disable_adapter():
                ref = _reply_logps(reference if separate else model, full, attention, width, reply_mask)
            out.append((policy - ref).cpu())
    return torch.cat(out)


def sampled_kl(model, tokenizer, prompt_ids: Sequence[list[int]], *, reference=None, samples: int = 1,
               max_new_tokens: int = 96, seed: int = 0, batch_size: int = 16) -> torch.Tensor:
    """[P] Monte-Carlo KL(pi || pi_ref) per prompt (nats per reply): the mean log-ratio of `samples` replies
    (reference: as in `reply_log_ratios`)."""
    draws = [reply_log_ratios(model, tokenizer, prompt_ids, reference=reference, max_new_tokens=max_new_tokens,
                              seed=seed + i, batch_size=batch_size) for i in range(samples)]
    return torch.stack(draws).mean(0)
