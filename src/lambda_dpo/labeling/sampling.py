"""Sample N replies per prompt with transformers' ``generate``: batched, seeded, one slot per reply.

Reply k of every prompt is sampled under slot ``k % len(slots)`` (`config.Slot`: its system prompt,
temperature and top-p). A batch is the prompts of one chunk (`LabelConfig.batch_size` prompts, fixed
by the input's order) under one reply index, left-padded, with torch's generator seeded from
(seed, chunk, reply index, attempt): the replies of a chunk are a function of the config and the
chunk alone, so a run resumed after an interruption samples exactly what an uninterrupted run does.

A reply ends at the tokenizer's end of sequence or end of turn (``<|im_end|>``, ``<|endoftext|>``
where the vocabulary has them); one that reaches `max_new_tokens` first is kept and marked
(``hit_max_new_tokens``). An empty reply is sampled again (a fresh seed per attempt) up to
`empty_retries` times; the prompt of one still empty is reported (`Sampled.empty`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Sequence

import torch

from ..models import load_model, load_tokenizer
from ..tokenization import encode_prompt
from .config import LabelConfig, Slot

__all__ = ["Reply", "Sampled", "Sampler", "with_system", "end_ids", "pick_device"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    """One sampled reply and how it was sampled (its ``meta`` entry in the record)."""

    text: str
    slot: int
    system: str | None
    temperature: float
    top_p: float
    new_tokens: int
    hit_max_new_tokens: bool

    def meta(self) -> dict:
        return {"slot": self.slot, "system": self.system, "temperature": self.temperature, "top_p": self.top_p,
                "new_tokens": self.new_tokens, "hit_max_new_tokens": self.hit_max_new_tokens}


@dataclass
class Sampled:
    """A chunk's replies: `replies[j]` the N replies of prompt j (None where one stayed empty)."""

    replies: list[list[Reply] | None]

    @property
    def empty(self) -> list[int]:
        return [j for j, r in enumerate(self.replies) if r is None]


def with_system(prompt: Sequence[dict[str, str]], system: str | None) -> list[dict[str, str]]:
    """The prompt under a slot's system prompt: added first, or appended to the prompt's own system message."""
    messages = [dict(m) for m in prompt]
    if system is None:
        return messages
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = f"{messages[0]['content']}\n\n{system}"
        return messages
    return [{"role": "system", "content": system}, *messages]


def end_ids(tokenizer) -> list[int]:
    """The token ids that end a reply: eos, and the end-of-turn markers the vocabulary has."""
    ids = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") % 2**63


def pick_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; any other name as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Sampler:
    """The sampling model of a label config, loaded on first use."""

    def __init__(self, cfg: LabelConfig):
        self.cfg = cfg
        self.model = None
        self.tokenizer = None

    def load(self) -> None:
        if self.model is not None:
            return
        self.tokenizer = load_tokenizer(self.cfg.model, trust_remote_code=self.cfg.trust_remote_code)
        self.model = load_model(self.cfg.model, dtype=self.cfg.dtype,
                                trust_remote_code=self.cfg.trust_remote_code).to(pick_device(self.cfg.device)).eval()
        self.ends = end_ids(self.tokenizer)
        log.info("sampling %d replies per prompt from %s (%s slot(s))", self.cfg.n_responses, self.cfg.model,
                 len(self.cfg.slots))

    def slot(self, k: int) -> tuple[int, Slot]:
        index = k % len(self.cfg.slots)
        return index, self.cfg.slots[index]

    def sample(self, prompts: Sequence[Sequence[dict[str, str]]], chunk: int) -> Sampled:
        """The N replies of each prompt of chunk number `chunk` (the same chunk always gets the same replies)."""
        self.load()
        per_k: list[list[Reply | None]] = []
        for k in range(self.cfg.n_responses):
            index, slot = self.slot(k)
            ids = [encode_prompt(self.tokenizer, with_system(p, slot.system)) for p in prompts]
            replies: list[Reply | None] = [None] * len(prompts)
            rows = list(range(len(prompts)))
            for attempt in range(self.cfg.empty_retries + 1):
                out = self._generate([ids[j] for j in rows], slot, _seed(self.cfg.seed, chunk, k, attempt))
                for j, (text, n_new, hit) in zip(rows, out):
                    if text:
                        replies[j] = Reply(text, index, slot.system, slot.temperature, slot.top_p, n_new, hit)
                rows = [j for j in rows if replies[j] is None]
                if not rows:
                    break
            per_k.append(replies)
        return Sampled([None if any(per_k[k][j] is None for k in range(len(per_k)))
                        else [per_k[k][j] for k in range(len(per_k))] for j in range(len(prompts))])

    @torch.no_grad()
    def _generate(self, rows: list[list[int]], slot: Slot, seed: int) -> list[tuple[str, int, bool]]:
        """One left-padded batch: (text, new tokens, hit max_new_tokens) per row."""
        tok, device = self.tokenizer, next(self.model.parameters()).device
        pad = tok.pad_token_id if tok.pad_token_id is not None else self.ends[0]
        width = max(map(len, rows))
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        sample = ({"do_sample": True, "temperature": float(slot.temperature), "top_p": float(slot.top_p), "top_k": 0}
                  if slot.temperature > 0 else {"do_sample": False})
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=self.cfg.max_new_tokens,
                                      pad_token_id=pad, eos_token_id=self.ends, **sample)
        results = []
        for row in out[:, width:].tolist():
            n_new = next((i + 1 for i, t in enumerate(row) if t in self.ends), None)
            hit = n_new is None
            n_new = len(row) if hit else n_new
            results.append((tok.decode(row[:n_new], skip_special_tokens=True).strip(), n_new, hit))
        return results
