"""Tokenised lists + their reference log-probs -> one training batch of tensors.

Per batch the collator draws one lambda per list from the lambda source (keyed by epoch and
dataset index, so draws survive resumption and do not depend on the number of processes), renders each prompt
under its lambda (conditioning), builds the mixed target p_lambda from the ratings (missing
aspects dropped, lambda renormalised), and lays the lists out for the shared-prompt forward.
Response ids and reference log-probs were computed once, before training.

It sits below both training (the Trainer's data collator) and evaluation (which renders the
held-out lists under a chosen lambda through the same collator), so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch.utils.data import Dataset

from .conditioning import LambdaText, conditioned_prompt_ids
from .lambdas import LambdaSource
from .layouts import Layout, build_batch
from .targets import aspect_targets, mix_targets, ratings_tensor
from .tokenization import TokenizedList


@dataclass(frozen=True)
class ScoredList:
    """A tokenised list with its reference log-probs ([N] fp32, unconditioned prompt).

    index: its position in the dataset; with the epoch it keys the list's lambda draw.
    """

    tokens: TokenizedList
    ref_logps: torch.Tensor
    index: int = 0


class ListDataset(Dataset):
    def __init__(self, items: Sequence[ScoredList]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> ScoredList:
        return self.items[i]


def pad_lists(rows: Sequence[torch.Tensor], n_max: int) -> torch.Tensor:
    """Ragged [N_b] tensors -> [B, n_max], zero padded."""
    out = torch.zeros(len(rows), n_max)
    for b, r in enumerate(rows):
        out[b, : r.numel()] = r
    return out


class ListCollator:
    """Callable for the DataLoader: list[ScoredList] -> dict of tensors (see keys below).

    Keys: policy_* (ScoringBatch fields for the conditioned prompts), ref_logps [B, Nmax],
    mask [B, Nmax] bool, target [B, Nmax] (p_lambda), valid [B] bool (lists with a target under
    their lambda), lam [B, K], aspect_target [B, Nmax, K], aspect_usable [B, K]. With `contrast`,
    B is twice the number of lists given (each list under two lambdas).
    """

    def __init__(self, tokenizer, aspects: Sequence[str], lambda_source: LambdaSource, conditioning: str,
                 rating_temperature: float = 1.0, layout: Layout = "prompt_cache", n_prefix: int = 0,
                 lambda_text: LambdaText | None = None, contrast: bool = False, contrast_candidates: int = 1):
        self.tokenizer, self.aspects = tokenizer, tuple(aspects)
        self.lambda_source, self.conditioning = lambda_source, conditioning
        self.tau, self.layout = rating_temperature, layout
        self.lambda_text = lambda_text or LambdaText()
        self.contrast = contrast  # each list twice per batch, under two different lambdas
        if contrast_candidates < 1:
            raise ValueError(f"contrast_candidates must be >= 1, got {contrast_candidates}")
        self.contrast_candidates = contrast_candidates
        self.epoch = 0  # set by the trainer at each epoch start
        self.n_prefix = n_prefix if conditioning == "embedding" else 0  # soft-prompt slots per row

    def draw(self, items: Sequence[ScoredList]) -> tuple[list[ScoredList], torch.Tensor]:
        """Each list's lambda [B, K]; with `contrast`, the lists again under a second, different
        lambda ([2B, K], the second copies after the first), so that within one step only lambda
        changes the target and what both lambdas share (e.g. a general pull towards short replies)
        cancels in the gradient. With `contrast_candidates` M > 1 the second lambda is, per list,
        the one of M candidate draws whose target p_b is farthest from p_a (total variation over the
        list's responses): pairs where lambda changes which reply is best, as far as the source allows."""
        keys = [(self.epoch, it.index) for it in items]
        lam = self.lambda_source.draw(keys)
        if not self.contrast:
            return list(items), lam
        other = self.lambda_source.draw_other(keys, lam)  # candidate 0: keyed as without candidates
        if self.contrast_candidates > 1:
            other = self._farthest(items, keys, lam, other)
        return [*items, *items], torch.cat([lam, other])

    def _farthest(self, items: Sequence[ScoredList], keys: list, lam: torch.Tensor, first: torch.Tensor
                  ) -> torch.Tensor:
        """Per list, of `first` and M - 1 more draws (keys (*key, -c)), the lambda [K] whose mixed
        target is farthest from p_a in total variation; ties keep the earliest candidate. -> [B, K]."""
        ratings, mask = ratings_tensor([it.tokens.source for it in items], self.aspects)
        p_k, usable = aspect_targets(ratings, mask, self.tau)
        p_a, _ = mix_targets(p_k, usable, lam)
        cands = [first] + [self.lambda_source.draw_other([(*k, -c) for k in keys], lam)
                           for c in range(1, self.contrast_candidates)]
        tv = torch.stack([0.5 * (mix_targets(p_k, usable, c)[0] - p_a).abs().sum(-1) for c in cands])  # [M, B]
        best = tv.argmax(dim=0)  # the first maximum
        return torch.stack([cands[m][b] for b, m in enumerate(best.tolist())])

    def __call__(self, items: Sequence[ScoredList], lam: torch.Tensor | None = None) -> dict:
        if lam is None:
            items, lam = self.draw(items)
        else:
            lam = lam.expand(len(items), -1)
        lists = [it.tokens for it in items]
        prompts = [conditioned_prompt_ids(self.tokenizer, tl, dict(zip(self.aspects, row.tolist())),
                                          self.conditioning, self.lambda_text) for tl, row in zip(lists, lam)]
        batch = build_batch(prompts, [tl.response_ids for tl in lists], layout=self.layout,
                            pad_id=self.tokenizer.pad_token_id or 0, n_prefix=self.n_prefix)
        ratings, mask = ratings_tensor([tl.source for tl in lists], self.aspects)
        p_k, usable = aspect_targets(ratings, mask, self.tau)
        target, valid = mix_targets(p_k, usable, lam)
        return {**batch.as_dict("policy_"), "ref_logps": pad_lists([it.ref_logps for it in items], batch.n_max),
                "mask": mask, "target": target, "valid": valid, "lam": lam, "aspect_target": p_k,
                "aspect_usable": usable}
