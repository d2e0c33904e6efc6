"""Listwise preference losses on implicit rewards: lambda-DPO and the baselines it is compared to.

Pure functions on tensors: no model, no I/O (docs/design.md: "Objective"; a new loss:
"Adding a loss").

Batch layout shared by every function here:
    scores: ``[B, Nmax]`` float, implicit rewards s_i = log pi(y_i|x) - log pi_ref(y_i|x), in nats
        (see ``sequence_scores``).
    target: ``[B, Nmax]`` float, a probability distribution over the real responses of each list
        (e.g. p_lambda from ``targets.mix_targets``), 0 on padding.
    mask:   ``[B, Nmax]`` bool, True = real response.
    beta:   DPO temperature (dimensionless; multiplies nats).

Padded entries are ignored completely: whatever their score or target (huge, -inf, NaN), they
change neither the loss nor the gradients of real entries, and receive a zero gradient.
Every loss returns the per-list loss ``[B]`` in nats; the caller reduces (so it can weight lists
or mask out lists without a target).

Ties: where a loss needs an order or an argmax (best/worst, Plackett-Luce, LiPO ranks), ties are
broken by position (lower index first), so those losses are invariant to permuting the responses
only when the relevant values are distinct.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "lambda_dpo_loss",
    "dpo_best_worst_loss",
    "dpo_all_pairs_loss",
    "plackett_luce_loss",
    "lipo_lambda_loss",
    "lambda_contrast_loss",
    "LOSSES",
    "SCORE_TYPES",
    "sequence_scores",
    "listwise_stats",
    "target_entropy",
]


def _clean(scores: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Scores and target with padding replaced by 0 (so no inf/NaN can leak through products)."""
    mask = mask.bool()
    return torch.where(mask, scores, 0.0), torch.where(mask, target, 0.0)


def _pair_terms(scores: Tensor, target: Tensor, mask: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """For every ordered pair (i, j): -log sigmoid(beta (s_i - s_j)) and whether target_i > target_j.

    Returns ``nll [B, N, N]`` and ``preferred [B, N, N]`` bool (both real, target_i > target_j).
    """
    s, t = _clean(scores, target, mask)
    nll = -F.logsigmoid(beta * (s.unsqueeze(-1) - s.unsqueeze(-2)))
    pair_mask = mask.unsqueeze(-1) & mask.unsqueeze(-2)
    preferred = (t.unsqueeze(-1) > t.unsqueeze(-2)) & pair_mask
    return nll, preferred


def lambda_dpo_loss(scores: Tensor, target: Tensor, mask: Tensor, beta: float) -> Tensor:
    """lambda-DPO: cross-entropy between the target and the softmax of the scaled rewards.

        L = - sum_i p_i log softmax(beta * s)_i        (sum over the real responses)

    The loss is linear in the target, so sum_k lambda_k L(p_k) = L(sum_k lambda_k p_k): compute it
    once on p_lambda. Gradient: dL/ds_i = beta * (softmax(beta * s)_i - p_i) when p sums to 1.
    For N = 2 and p = (1, 0) it is DPO: -log sigmoid(beta * (s_1 - s_2)).
    A list whose target row is all zero (no target) has loss 0.

    Args: see module docstring. Returns: ``[B]`` loss per list (nats).
    """
    s, p = _clean(scores, target, mask)
    logp = torch.log_softmax((beta * s).masked_fill(~mask, float("-inf")), dim=-1)
    return -(p * torch.where(mask, logp, 0.0)).sum(dim=-1)


def dpo_best_worst_loss(scores: Tensor, target: Tensor, mask: Tensor, beta: float) -> Tensor:
    """DPO on one pair per list: the best vs. the worst response under the target.

        L = -log sigmoid(beta * (s_best - s_worst)),  best/worst = argmax/argmin of target (real)

    What the lambda-DPO paper compares against. Returns 0 for a list whose target is flat over
    its real responses (no preference). Ties for best/worst go to the lowest index.

    Args: see module docstring. Returns: ``[B]`` loss per list (nats).
    """
    s, t = _clean(scores, target, mask)
    best = t.masked_fill(~mask, float("-inf")).argmax(dim=-1, keepdim=True)
    worst = t.masked_fill(~mask, float("inf")).argmin(dim=-1, keepdim=True)
    has_pref = (t.gather(-1, best) > t.gather(-1, worst)).squeeze(-1)
    margin = (s.gather(-1, best) - s.gather(-1, worst)).squeeze(-1)
    return torch.where(has_pref, -F.logsigmoid(beta * margin), 0.0)


def dpo_all_pairs_loss(scores: Tensor, target: Tensor, mask: Tensor, beta: float) -> Tensor:
    """DPO averaged over every pair the target orders.

        L = mean over pairs (i, j) with target_i > target_j of -log sigmoid(beta * (s_i - s_j))

    Tied pairs are skipped; a list with no ordered pair (flat target) has loss 0.

    Args: see module docstring. Returns: ``[B]`` loss per list (nats).
    """
    nll, preferred = _pair_terms(scores, target, mask, beta)
    total = torch.where(preferred, nll, 0.0).sum(dim=(-2, -1))
    count = preferred.sum(dim=(-2, -1))
    return total / count.clamp(min=1).to(total.dtype)


def plackett_luce_loss(scores: Tensor, target: Tensor, mask: Tensor, beta: float) -> Tensor:
    """Plackett-Luce / ListMLE over the order given by the target.

    Sort the real responses by target, descending (ties broken by index, lower first), giving
    s_(1), ..., s_(N); then

        L = - sum_{k=1}^{N} [ beta s_(k) - logsumexp_{j >= k} beta s_(j) ]

    i.e. the negative log-likelihood of that full ranking under a Plackett-Luce model with
    utilities beta * s. For N = 2 and target (1, 0) it is DPO. A flat target still yields the
    index order (there is no "no preference" case here).

    Args: see module docstring. Returns: ``[B]`` loss per list (nats).
    """
    s, t = _clean(scores, target, mask)
    # Padding sorts last; the stable sort keeps index order among ties.
    order = t.masked_fill(~mask, float("-inf")).sort(dim=-1, descending=True, stable=True).indices
    z = beta * s.gather(-1, order)  # [B, N] utilities in target order
    m = mask.gather(-1, order)  # real entries first
    n = z.shape[-1]
    idx = torch.arange(n, device=z.device)
    later = idx.unsqueeze(0) >= idx.unsqueeze(1)  # [k, j]: j >= k
    # Real k: sum over real j >= k. Padded k: only j = k, which keeps every row finite.
    allowed = (later & m.unsqueeze(-2)) | torch.eye(n, dtype=torch.bool, device=z.device)
    tails = torch.logsumexp(z.unsqueeze(-2).masked_fill(~allowed, float("-inf")), dim=-1)  # [B, N]
    return -torch.where(m, z - tails, 0.0).sum(dim=-1)


def lipo_lambda_loss(scores: Tensor, target: Tensor, mask: Tensor, beta: float) -> Tensor:
    """LiPO-lambda (Liu et al. 2024): pairwise logistic loss with LambdaRank weights.

        L = sum over pairs (i, j) with target_i > target_j of
            Delta_ij * -log sigmoid(beta * (s_i - s_j)),
        Delta_ij = |G_i - G_j| * |1/D(tau_i) - 1/D(tau_j)|,

    with label gain G_i = 2^psi_i - 1, discount D(t) = log2(1 + t), and tau_i the 1-based rank of
    response i by score, descending, among the real responses (ties by index), computed without
    gradient (the weights are piecewise constant in s).

    Choice of label: psi_i = N * target_i, N the number of real responses of the list. LiPO uses
    raw label scores; our targets are distributions whose scale shrinks with N, so scaling by N
    makes a uniform target psi = 1 for every N, keeps the order of the target, and puts a one-hot
    target at psi_best = N. Flat targets give no ordered pair and loss 0. The loss is a sum over
    pairs (not a mean), as in LiPO.

    Args: see module docstring. Returns: ``[B]`` loss per list (nats).
    """
    nll, preferred = _pair_terms(scores, target, mask, beta)
    s, t = _clean(scores, target, mask)
    with torch.no_grad():
        n_real = mask.sum(dim=-1, keepdim=True).to(t.dtype)
        gain = torch.exp2(n_real * t) - 1.0
        sd = s.detach()
        idx = torch.arange(s.shape[-1], device=s.device)
        # ahead[b, i, j]: j ranks ahead of i (higher score, or equal score and lower index)
        ahead = (sd.unsqueeze(-2) > sd.unsqueeze(-1)) | (
            (sd.unsqueeze(-2) == sd.unsqueeze(-1)) & (idx.unsqueeze(0) < idx.unsqueeze(1))
        )
        rank = 1 + (ahead & mask.unsqueeze(-2)).sum(dim=-1).to(t.dtype)  # [B, N], 1-based
        inv_discount = 1.0 / torch.log2(1.0 + rank)
        delta = (gain.unsqueeze(-1) - gain.unsqueeze(-2)).abs() * (
            inv_discount.unsqueeze(-1) - inv_discount.unsqueeze(-2)
        ).abs()
    return torch.where(preferred, delta * nll, 0.0).sum(dim=(-2, -1))


LOSSES: dict[str, Callable[[Tensor, Tensor, Tensor, float], Tensor]] = {
    "lambda_dpo": lambda_dpo_loss,
    "dpo_best_worst": dpo_best_worst_loss,
    "dpo_all_pairs": dpo_all_pairs_loss,
    "plackett_luce": plackett_luce_loss,
    "lipo_lambda": lipo_lambda_loss,
}

# The implicit rewards `sequence_scores` computes: summed response log-probs or their per-token mean.
SCORE_TYPES = ("sum", "mean")


def sequence_scores(
    policy_logps: Tensor,
    reference_logps: Tensor,
    n_tokens: Tensor | int,
    score_type: str = "sum",
) -> Tensor:
    """Implicit reward per response from summed log-probs.

    Args:
        policy_logps: log pi_theta(y | x, c(lambda)), summed over response tokens (nats); any shape.
        reference_logps: log pi_ref(y | x), summed over response tokens (nats); same shape.
        n_tokens: number of response tokens per response (broadcastable), used by "mean".
        score_type: "sum" -> policy - reference (the paper's formula, nats per response);
            "mean" -> (policy - reference) / n_tokens (nats per token; the authors' code; needs a
            much larger beta). Counts of 0 (padding) are treated as 1, so padding stays finite.

    Returns: scores with the broadcast shape of the inputs.
    """
    diff = policy_logps - reference_logps
    if score_type == "sum":
        return diff
    if score_type == "mean":
        n = torch.as_tensor(n_tokens, device=diff.device).to(diff.dtype).clamp(min=1)
        return diff / n
    raise ValueError(f"score_type must be 'sum' or 'mean', got {score_type!r}")


def best_reply_nll(policy_logps: Tensor, n_tokens: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Per-token negative log-likelihood of each list's best reply under its target (RPO's term).

    Args:
        policy_logps: [B, N] summed log pi_theta(y_i | x, c(lambda)) (nats).
        n_tokens: [B, N] response token counts.
        target: [B, N] p_lambda; the best reply is its argmax over real responses (first on ties).
        mask: [B, N] bool, real responses.

    Returns: [B] nats per token. Added as `rpo_alpha * nll` it pulls the policy towards writing,
    under lambda's text, the reply that lambda prefers (Pang et al. 2024, TRL's `rpo_alpha`).
    """
    best = target.masked_fill(~mask, float("-inf")).argmax(dim=-1, keepdim=True)
    n = n_tokens.gather(-1, best).squeeze(-1).to(policy_logps.dtype).clamp(min=1)
    return -policy_logps.gather(-1, best).squeeze(-1) / n


def lambda_contrast_loss(scores_a: Tensor, scores_b: Tensor, target_a: Tensor, target_b: Tensor, mask: Tensor,
                         beta: float) -> Tensor:
    """The relative term of lambda-contrast: each list under two lambdas, a and b, fitted on what
    differs between them only.

        Delta_i = s_i(a) - s_i(b) = log pi(y_i | x, c(a)) - log pi(y_i | x, c(b))   (the reference cancels)
        q_i     = p_a,i / p_b,i, normalised over the list's real responses
        L       = - sum_i q_i log softmax(beta * Delta)_i

    Why this target: lambda-DPO's loss under lambda is minimised by beta * s(lambda) = log p_lambda + c,
    so at both optima beta * Delta = log p_a - log p_b + c: this term has the same minimiser as the
    two listwise terms, but its gradient carries nothing that a and b share (adding the same
    function of y to s(a) and s(b) leaves it unchanged), e.g. a pull towards short replies that
    most lambdas agree on. A list where either target is zero at a real response (an aspect with no
    usable rating) has no ratio there: such lists get loss 0 (see `valid` below).

    Args:
        scores_a: ``[B, Nmax]`` implicit rewards of B lists under a (nats).
        scores_b: ``[B, Nmax]`` implicit rewards of the same B lists under b (nats).
        target_a: ``[B, Nmax]`` p_a (sums to 1 over the real responses).
        target_b: ``[B, Nmax]`` p_b (sums to 1 over the real responses).
        mask: ``[B, Nmax]`` bool, real responses.
        beta: as in `lambda_dpo_loss`.

    Returns: ``[B]`` loss per list (nats).
    """
    mask = mask.bool()
    valid = ((target_a > 0) & (target_b > 0) | ~mask).all(dim=-1)  # a ratio at every real response
    log_ratio = torch.where(mask & valid[:, None], target_a.clamp(min=1e-30).log() - target_b.clamp(min=1e-30).log(),
                            float("-inf"))
    q = torch.where(valid[:, None], torch.softmax(log_ratio, dim=-1).nan_to_num(0.0), 0.0)
    return lambda_dpo_loss(scores_a - scores_b, q, mask, beta)


@torch.no_grad()
def listwise_stats(scores: Tensor, target: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Per-list statistics for logging (no gradient).

    Returns a dict of ``[B]`` tensors:
        "top1_accuracy": 1.0 if the highest-scored real response has the highest target (ties in
            the target count as correct), else 0.0.
        "reward_margin": s at argmax target minus s at argmin target (nats; 0 for a flat target).
        "target_entropy": -sum_i p_i log p_i over the real responses (nats): the least value
            `lambda_dpo_loss` can take on that list (reached when softmax(beta * s) = p), so the
            logged loss minus this is how far the policy is from fitting its targets.
    """
    s, t = _clean(scores, target, mask)
    top_s = s.masked_fill(~mask, float("-inf")).argmax(dim=-1, keepdim=True)
    t_max = t.masked_fill(~mask, float("-inf")).amax(dim=-1, keepdim=True)
    acc = (t.gather(-1, top_s) >= t_max).squeeze(-1).to(s.dtype)
    best = t.masked_fill(~mask, float("-inf")).argmax(dim=-1, keepdim=True)
    worst = t.masked_fill(~mask, float("inf")).argmin(dim=-1, keepdim=True)
    margin = (s.gather(-1, best) - s.gather(-1, worst)).squeeze(-1)
    return {"top1_accuracy": acc, "reward_margin": margin, "target_entropy": target_entropy(t)}


def target_entropy(target: Tensor) -> Tensor:
    """-sum_i p_i log p_i over the last dimension (nats; 0 log 0 = 0, so padding with 0 adds nothing).

    ``[..., N] -> [...]``. The least value of `lambda_dpo_loss` for that target (see `listwise_stats`).
    """
    t = target
    return -torch.where(t > 0, t * t.clamp(min=torch.finfo(t.dtype).tiny).log(), 0.0).sum(dim=-1)
