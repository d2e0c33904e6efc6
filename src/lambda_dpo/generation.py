"""Generate from a trained lambda-DPO model under a chosen lambda, with the training conditioning.

`generate` writes lambda into the prompt as training did. `generate_mixed` decodes greedily by mixing the
vertices, log-linearly and token by token. For DPO-style training, the policy that is optimal for the
reward sum_k lambda_k r_k is, up to normalisation, pi_ref * prod_k (pi_k / pi_ref)^lambda_k =
prod_k pi_k^lambda_k (the weights sum to 1), where pi_k is the policy for aspect k alone. A
lambda-conditioned model holds every pi_k: it is the model given vertex e_k's text. Mixed decoding
applies that identity one token at a time, as decoding-time multi-objective alignment does (Shi et al.
2024, "Decoding-Time Language Model Alignment with Multiple Objectives"): the next token maximises

    sum_k lambda_k * log pi(t | vertex k's prompt, y_<t)

over the aspects with lambda_k > 0. The model reads only whole sentences (each vertex's text); lambda
enters as a number in the mixture, so a weight training never drew is no different from one it did.
Cost: one sequence per aspect with a positive weight, decoded in one batch with a shared KV cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from .conditioning import LambdaText, condition_prompt, lambda_prefix, load_lambda_embedding
from .lambdas import parse_lambda, uniform_lambda
from .logprobs import cache_argument
from .saved_model import base_model_source, read_model_meta, saved_dtype, saved_lambda_text
from .models import load_model, load_tokenizer
from .precision import precision_context
from .tokenization import encode_prompt
from .training.settings import saved_settings
from .wrappers import unwrap_model


logger = logging.getLogger(__name__)


@dataclass
class SteerableModel:
    model: torch.nn.Module
    tokenizer: object
    aspects: tuple[str, ...]
    conditioning: str
    lambda_text: LambdaText = field(default_factory=LambdaText)


TRAINED_KERNEL = "trained"


def load_steerable(model_dir: str | Path, *, trust_remote_code: bool = False,
                   attn_implementation: str | None = TRAINED_KERNEL) -> SteerableModel:
    """A model saved by `lambda-dpo train` (adapter or full weights) with its aspects and conditioning
    (the directory's layout: `saved_model`).

    attn_implementation: the attention kernel. "trained" (default): the one training ran with (its saved
    settings), so replies match what `lambda-dpo evaluate` and the demo measured: in bf16, eager and sdpa
    attention round differently, and greedy replies can flip on a near-tie. None: transformers' default;
    or a name transformers knows ("eager", "sdpa", ...)."""
    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    if attn_implementation == TRAINED_KERNEL:
        attn_implementation = saved_settings(model_dir).attn_implementation
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


def with_text(model, like: SteerableModel) -> SteerableModel:
    """`model` given exactly `like`'s lambda text (prompt conditioning, the same rendering): a control that
    reads the same system text as the steered model `like`."""
    return replace(like, model=model, conditioning="prompt")


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


def _left_padded(rows: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows -> (ids, attention mask), both [len(rows), longest row], padded on the left for generation."""
    width = max(map(len, rows))
    ids = torch.tensor([[pad_id] * (width - len(r)) + list(r) for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


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
        ids, mask = _left_padded(rows, tok.pad_token_id, device)
        width = ids.shape[1]
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


def _rows(sm: SteerableModel, prompts: Sequence,
          lams: Sequence[LambdaArg]) -> tuple[list[list[int]], list[int], list[float]]:
    """Per (prompt, aspect with a positive weight): the prompt ids under that aspect's vertex, the prompt's
    index and the aspect's weight."""
    ids, owner, weight = [], [], []
    for i, (prompt, lam) in enumerate(zip(prompts, lams)):
        for aspect, w in _weights(sm, lam).items():
            if w > 0:
                ids.append(steered_prompt_ids(sm, prompt, {a: float(a == aspect) for a in sm.aspects}))
                owner.append(i)
                weight.append(w)
    return ids, owner, weight


@torch.no_grad()
def generate_mixed(sm: SteerableModel, prompts: Sequence[str | Sequence[Mapping[str, str]]],
                   lam: LambdaArg | Sequence[LambdaArg] = None, *, max_new_tokens: int = 128,
                   batch_size: int = 32) -> list[str]:
    """Greedy replies to `prompts` under `lam` by mixing the vertices' next-token log-probs (the module docstring).

    `lam` is one lambda for every prompt or one per prompt, as in `generate`. At a vertex it computes
    `generate`'s greedy reply under that vertex (in float32; in bf16 the batches differ, and rounding can flip
    a near-tie). Plain greedy: the model's generation_config processors (repetition penalty and the like),
    which `generate` applies, are not (a warning names them). Needs prompt conditioning (the vertices are
    texts). batch_size counts prompts; each takes one row per aspect with a positive weight.
    """
    if sm.conditioning != "prompt":
        raise ValueError(f"mixed decoding mixes the vertices' prompts and needs conditioning: prompt, "
                         f"not {sm.conditioning!r}")
    config = getattr(sm.model, "generation_config", None)
    ignored = {k: getattr(config, k, None) for k, plain in _PLAIN_GREEDY.items()
               if getattr(config, k, None) not in (None, plain, [])}
    if ignored:
        logger.warning("mixed decoding is plain greedy: it does not apply the generation_config's %s", ignored)
    lams = _per_prompt(lam, len(prompts))
    outputs = []
    for start in range(0, len(prompts), batch_size):
        outputs += _decode_mixed(sm, prompts[start:start + batch_size], lams[start:start + batch_size], max_new_tokens)
    return outputs


# generation_config settings that change greedy decoding in `generate`, at the value that leaves it plain
# (None or an empty list leave it plain too)
_PLAIN_GREEDY = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_new_tokens": 0, "min_length": 0,
                 "suppress_tokens": None, "begin_suppress_tokens": None, "bad_words_ids": None,
                 "forced_bos_token_id": None, "forced_eos_token_id": None}


def _decode_mixed(sm: SteerableModel, prompts: Sequence, lams: Sequence[LambdaArg], max_new_tokens: int) -> list[str]:
    tok, model = sm.tokenizer, sm.model
    device = next(model.parameters()).device
    rows, owner, weight = _rows(sm, prompts, lams)
    ids, mask = _left_padded(rows, tok.pad_token_id, device)
    owner_t = torch.tensor(owner, device=device)
    weight_t = torch.tensor(weight, device=device, dtype=torch.float32)[:, None]
    n = len(prompts)
    new = torch.full((n, max_new_tokens), tok.pad_token_id, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    base = unwrap_model(model)
    cache, cache_kw, step_ids = DynamicCache(config=base.config), cache_argument(base), ids  # filled in place
    with precision_context(model):
        for t in range(max_new_tokens):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1]:]  # left padding does not count
            out = model(input_ids=step_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                        logits_to_keep=1, **{cache_kw: cache})
            if cache.get_seq_length() != mask.shape[1]:  # e.g. a model that builds a cache of its own
                raise RuntimeError("mixed decoding: the model did not fill the key/value cache it was given "
                                   f"({cache.get_seq_length()} of {mask.shape[1]} positions)")
            logps = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [rows, V]
            mixed = torch.zeros(n, logps.shape[-1], device=device).index_add_(0, owner_t, weight_t * logps)
            nxt = torch.where(done, torch.full_like(done, tok.pad_token_id, dtype=torch.long), mixed.argmax(-1))
            new[:, t] = nxt
            done |= nxt == tok.eos_token_id
            if bool(done.all()):
                break
            step_ids = nxt[owner_t][:, None]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
    return [tok.decode(row, skip_special_tokens=True).strip() for row in new]


DECODINGS = {"prompt": generate, "mixed": generate_mixed}
"""How a model generates under lambda, by name: "prompt" writes lambda's text into the prompt (`generate`);
"mixed" mixes the vertices' next-token log-probs with lambda's weights (`generate_mixed`). Each takes
(sm, prompts, lam, max_new_tokens=, batch_size=) and returns one reply per prompt."""


def check_decoding(decoding: str) -> None:
    """Raise ValueError naming the choices when `decoding` is not one of DECODINGS."""
    if decoding not in DECODINGS:
        raise ValueError(f"decoding {decoding!r} is not one of {tuple(DECODINGS)}")
