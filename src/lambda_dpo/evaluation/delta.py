"""Delta between two lambdas and the listwise baselines: the figures of `lambda-dpo evaluate --steering`.

Generation-free (teacher-forced on held-out lists):
- `lambda_deltas`: Delta_i = log pi(y_i | x, lambda_a) - log pi(y_i | x, lambda_b) per reply (nats).
  The reference cancels, so Delta is exactly 0 for a model that never sees lambda.
- `delta_summary`: mean |Delta| and the within-list Spearman of Delta with r_a - r_b.

Listwise baselines (what the steered model's top-1 must beat):
- `baseline_top1`: top-1 accuracy of a random pick, of the shortest and of the longest reply, with
  the top-1 definition of `evaluation.metrics.top1_accuracy` (ties in rating count as correct).

Spearman's rho uses average ranks for ties (`ranks.spearman`). The steering protocol, which
generates and judges replies along an edge of the simplex, is `evaluation.protocol`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import torch
from torch import Tensor

from ..lambdas import parse_lambda
from ..wrappers import eval_mode
from ..batching import ListCollator, ScoredList
from .listwise import implicit_rewards
from .metrics import top1_accuracy
from .ranks import spearman

__all__ = ["lambda_deltas", "delta_summary", "word_count", "baseline_top1", "BASELINE_KINDS"]

BASELINE_KINDS = ("random", "shortest", "longest")


# ------------------------------------------------------------------------------------------------
# Generation-free: Delta between two lambdas
# ------------------------------------------------------------------------------------------------

def _lam_vector(lam: Tensor | Mapping[str, float] | str, aspects: Sequence[str]) -> Tensor:
    """lambda as a float [K] tensor in the collator's aspect order (mappings / strings normalised)."""
    if isinstance(lam, Tensor):
        if lam.shape != (len(aspects),):
            raise ValueError(f"lambda tensor must have shape [{len(aspects)}] (aspects {list(aspects)}), "
                             f"got {tuple(lam.shape)}")
        return lam.float()
    weights = parse_lambda(lam, aspects)
    return torch.tensor([weights[a] for a in aspects])


@torch.no_grad()
def lambda_deltas(model, collator: ListCollator, items: Sequence[ScoredList],
                  lam_a: Tensor | Mapping[str, float] | str, lam_b: Tensor | Mapping[str, float] | str,
                  batch_size: int = 8, chunk_size: int = 1024) -> Tensor:
    """Delta_i = log pi(y_i | x, c(lam_a)) - log pi(y_i | x, c(lam_b)) for every reply of `items`.

    Args:
        model: the policy (with its adapter / lambda embedding, as trained).
        collator: renders the prompt under lambda (its `conditioning` and `aspects` are used).
        items: L tokenised lists; their `ref_logps` are not used.
        lam_a, lam_b: lambda as a [K] tensor over `collator.aspects`, or a mapping / "a=0.7,b=0.3"
            string (normalised; unnamed aspects 0).
        batch_size, chunk_size: as in `listwise.implicit_rewards`.

    Returns: ``[L, Nmax]`` float32, nats (summed log-probs over each reply's tokens), 0 at padding.
    Computed as the difference of two `implicit_rewards` calls with score_type "sum" on the items
    with their reference log-probs replaced by 0: the reference cancels in the difference, so it
    need not exist, and the result is exactly 0 when the conditioning is "none" (the two prompts
    are identical). The model is put in eval mode for the call and restored afterwards.
    """
    if not items:
        raise ValueError("lambda_deltas needs at least one list")
    vec_a, vec_b = (_lam_vector(lam, collator.aspects) for lam in (lam_a, lam_b))
    unreferenced = [dataclasses.replace(it, ref_logps=torch.zeros(len(it.tokens.response_ids))) for it in items]
    with eval_mode(model):
        s_a = implicit_rewards(model, collator, unreferenced, vec_a, batch_size, chunk_size, score_type="sum")
        s_b = implicit_rewards(model, collator, unreferenced, vec_b, batch_size, chunk_size, score_type="sum")
    return s_a - s_b


def delta_summary(delta: Tensor, ratings_a: Tensor, ratings_b: Tensor, mask: Tensor | None = None) -> dict:
    """How large Delta is, and whether it orders replies the way the ratings differ.

    Args:
        delta: ``[L, Nmax]`` from `lambda_deltas` (nats).
        ratings_a, ratings_b: ``[L, Nmax]`` ratings of the aspects lam_a and lam_b favour (e.g. the
            ratings of aspect a when lam_a is a's vertex); NaN = missing.
        mask: ``[L, Nmax]`` bool, True = real reply; None = every entry is real.

    Returns {"mean_abs_delta": mean |Delta| over real replies (nats; NaN if none),
             "replies": number of real replies,
             "spearman": mean over lists of the within-list Spearman rho (average ranks for ties)
                 between Delta and r_a - r_b, over the list's real replies rated on both aspects;
                 NaN if no list qualifies,
             "lists": number of lists in that mean (lists with fewer than 2 such replies, or where
                 Delta or r_a - r_b is constant, are skipped)}.
    """
    if not (delta.shape == ratings_a.shape == ratings_b.shape):
        raise ValueError(f"delta {tuple(delta.shape)}, ratings_a {tuple(ratings_a.shape)} and ratings_b "
                         f"{tuple(ratings_b.shape)} must have the same [L, Nmax] shape")
    mask = torch.ones_like(delta, dtype=torch.bool) if mask is None else mask.bool()
    n_real = int(mask.sum())
    mean_abs = delta.abs()[mask].double().mean().item() if n_real else float("nan")
    diff = ratings_a.double() - ratings_b.double()
    rhos = []
    for d_row, r_row, m_row in zip(delta.double().tolist(), diff.tolist(), mask.tolist()):
        pairs = [(d, r) for d, r, m in zip(d_row, r_row, m_row) if m and not math.isnan(r)]
        rho = spearman([d for d, _ in pairs], [r for _, r in pairs])
        if not math.isnan(rho):
            rhos.append(rho)
    return {"mean_abs_delta": mean_abs, "replies": n_real,
            "spearman": sum(rhos) / len(rhos) if rhos else float("nan"), "lists": len(rhos)}


# ------------------------------------------------------------------------------------------------
# Listwise baselines
# ------------------------------------------------------------------------------------------------

def word_count(text: str) -> int:
    """Whitespace-separated words of a reply (``len(text.split())``)."""
    return len(text.split())


def _replies(x) -> Sequence[str]:
    """The reply texts of a ScoredList, TokenizedList, PreferenceList or a plain sequence of strings."""
    if hasattr(x, "tokens"):
        x = x.tokens
    if hasattr(x, "source"):
        x = x.source
    if hasattr(x, "responses"):
        x = x.responses
    if isinstance(x, str) or not all(isinstance(r, str) for r in x):
        raise TypeError("expected a ScoredList, TokenizedList, PreferenceList or a sequence of reply strings")
    return x


def baseline_top1(items_or_lists: Sequence, ratings: Tensor, mask: Tensor | None = None,
                  kind: str = "random") -> Tensor:
    """Top-1 accuracy per list of a rating-blind pick, with `metrics.top1_accuracy`'s definition.

    Args:
        items_or_lists: L lists (ScoredList, TokenizedList, PreferenceList, or sequences of reply
            strings), in the order of the rows of `ratings`.
        ratings: ``[L, Nmax]`` one aspect's ratings, NaN = missing.
        mask: ``[L, Nmax]`` bool, True = real reply; None = the first len(list) entries of a row.
        kind: "shortest" / "longest": pick the reply with the fewest / most whitespace words
            (ties in length: the first index); "random": a uniformly random pick, reported as its
            expected accuracy.

    As in `top1_accuracy`, only real replies with a rating take part (an unrated reply is never
    picked), and a pick is correct when its rating equals the list's maximum (ties count as
    correct), so "random" = (#replies with the maximal rating) / (#rated replies).

    Returns ``[L]`` float (fraction in [0, 1]); NaN for a list with no rated reply. Average with
    ``torch.nanmean``.
    """
    if kind not in BASELINE_KINDS:
        raise ValueError(f"kind must be one of {BASELINE_KINDS}, got {kind!r}")
    replies = [_replies(x) for x in items_or_lists]
    if ratings.dim() != 2 or ratings.shape[0] != len(replies):
        raise ValueError(f"ratings must be [L={len(replies)}, Nmax], got {tuple(ratings.shape)}")
    n_max = ratings.shape[1]
    if any(len(r) > n_max for r in replies):
        raise ValueError(f"a list has more replies than ratings has columns ({n_max})")
    real = torch.tensor([[j < len(r) for j in range(n_max)] for r in replies], dtype=torch.bool)
    mask = real if mask is None else mask.bool() & real
    ratings = ratings.double()
    if kind == "random":
        keep = mask & ~torch.isnan(ratings)
        r_max = ratings.masked_fill(~keep, float("-inf")).amax(dim=-1, keepdim=True)
        n_top = (keep & (ratings == r_max)).sum(-1).double()
        n_kept = keep.sum(-1).double()
        return torch.where(n_kept > 0, n_top / n_kept.clamp(min=1), float("nan"))
    words = torch.tensor([[float(word_count(r[j])) if j < len(r) else 0.0 for j in range(n_max)] for r in replies],
                         dtype=torch.double)
    scores = -words if kind == "shortest" else words  # argmax takes the first index among equal scores
    return top1_accuracy(scores, ratings, mask)
