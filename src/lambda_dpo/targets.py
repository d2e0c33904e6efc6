"""Listwise targets: from ratings to a probability distribution over a list's responses.

docs/design.md, "Objective": for one list with ratings r[i, k] (response i, aspect k),

    p_k      = softmax_i(r[:, k] / tau)          per-aspect target
    p_lambda = sum_k lambda_k p_k                mixed target, lambda on the simplex

Missing ratings are never invented. An aspect is *usable* for a list only if every response of
that list has a rating for it; unusable aspects are dropped for that list and lambda is
renormalised over the aspects that remain. A list for which lambda puts all its weight on
unusable aspects gets no target (``valid`` is False) and must be left out by the caller.

Batch layout (shared with ``losses.py``): B lists padded to Nmax responses,
``mask [B, Nmax]`` bool (True = real response), targets ``[B, Nmax]`` with 0 on padding.
All functions here are pure tensor functions except ``ratings_tensor``, which reads
``PreferenceList`` objects.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from lambda_dpo.data.schema import PreferenceList

__all__ = ["ratings_tensor", "aspect_targets", "mix_targets"]


def ratings_tensor(
    lists: Sequence[PreferenceList],
    aspects: Sequence[str],
    dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """Pack the ratings of B lists into one padded tensor.

    Args:
        lists: B preference lists, with N_b responses each.
        aspects: the K aspect names, in the order of the last dimension of the result. An aspect
            a list does not carry at all is treated as missing for every response of that list.
        dtype: float dtype of the ratings (default: torch's default dtype).

    Returns:
        ratings: ``[B, Nmax, K]`` float, in the source's rating units; NaN where a rating is
            missing (None) and on padding. No value is ever filled in.
        mask: ``[B, Nmax]`` bool, True for the N_b real responses of list b (the first N_b).
    """
    dtype = dtype or torch.get_default_dtype()
    b, k = len(lists), len(aspects)
    n_max = max((lst.n for lst in lists), default=0)
    ratings = torch.full((b, n_max, k), float("nan"), dtype=dtype)
    mask = torch.zeros((b, n_max), dtype=torch.bool)
    for i, lst in enumerate(lists):
        mask[i, : lst.n] = True
        for j, aspect in enumerate(aspects):
            values = lst.ratings.get(aspect)
            if values is None:
                continue
            col = [float("nan") if v is None else float(v) for v in values]
            ratings[i, : len(col), j] = torch.tensor(col, dtype=dtype)
    return ratings, mask


def aspect_targets(ratings: Tensor, mask: Tensor, tau: float = 1.0) -> tuple[Tensor, Tensor]:
    """Per-aspect listwise targets p_k = softmax_i(r[:, k] / tau) over the real responses.

    Args:
        ratings: ``[B, Nmax, K]`` float, NaN where missing (values on padding are ignored).
        mask: ``[B, Nmax]`` bool, True = real response.
        tau: rating temperature, in rating units (> 0). A one-point rating gap multiplies the
            odds of the better response by exp(1 / tau); tau -> 0 gives a one-hot target on the
            best-rated response(s), tau -> inf the uniform target.

    Returns:
        p: ``[B, Nmax, K]``; for each usable (b, k), a distribution over the real responses of
            list b; 0 on padding and in every column of an unusable aspect. Never NaN.
        usable: ``[B, K]`` bool; aspect k is usable for list b iff every real response of b has
            a (non-NaN) rating for k, and b has at least one real response.
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    mask3 = mask.unsqueeze(-1)  # [B, Nmax, 1]
    rated = ~torch.isnan(ratings)
    usable = (rated | ~mask3).all(dim=1) & mask.any(dim=1, keepdim=True)  # [B, K]
    keep = mask3 & usable.unsqueeze(1)  # [B, Nmax, K]: real response of a usable aspect
    logits = torch.where(keep, ratings / tau, float("-inf"))
    # Columns with nothing to keep would be all -inf (softmax -> NaN): make them finite, then zero.
    logits = torch.where(usable.unsqueeze(1), logits, 0.0)
    p = torch.where(keep, torch.softmax(logits, dim=1), 0.0)
    return p, usable


def mix_targets(p: Tensor, usable: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
    """Mix per-aspect targets with lambda, renormalised over each list's usable aspects.

    For list b: lam'_k = lam_k * usable_k / sum_j(lam_j * usable_j), p_lambda = sum_k lam'_k p_k.
    If every aspect is usable and lam sums to 1, lam' = lam.

    Args:
        p: ``[B, Nmax, K]`` per-aspect targets from ``aspect_targets``.
        usable: ``[B, K]`` bool from ``aspect_targets``.
        lam: ``[B, K]`` or ``[K]`` (broadcast over the batch), non-negative weights on the
            simplex. (Only ratios matter: the weights are renormalised per list.)

    Returns:
        p_lambda: ``[B, Nmax]``, a distribution over each valid list's real responses, 0 on
            padding; a zero row for lists that are not valid.
        valid: ``[B]`` bool, False where lambda gives zero weight to every usable aspect of the
            list (it has no target under this lambda; the caller must mask it out).
    """
    lam = torch.as_tensor(lam, dtype=p.dtype, device=p.device)
    if lam.dim() == 1:
        lam = lam.unsqueeze(0)
    lam = lam.expand(p.shape[0], p.shape[-1])
    if torch.isnan(lam).any() or (lam < 0).any():
        raise ValueError("lambda must be non-negative (a point on the simplex)")
    w = torch.where(usable, lam, 0.0)
    mass = w.sum(dim=-1)  # [B]
    valid = mass > 0
    w = w / torch.where(valid, mass, 1.0).unsqueeze(-1)
    p_lambda = torch.einsum("bnk,bk->bn", p, w)
    return p_lambda, valid
