"""Generate from a trained lambda-DPO model under a chosen lambda, with the training conditioning."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch
from tqdm.auto import tqdm

from .conditioning import LambdaText, condition_prompt, lambda_prefix, load_lambda_embedding
from .lambdas import parse_lambda, uniform_lambda
from .saved_model import base_model_source, read_model_meta, saved_dtype, saved_lambda_text
from .models import load_model, load_tokenizer
from .precision import precision_context
from .tokenization import encode_prompt


@dataclass
class SteerableModel:
    model: torch.nn.Module
    tokenizer: object
    aspects: tuple[str, ...]
    conditioning: str
    lambda_text: LambdaText = field(default_factory=LambdaText)


def load_steerable(model_dir: str | Path, *, trust_remote_code: bool = False,
                   attn_implementation: str | None = None) -> SteerableModel:
    """A model saved by `lambda-dpo train` (adapter or full weights) with its aspects and conditioning
    (the directory's layout: `saved_model`). attn_implementation: the attention kernel (None: transformers'
    default; `lambda-dpo evaluate` passes the one training ran with)."""
    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    tokenizer = load_tokenizer(str(model_dir), trust_remote_code=trust_remote_code)
    if meta["adapter"]:
        from peft import PeftModel

        base = load_model(base_model_source(meta), dtype=saved_dtype(meta), trust_remote_code=trust_remote_code,
                          attn_implementation=attn_implementation)
        model = PeftModel.from_pretrained(base, str(model_dir))
    else:
        model = load_model(str(model_dir), dtype=saved_dtype(meta), trust_remote_code=trust_remote_code,
                           attn_implementation=attn_implementation)
    if meta["conditioning"] == "embedding":
        load_lambda_embedding(model, model_dir)
    return SteerableModel(model.eval(), tokenizer, tuple(meta["aspects"]), meta["conditioning"],
                          saved_lambda_text(meta))


LambdaArg = str | Mapping[str, float] | None


def _per_prompt(lam: LambdaArg | Sequence[LambdaArg], n: int) -> list[LambdaArg]:
    """One lambda per prompt: `lam` repeated, or `lam` itself when it is a list or tuple of n lambdas."""
    if isinstance(lam, (list, tuple)):
        if len(lam) != n:
            raise ValueError(f"generate got {len(lam)} lambdas for {n} prompts: give one lambda, or one per prompt")
        return list(lam)
    return [lam] * n


def _weights(sm: SteerableModel, lam: str | Mapping[str, float] | None) -> dict[str, float]:
    return parse_lambda(lam, sm.aspects) if lam else uniform_lambda(sm.aspects)


def steered_prompt_ids(sm: SteerableModel, prompt: str | Sequence[Mapping[str, str]],
                       lam: str | Mapping[str, float] | None) -> list[int]:
    """The prompt ids the model sees under `lam` (uniform over its aspects when None), as in training."""
    weights = _weights(sm, lam)
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return encode_prompt(sm.tokenizer, condition_prompt(messages, weights, sm.conditioning, sm.lambda_text))


@torch.no_grad()
def generate(sm: SteerableModel, prompts: Sequence[str | Sequence[Mapping[str, str]]],
             lam: LambdaArg | Sequence[LambdaArg] = None, *, max_new_tokens: int = 128, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 32) -> list[str]:
    """Replies to `prompts` under `lam` (uniform over the model's aspects when None).

    `lam` is one lambda for every prompt, or a list or tuple with one lambda per prompt, so replies under
    several lambdas share batches (a sweep over weights costs one pass over the pairs, not one per
    weight). Prompts are left-padded into batches of `batch_size`; greedy unless do_sample.
    """
    lams = _per_prompt(lam, len(prompts))
    torch.manual_seed(seed)
    tok = sm.tokenizer
    device = next(sm.model.parameters()).device
    sample = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {"do_sample": False}
    outputs = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=f"generating ({len(prompts)} prompts)", unit="batch",
                      leave=False, disable=True if len(prompts) <= batch_size else None):  # None: not on a non-TTY
        batch_lams = lams[start:start + batch_size]
        rows = [steered_prompt_ids(sm, p, lm) for p, lm in zip(prompts[start:start + batch_size], batch_lams)]
        width = max(map(len, rows))
        ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        inputs = {"input_ids": ids}
        if sm.conditioning == "embedding":  # [pad..., soft prompt, prompt], as in training
            vec = torch.tensor([[_weights(sm, lm)[a] for a in sm.aspects] for lm in batch_lams], device=device)
            prefix = lambda_prefix(sm.model, vec)
            embeds = sm.model.get_input_embeddings()(ids)
            pad = [width - len(r) for r in rows]
            inputs = {"inputs_embeds": torch.stack([torch.cat([e[:p], pre.to(e.dtype), e[p:]])
                                                    for e, pre, p in zip(embeds, prefix, pad)])}
            mask = torch.stack([torch.cat([m[:p], m.new_ones(prefix.shape[1]), m[p:]]) for m, p in zip(mask, pad)])
        with precision_context(sm.model):  # bf16 weights: autocast, fp32 LoRA weights cast once per call
            out = sm.model.generate(**inputs, attention_mask=mask, max_new_tokens=max_new_tokens,
                                    pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **sample)
        new_tokens = out if "inputs_embeds" in inputs else out[:, width:]  # generate returns only new ones then
        outputs += [tok.decode(o, skip_special_tokens=True).strip() for o in new_tokens]
    return outputs
