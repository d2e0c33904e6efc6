"""Delta between lambdas and the listwise baselines (evaluation/delta.py; issue 11, section 3)."""

import math

import pytest
import torch

from lambda_dpo.data import load_lists
from lambda_dpo.evaluation.listwise import implicit_rewards
from lambda_dpo.evaluation.metrics import top1_accuracy
from lambda_dpo.evaluation.delta import baseline_top1, delta_summary, lambda_deltas, word_count
from lambda_dpo.lambdas import FixedLambda
from lambda_dpo.models import load_model, load_tokenizer
from lambda_dpo.targets import ratings_tensor
from lambda_dpo.tokenization import tokenize_lists
from lambda_dpo.batching import ListCollator, ScoredList

ASPECTS = ("helpfulness", "honesty", "conciseness")
NAN = float("nan")


# ---- delta_summary on hand-made tensors ----------------------------------------------------------

def test_delta_summary_known_spearman_ties_padding_and_skipped_lists():
    delta = torch.tensor([[0.5, -1.0, 2.0, 9.0],    # last entry is padding: would break rho = 1 if used
                          [1.0, 2.0, 2.0, 3.0],     # tie in Delta: average ranks -> 3 / sqrt(10)
                          [1.0, 2.0, 3.0, 4.0],     # r_a - r_b constant: skipped
                          [0.0, 0.0, 0.0, 0.0]])    # a model that ignores lambda: skipped
    r_a = torch.tensor([[3.0, 1.0, 5.0, 0.0], [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0], [1.0, 5.0, 2.0, 4.0]])
    r_b = torch.tensor([[1.0, 1.0, 1.0, 5.0], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    out = delta_summary(delta, r_a, r_b, mask)
    assert out["lists"] == 2 and out["replies"] == 15
    assert out["spearman"] == pytest.approx((1.0 + 3 / math.sqrt(10)) / 2)
    assert out["mean_abs_delta"] == pytest.approx((0.5 + 1 + 2 + 8 + 10 + 0) / 15)
    # without the mask the padding entry joins list 0 (Delta 9 with r_a - r_b = -5) and rho drops
    assert delta_summary(delta, r_a, r_b)["spearman"] < out["spearman"]


def test_delta_summary_reversed_order_missing_ratings_and_no_usable_list():
    delta = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    r_a = torch.tensor([[1.0, 2.0, NAN, 4.0]])  # the unrated reply is left out of the list's rho
    r_b = torch.zeros(1, 4)
    out = delta_summary(delta, r_a, r_b)
    assert out["spearman"] == pytest.approx(-1.0) and out["lists"] == 1
    assert out["mean_abs_delta"] == pytest.approx(1.5) and out["replies"] == 4
    flat = delta_summary(torch.zeros(2, 3), torch.rand(2, 3), torch.rand(2, 3))
    assert math.isnan(flat["spearman"]) and flat["lists"] == 0 and flat["mean_abs_delta"] == 0.0
    with pytest.raises(ValueError, match="same"):
        delta_summary(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 3))


# ---- lambda_deltas on a tiny random model --------------------------------------------------------

@pytest.fixture(scope="module")
def tok(tiny_llama_dir):
    return load_tokenizer(tiny_llama_dir)


@pytest.fixture(scope="module")
def model(tiny_llama_dir):
    return load_model(tiny_llama_dir)


@pytest.fixture(scope="module")
def items(tok):
    lists = load_lists("examples/tiny_listwise.jsonl")[0][:4]
    assert len({l.n for l in lists}) > 1  # uneven N, so the [L, Nmax] result has padding
    tokenized = tokenize_lists(tok, lists, 256, 64)[0]
    gen = torch.Generator().manual_seed(0)
    return [ScoredList(tl, -50 * torch.rand(len(tl.response_ids), generator=gen), i) for i, tl in enumerate(tokenized)]


def _zero_ref(items):
    return [ScoredList(it.tokens, torch.zeros(len(it.tokens.response_ids)), it.index) for it in items]


def test_lambda_deltas_is_the_difference_of_two_implicit_reward_calls(model, tok, items, one_thread):
    collator = ListCollator(tok, ASPECTS, FixedLambda(ASPECTS), "prompt")
    e_help, e_conc = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    model.train()
    delta = lambda_deltas(model, collator, items, "helpfulness=1", {"conciseness": 2.0}, batch_size=3)
    assert model.training  # restored
    n = torch.tensor([len(it.tokens.response_ids) for it in items])
    real = torch.arange(delta.shape[1])[None] < n[:, None]
    assert delta.shape == (len(items), int(n.max())) and not real.all()
    # exactly: the two calls on the items with the reference removed (it cancels)
    zero = _zero_ref(items)
    expected = (implicit_rewards(model, collator, zero, e_help, 3, 1024, "sum")
                - implicit_rewards(model, collator, zero, e_conc, 3, 1024, "sum"))
    assert torch.equal(delta, expected)
    # and up to rounding with the items' own reference log-probs: the reference cancels
    with_ref = (implicit_rewards(model, collator, items, e_help, 3, 1024, "sum")
                - implicit_rewards(model, collator, items, e_conc, 3, 1024, "sum"))
    torch.testing.assert_close(delta, with_ref, atol=1e-4, rtol=0)
    assert (delta[~real] == 0).all() and (delta[real] != 0).float().mean() > 0.8  # the prompt differs: replies move
    assert torch.equal(lambda_deltas(model, collator, items, e_help, e_conc, batch_size=3), delta)  # tensor lambdas
    assert torch.equal(lambda_deltas(model, collator, items, e_conc, e_help, batch_size=3), -delta)


def test_lambda_deltas_is_exactly_zero_without_conditioning(model, tok, items, one_thread):
    collator = ListCollator(tok, ASPECTS, FixedLambda(ASPECTS), "none")
    delta = lambda_deltas(model, collator, items, "helpfulness=1", "conciseness=1", batch_size=2)
    assert torch.equal(delta, torch.zeros_like(delta))
    summary = delta_summary(delta, *(ratings_tensor([it.tokens.source for it in items], ASPECTS)[0][..., k]
                                     for k in (0, 2)))
    assert summary["mean_abs_delta"] == 0.0 and summary["lists"] == 0


def test_lambda_deltas_rejects_a_lambda_of_the_wrong_size(model, tok, items):
    collator = ListCollator(tok, ASPECTS, FixedLambda(ASPECTS), "prompt")
    with pytest.raises(ValueError, match="shape"):
        lambda_deltas(model, collator, items, torch.tensor([1.0, 0.0]), "honesty=1")
    with pytest.raises(ValueError, match="unknown aspect"):
        lambda_deltas(model, collator, items, "brevity=1", "honesty=1")


# ---- listwise baselines --------------------------------------------------------------------------

LISTS = [
    ["a b c", "a", "a b c d e", "x y"],   # shortest: "a" (rated 5 = max); longest rated 1
    ["one two", "three four", "five"],    # longest: tie at 2 words -> first index (rated 4 = max)
    ["a b", "c d", "e"],                  # longest: tie -> first index (rated 1, wrong); shortest rated 3, wrong
    ["a", "b c d", "e f"],                # the shortest reply is unrated: never picked
    ["a", "b"],                           # nothing rated: NaN
]
RATINGS = torch.tensor([[3.0, 5.0, 1.0, 5.0],
                        [4.0, 2.0, 4.0, 0.0],
                        [1.0, 5.0, 3.0, 0.0],
                        [NAN, 2.0, 4.0, 0.0],
                        [NAN, NAN, 0.0, 0.0]])


def _same(a, b):
    return torch.equal(torch.isnan(a), torch.isnan(b)) and torch.allclose(a.nan_to_num(-1), b.nan_to_num(-1))


def test_baseline_top1_exact_values_on_hand_made_lists():
    expected = {"shortest": [1.0, 1.0, 0.0, 1.0, NAN],
                "longest": [0.0, 1.0, 0.0, 0.0, NAN],
                "random": [0.5, 2 / 3, 1 / 3, 0.5, NAN]}
    for kind, values in expected.items():
        got = baseline_top1(LISTS, RATINGS, None, kind)
        assert got.shape == (5,) and _same(got, torch.tensor(values, dtype=got.dtype)), (kind, got)
    mean = torch.nanmean(baseline_top1(LISTS, RATINGS, None, "random")).item()
    assert mean == pytest.approx((0.5 + 2 / 3 + 1 / 3 + 0.5) / 4)


def test_baseline_top1_uses_the_top1_accuracy_definition_and_the_mask():
    lengths = torch.tensor([[word_count(r) for r in l] + [0] * (4 - len(l)) for l in LISTS], dtype=torch.double)
    real = torch.tensor([[j < len(l) for j in range(4)] for l in LISTS])
    assert _same(baseline_top1(LISTS, RATINGS, None, "longest"), top1_accuracy(lengths, RATINGS.double(), real))
    assert _same(baseline_top1(LISTS, RATINGS, None, "shortest"), top1_accuracy(-lengths, RATINGS.double(), real))
    # a ties-count-as-correct pick: top1_accuracy gives 1 for a list whose ratings are all equal
    assert baseline_top1([["a", "b c"]], torch.tensor([[3.0, 3.0]]), None, "longest").item() == 1.0
    assert baseline_top1([["a", "b c"]], torch.tensor([[3.0, 3.0]]), None, "random").item() == 1.0
    # the mask removes replies from the pick and from the list's maximum, as in top1_accuracy
    mask = real.clone()
    mask[0, 1] = False  # "a" (rated 5) gone: shortest is now "x y" (5), random 1 max of {3, 1, 5}
    assert baseline_top1(LISTS, RATINGS, mask, "shortest")[0].item() == 1.0
    assert baseline_top1(LISTS, RATINGS, mask, "random")[0].item() == pytest.approx(1 / 3)
    mask[0, 3] = False  # "x y" gone too: {3, 1} left; shortest "a b c" has the max 3, longest has 1
    assert baseline_top1(LISTS, RATINGS, mask, "shortest")[0].item() == 1.0
    assert baseline_top1(LISTS, RATINGS, mask, "longest")[0].item() == 0.0
    assert baseline_top1(LISTS, RATINGS, mask, "random")[0].item() == 0.5
    with pytest.raises(ValueError, match="kind"):
        baseline_top1(LISTS, RATINGS, None, "median")
    with pytest.raises(ValueError, match="ratings"):
        baseline_top1(LISTS[:2], RATINGS, None, "random")


def test_baseline_top1_reads_tokenised_and_raw_lists_alike(items):
    lists = [it.tokens.source for it in items]
    ratings, mask = ratings_tensor(lists, ASPECTS)
    for kind in ("random", "shortest", "longest"):
        a = baseline_top1(items, ratings[..., 2], mask, kind)
        assert _same(a, baseline_top1(lists, ratings[..., 2], mask, kind))
        assert _same(a, baseline_top1([it.tokens for it in items], ratings[..., 2], None, kind))
        assert _same(a, baseline_top1([list(l.responses) for l in lists], ratings[..., 2], mask, kind))
