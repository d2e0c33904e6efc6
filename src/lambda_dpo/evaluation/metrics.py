"""Listwise ranking metrics: how well implicit rewards order responses, judged against ratings.

Pure functions on tensors. Layout (the same padded batch as ``lambda_dpo.losses``):
    scores:  ``[B, Nmax]`` float, the model's score per response (e.g. implicit reward, nats).
    ratings: ``[B, Nmax]`` float, one aspect's ratings (higher is better), NaN where missing.
    mask:    ``[B, Nmax]`` bool, True = real response; None means every entry is real.
1-D inputs (one list, ``[N]``) are accepted too and give a 0-d result.

A response whose rating is NaN (missing) is left out of that list's metric: ratings are never
invented. Each function returns one value per list, ``[B]`` float; lists with no real rated
response give NaN (use ``torch.nanmean`` to average). Ties in scores are broken by position
(lower index ranks first).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["top1_accuracy", "ndcg", "kendall_tau"]


def _prepare(scores: Tensor, ratings: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Batch the inputs, drop unrated responses from the mask, zero out everything not kept."""
    single = scores.dim() == 1
    if single:
        scores, ratings = scores.unsqueeze(0), ratings.unsqueeze(0)
        mask = None if mask is None else mask.unsqueeze(0)
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    ratings = ratings.to(torch.promote_types(ratings.dtype, scores.dtype))
    keep = mask.bool() & ~torch.isnan(ratings)
    return torch.where(keep, scores, 0.0), torch.where(keep, ratings, 0.0), keep, single


def _finish(x: Tensor, single: bool) -> Tensor:
    return x.squeeze(0) if single else x


def _rank_by_score(scores: Tensor, keep: Tensor) -> Tensor:
    """1-based rank of each kept response by score, descending, ties by index; ``[B, N]`` long."""
    n = scores.shape[-1]
    idx = torch.arange(n, device=scores.device)
    s_i, s_j = scores.unsqueeze(-1), scores.unsqueeze(-2)
    ahead = (s_j > s_i) | ((s_j == s_i) & (idx.unsqueeze(0) < idx.unsqueeze(1)))  # [B, i, j]
    return 1 + (ahead & keep.unsqueeze(-2)).sum(dim=-1)


def top1_accuracy(scores: Tensor, ratings: Tensor, mask: Tensor | None = None) -> Tensor:
    """1.0 if the highest-scored response has the maximal rating of its list, else 0.0.

    Ties in rating count as correct (any response sharing the top rating is a right answer).
    Returns ``[B]`` float; NaN for a list with no rated response.
    """
    s, r, keep, single = _prepare(scores, ratings, mask)
    top = s.masked_fill(~keep, float("-inf")).argmax(dim=-1, keepdim=True)
    r_max = r.masked_fill(~keep, float("-inf")).amax(dim=-1, keepdim=True)
    acc = (r.gather(-1, top) >= r_max).squeeze(-1).to(s.dtype)
    return _finish(torch.where(keep.any(dim=-1), acc, float("nan")), single)


def ndcg(scores: Tensor, ratings: Tensor, mask: Tensor | None = None, k: int | None = None) -> Tensor:
    """Normalised discounted cumulative gain of the order by score.

        DCG@k  = sum over responses with rank <= k of (2^r - 1) / log2(1 + rank)
        NDCG@k = DCG@k / IDCG@k,  IDCG@k = DCG@k of the order by rating (the best possible)

    rank is 1-based by score, descending. Ratings are assumed >= 0 (gains are then >= 0).
    A list whose rated responses all share one rating gets 1.0 (every order is ideal).
    k: cut-off (None = the whole list). Returns ``[B]`` float; NaN for a list with no rated
    response.
    """
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1 or None, got {k}")
    s, r, keep, single = _prepare(scores, ratings, mask)
    gain = torch.where(keep, torch.exp2(r) - 1.0, 0.0)
    cutoff = float("inf") if k is None else k

    def dcg(rank: Tensor) -> Tensor:
        disc = 1.0 / torch.log2(1.0 + rank.to(gain.dtype))
        return torch.where(keep & (rank <= cutoff), gain * disc, 0.0).sum(dim=-1)

    actual = dcg(_rank_by_score(s, keep))
    ideal = dcg(_rank_by_score(r, keep))
    r_hi = r.masked_fill(~keep, float("-inf")).amax(dim=-1)
    r_lo = r.masked_fill(~keep, float("inf")).amin(dim=-1)
    flat = r_hi == r_lo
    out = torch.where(flat, 1.0, actual / torch.where(flat, 1.0, ideal))
    return _finish(torch.where(keep.any(dim=-1), out, float("nan")), single)


def kendall_tau(scores: Tensor, ratings: Tensor, mask: Tensor | None = None) -> Tensor:
    """Kendall's tau-b between scores and ratings over each list's rated responses.

        tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2))

    with C / D the concordant / discordant pairs, n0 = n(n-1)/2, n1 the pairs tied in rating,
    n2 the pairs tied in score (same as scipy.stats.kendalltau's default). Returns ``[B]`` float,
    NaN where undefined: fewer than 2 rated responses, all ratings tied, or all scores tied.
    """
    s, r, keep, single = _prepare(scores, ratings, mask)
    n = s.shape[-1]
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=s.device), diagonal=1)
    pairs = upper & keep.unsqueeze(-1) & keep.unsqueeze(-2)  # each unordered pair once
    ds = torch.sign(s.unsqueeze(-1) - s.unsqueeze(-2))
    dr = torch.sign(r.unsqueeze(-1) - r.unsqueeze(-2))
    c_minus_d = torch.where(pairs, ds * dr, 0.0).sum(dim=(-2, -1))
    n0 = pairs.sum(dim=(-2, -1)).to(s.dtype)
    n1 = (pairs & (dr == 0)).sum(dim=(-2, -1)).to(s.dtype)
    n2 = (pairs & (ds == 0)).sum(dim=(-2, -1)).to(s.dtype)
    denom = (n0 - n1) * (n0 - n2)
    defined = denom > 0
    tau = c_minus_d / torch.sqrt(torch.where(defined, denom, 1.0))
    return _finish(torch.where(defined, tau, float("nan")), single)
