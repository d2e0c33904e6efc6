"""Generation-free steering diagnostics (Delta), the listwise baselines beside them, and the edge sweep.

Generation-free (teacher-forced on held-out lists):
- `lambda_deltas`: Delta_i = log pi(y_i | x, lambda_a) - log pi(y_i | x, lambda_b) per reply (nats).
  The reference cancels, so Delta is exactly 0 for a model that never sees lambda.
- `delta_summary`: mean |Delta| and the within-list Spearman of Delta with r_a - r_b.

Listwise baselines (what the steered model's top-1 must beat):
- `baseline_top1`: top-1 accuracy of a random pick, of the shortest and of the longest reply, with
  the top-1 definition of `evaluation.metrics.top1_accuracy` (ties in rating count as correct).

Generation along one edge of the simplex:
- `edge_sweep`: replies under lambda = (1 - w) * e_pair[0] + w * e_pair[1] for w in a grid; mean
  words and judge scores per w, their Spearman with w, monotonicity, end-to-end word ratio and a
  paired sign test between the two ends.

The judge is a parameter (signature of ``lambda_dpo.demo.dataset.judge_all``); this module does not
depend on the demo. Spearman's rho uses average ranks for ties (`steering.spearman`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

from ..lambdas import parse_lambda
from ..wrappers import eval_mode
from ..batching import ListCollator, ScoredList
from .listwise import implicit_rewards
from .metrics import top1_accuracy
from .steering import spearman

__all__ = ["lambda_deltas", "delta_summary", "word_count", "baseline_top1", "BASELINE_KINDS", "sign_test",
           "edge_lambda", "edge_sweep"]

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


# ------------------------------------------------------------------------------------------------
# Generation along an edge
# ------------------------------------------------------------------------------------------------

def sign_test(lo: Sequence[float], hi: Sequence[float]) -> dict:
    """Paired two-sided sign test of hi against lo (e.g. per-prompt values at the two ends).

    Pairs with a missing value (None / NaN) and ties are dropped. Returns {"up": #(hi > lo),
    "down": #(hi < lo), "ties": #(hi == lo), "missing": #pairs dropped for a missing value,
    "p_value": exact two-sided binomial p-value of min(up, down) among up + down under p = 1/2,
    i.e. min(1, 2 * sum_{i <= min(up, down)} C(n, i) / 2^n) (scipy.stats.binomtest's value; 1.0
    when n = 0)}.
    """
    if len(lo) != len(hi):
        raise ValueError(f"sign_test needs paired values, got {len(lo)} and {len(hi)}")
    up = down = ties = missing = 0
    for a, b in zip(lo, hi):
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            missing += 1
        elif b > a:
            up += 1
        elif b < a:
            down += 1
        else:
            ties += 1
    n, k = up + down, min(up, down)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    p_value = min(1.0, 2 * tail / 2 ** n)
    return {"up": up, "down": down, "ties": ties, "missing": missing, "p_value": p_value}


def edge_lambda(aspects: Sequence[str], pair: tuple[str, str], w: float) -> dict[str, float]:
    """lambda on the edge of `pair`: weight w on pair[1], 1 - w on pair[0], 0 on every other aspect.

    (Note `steering.lambda_grid` puts w on pair[0]; here w = 0 is pair[0]'s vertex.)
    """
    a0, a1 = pair
    if a0 not in aspects or a1 not in aspects or a0 == a1:
        raise ValueError(f"pair {pair} must be two different aspects of {list(aspects)}")
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"w must be in [0, 1], got {w}")
    return {a: (float(w) if a == a1 else 1.0 - w if a == a0 else 0.0) for a in aspects}


def _nanmean(values: Sequence[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else float("nan")


def edge_sweep(generate_fn: Callable[[list, dict], Sequence[str]], prompts: Sequence, specs: Sequence,
               judge: Callable[[object, str], Mapping[str, float]], aspects: Sequence[str],
               pair: tuple[str, str], ws: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> dict:
    """Generate along the edge of `pair` and measure how replies change with w.

    Args:
        generate_fn: (prompts, lambda {aspect: weight}) -> one reply string per prompt (greedy, for
            a reproducible sweep); e.g. ``lambda p, lam: generation.generate(sm, p, lam)``.
        prompts: P prompts; specs: P objects handed to the judge with the replies.
        judge: (spec, reply) -> {aspect: score}, the signature of ``demo.dataset.judge_all``.
        aspects: the model's aspects (all keys of lambda, and the aspects whose scores are reported).
        pair: (a0, a1); lambda = `edge_lambda(aspects, pair, w)`: w on a1, 1 - w on a0, 0 elsewhere.
            Suggested: (conciseness, informativeness), w = the weight of informativeness.
        ws: strictly increasing weights in [0, 1], at least 2; the first and last are "the ends".

    Returns {"points": one dict per w, in order: {"w", "lambda", "replies" [P], "words" [P]
                 (whitespace words per reply), "mean_words", "judged" {aspect: [P] scores, NaN
                 where the judge gave none}, "scores" {aspect: mean score, missing ones skipped}},
             "summary": {"spearman_words": Spearman of w with mean words (NaN if constant),
                 "spearman": {aspect: Spearman of w with the aspect's mean score},
                 "monotone_words": mean words strictly increasing in w at every point,
                 "end_ratio": mean words at the last w / at the first (inf if only the first is 0,
                     NaN if both are),
                 "sign_test": {"words": `sign_test` of per-prompt words at the first vs last w,
                               "scores": {aspect: the same on per-prompt judge scores}}}}.
    """
    ws = [float(w) for w in ws]
    if len(ws) < 2 or any(b <= a for a, b in zip(ws, ws[1:])):
        raise ValueError(f"ws must be at least 2 strictly increasing weights, got {ws}")
    if len(prompts) != len(specs):
        raise ValueError(f"{len(prompts)} prompts but {len(specs)} specs")
    points = []
    for w in ws:
        lam = edge_lambda(aspects, pair, w)
        replies = list(generate_fn(list(prompts), dict(lam)))
        if len(replies) != len(prompts):
            raise ValueError(f"generate_fn returned {len(replies)} replies for {len(prompts)} prompts at w={w}")
        words = [word_count(r) for r in replies]
        verdicts = [judge(s, r) for s, r in zip(specs, replies)]
        judged = {a: [float("nan") if v.get(a) is None else float(v[a]) for v in verdicts] for a in aspects}
        points.append({"w": w, "lambda": lam, "replies": replies, "words": words,
                       "mean_words": sum(words) / len(words) if words else float("nan"),
                       "judged": judged, "scores": {a: _nanmean(judged[a]) for a in aspects}})
    mean_words = [p["mean_words"] for p in points]
    first, last = points[0], points[-1]
    lo, hi = first["mean_words"], last["mean_words"]
    end_ratio = hi / lo if lo else (float("inf") if hi > 0 else float("nan"))
    summary = {
        "spearman_words": spearman(ws, mean_words),
        "spearman": {a: spearman(ws, [p["scores"][a] for p in points]) for a in aspects},
        "monotone_words": all(b > a for a, b in zip(mean_words, mean_words[1:])),
        "end_ratio": end_ratio,
        "sign_test": {"words": sign_test(first["words"], last["words"]),
                      "scores": {a: sign_test(first["judged"][a], last["judged"][a]) for a in aspects}},
    }
    return {"points": points, "summary": summary}
