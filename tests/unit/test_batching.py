"""Collation: tokenised lists + reference log-probs -> one batch (mixed targets, conditioned prompts,
the layout's tensors)."""

import torch

from lambda_dpo.batching import ListCollator, ScoredList
from lambda_dpo.lambdas import FixedLambda
from lambda_dpo.layouts import ScoringBatch, build_batch
from lambda_dpo.targets import aspect_targets, mix_targets, ratings_tensor
from lambda_dpo.tokenization import tokenize_list

ASPECTS = ("helpfulness", "honesty", "conciseness")


def test_collator_builds_mixed_targets_and_conditioned_prompts(tok, lists):
    items = [ScoredList(tokenize_list(tok, l, 256, 64), torch.zeros(l.n)) for l in lists[:3]]
    collator = ListCollator(tok, ASPECTS, FixedLambda(ASPECTS, "helpfulness=1"), "prompt")
    batch = collator(items)
    ratings, mask = ratings_tensor([l for l in lists[:3]], ASPECTS)
    p, usable = aspect_targets(ratings, mask)
    assert torch.allclose(batch["target"], p[..., 0]) and batch["valid"].all()
    assert torch.equal(batch["mask"], mask)
    decoded = tok.decode(batch["policy_input_ids"][0][batch["policy_segment_ids"][0] == 0])
    assert "Be as helpful as you can. (weight 1.00)" in decoded  # LambdaText(): training's default style


def test_lambda_on_a_missing_aspect_makes_the_list_invalid(tok, lists):
    missing = next(l for l in lists if "honesty" not in l.usable_aspects())
    items = [ScoredList(tokenize_list(tok, missing, 256, 64), torch.zeros(missing.n))]
    batch = ListCollator(tok, ASPECTS, FixedLambda(ASPECTS, "honesty=1"), "none")(items)
    assert not batch["valid"].any()
    batch = ListCollator(tok, ASPECTS, FixedLambda(ASPECTS, "honesty=1,helpfulness=1"), "none")(items)
    ratings, mask = ratings_tensor([missing], ASPECTS)
    p, usable = aspect_targets(ratings, mask)
    assert batch["valid"].all() and torch.allclose(batch["target"], p[..., 0])  # renormalised onto helpfulness


def test_mixed_target_equals_weighted_aspect_targets(lists):
    ratings, mask = ratings_tensor(lists[:4], ASPECTS)
    p, usable = aspect_targets(ratings, mask)
    lam = torch.tensor([0.5, 0.0, 0.5])
    target, valid = mix_targets(p, usable, lam)
    assert torch.allclose(target, 0.5 * p[..., 0] + 0.5 * p[..., 2])


def test_scoring_batch_round_trips_through_a_dict(tokenized):
    batch = build_batch([t.prompt_ids for t in tokenized], [t.response_ids for t in tokenized], layout="prompt_cache")
    again = ScoringBatch.from_dict(batch.as_dict("policy_"), "policy_")
    assert torch.equal(again.input_ids, batch.input_ids) and again.n_max == batch.n_max
