"""Held-out listwise metrics of the implicit reward, per aspect.

For aspect k the policy is conditioned on the vertex lambda = e_k (when conditioning is on),
the implicit reward s = log pi(y|x, c(e_k)) - log pi_ref(y|x) is computed for every response,
and s is compared with the aspect-k ratings: top-1 accuracy, NDCG and Kendall tau-b. Lists
where aspect k is not rated for every response are left out of that aspect's figures.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..conditioning import lambda_prefix
from ..losses import sequence_scores
from ..layouts import ScoringBatch
from ..logprobs import score_batch
from ..targets import ratings_tensor
from ..wrappers import eval_mode
from ..batching import ListCollator, ScoredList, pad_lists
from .metrics import kendall_tau, ndcg, top1_accuracy


@torch.no_grad()
def implicit_rewards(model, collator: ListCollator, items: Sequence[ScoredList], lam: torch.Tensor,
                     batch_size: int = 8, chunk_size: int = 1024, score_type: str = "sum") -> torch.Tensor:
    """s for every response of `items` under conditioning on `lam` [K] -> [L, Nmax_all] (0 padding)."""
    device = next(model.parameters()).device
    n_max = max(len(it.tokens.response_ids) for it in items)
    rows = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        batch = collator(chunk, lam=lam[None])
        sb = ScoringBatch.from_dict(batch, "policy_").to(device)
        prefix = lambda_prefix(model, batch["lam"].to(device)) if sb.n_prefix else None
        logps, n_tok = score_batch(model, sb, chunk_size, prefix)
        s = sequence_scores(logps.cpu(), batch["ref_logps"], n_tok.cpu(), score_type)
        rows.extend(s[i, : len(it.tokens.response_ids)] for i, it in enumerate(chunk))
    return pad_lists(rows, n_max)


def per_list_metrics(model, collator: ListCollator, items: Sequence[ScoredList], *, batch_size: int = 8,
                     chunk_size: int = 1024, score_type: str = "sum") -> dict[str, torch.Tensor]:
    """{aspect}/top1, /ndcg, /kendall -> [L] float64, one value per list (NaN where the list does not rate
    that aspect for every response, or where the metric is undefined); aspects rated in no list are absent."""
    aspects = collator.aspects
    ratings, mask = ratings_tensor([it.tokens.source for it in items], aspects)
    out: dict[str, torch.Tensor] = {}
    with eval_mode(model):
        for k, aspect in enumerate(aspects):
            vertex = torch.nn.functional.one_hot(torch.tensor(k), len(aspects)).float()
            r = ratings[..., k]
            rated = ~torch.isnan(r).where(mask, torch.zeros_like(mask)).any(-1)  # aspect usable for the list
            if not rated.any():
                continue
            s = implicit_rewards(model, collator, items, vertex, batch_size, chunk_size, score_type)
            for name, fn in (("top1", top1_accuracy), ("ndcg", ndcg), ("kendall", kendall_tau)):
                values = torch.full((len(items),), float("nan"), dtype=torch.float64)
                values[rated] = fn(s[rated], r[rated], mask[rated]).double()
                out[f"{aspect}/{name}"] = values
    return out


def evaluate_lists(model, collator: ListCollator, items: Sequence[ScoredList], *, batch_size: int = 8,
                   chunk_size: int = 1024, score_type: str = "sum") -> dict[str, float]:
    """Per-aspect {aspect}/top1, /ndcg, /kendall (means over lists) plus their means over aspects ("mean/...")."""
    # float64: a share of lists stays exact (36 of 40 is 0.9, not float32's 0.89999998)
    out = {key: torch.nanmean(v).item() for key, v in
           per_list_metrics(model, collator, items, batch_size=batch_size, chunk_size=chunk_size,
                            score_type=score_type).items()}
    for name in ("top1", "ndcg", "kendall"):
        values = [v for key, v in out.items() if key.endswith(f"/{name}")]
        if values:
            out[f"mean/{name}"] = sum(values) / len(values)
    return out
