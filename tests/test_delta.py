"""Steering metrics (issue 11, section 3): Delta between lambdas, listwise baselines, the edge sweep."""

import math

import pytest
import torch

from lambda_dpo.data import load_lists
from lambda_dpo.evaluation.listwise import implicit_rewards
from lambda_dpo.evaluation.metrics import top1_accuracy
from lambda_dpo.evaluation.steering_metrics import (baseline_top1, delta_summary, edge_lambda, edge_sweep,
                                                    lambda_deltas, sign_test, word_count)
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


# ---- sign test -----------------------------------------------------------------------------------

def _scipy_two_sided(k, n):
    """scipy.stats.binomtest(k, n, 0.5).pvalue by its definition: P(outcomes no likelier than k)."""
    pmf = [math.comb(n, i) / 2 ** n for i in range(n + 1)]
    return min(1.0, sum(p for p in pmf if p <= pmf[k] * (1 + 1e-7)))


def test_sign_test_exact_binomial_p_values():
    assert sign_test([1] * 16, [2] * 16) == {"up": 16, "down": 0, "ties": 0, "missing": 0, "p_value": 2 / 2 ** 16}
    out = sign_test([0] * 10 + [5, 5], [1] * 8 + [-1, -1] + [5, 5])
    assert (out["up"], out["down"], out["ties"]) == (8, 2, 2) and out["p_value"] == pytest.approx(0.109375)
    assert sign_test([0] * 10, [1] * 5 + [-1] * 5)["p_value"] == 1.0
    assert sign_test([1, 2], [1, 2]) == {"up": 0, "down": 0, "ties": 2, "missing": 0, "p_value": 1.0}
    assert sign_test([NAN, 1, None], [2, 3, 4])["missing"] == 2 and sign_test([], [])["p_value"] == 1.0
    for n in range(1, 13):
        for k in range(n + 1):
            assert sign_test([0] * n, [1] * k + [-1] * (n - k))["p_value"] == pytest.approx(_scipy_two_sided(k, n))


# ---- edge sweep ----------------------------------------------------------------------------------

EDGE_ASPECTS = ("conciseness", "informativeness", "correctness")
BASE = {"p0": 1, "p1": 2, "p2": 3}


def fake_generate(calls):
    def generate_fn(prompts, lam):
        calls.append(lam)
        return [" ".join(["w"] * (BASE[p] + int(8 * lam["informativeness"]))) for p in prompts]
    return generate_fn


def fake_judge(spec, reply):
    n = word_count(reply)
    assert spec["id"] in BASE
    return {"conciseness": 5 if n <= 3 else 3 if n <= 7 else 1, "informativeness": 1 if n < 5 else 4,
            "correctness": 3}


def test_edge_lambda_puts_w_on_the_second_aspect():
    assert edge_lambda(EDGE_ASPECTS, ("conciseness", "informativeness"), 0.25) == {
        "conciseness": 0.75, "informativeness": 0.25, "correctness": 0.0}
    with pytest.raises(ValueError):
        edge_lambda(EDGE_ASPECTS, ("conciseness", "brevity"), 0.5)
    with pytest.raises(ValueError):
        edge_lambda(EDGE_ASPECTS, ("conciseness", "informativeness"), 1.5)


def test_edge_sweep_words_scores_spearman_and_sign_tests():
    calls = []
    prompts = list(BASE)
    specs = [{"id": p} for p in prompts]
    out = edge_sweep(fake_generate(calls), prompts, specs, fake_judge, EDGE_ASPECTS, ("conciseness", "informativeness"))
    assert [c["informativeness"] for c in calls] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert calls[1] == {"conciseness": 0.75, "informativeness": 0.25, "correctness": 0.0}
    pts = out["points"]
    assert [p["w"] for p in pts] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [p["mean_words"] for p in pts] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert pts[0]["words"] == [1, 2, 3] and pts[-1]["replies"][0] == " ".join(["w"] * 9)
    assert [p["scores"]["conciseness"] for p in pts] == pytest.approx([5, 11 / 3, 3, 5 / 3, 1])
    assert [p["scores"]["informativeness"] for p in pts] == pytest.approx([1, 2, 4, 4, 4])
    assert pts[1]["judged"]["informativeness"] == [1.0, 1.0, 4.0]
    s = out["summary"]
    assert s["spearman_words"] == pytest.approx(1.0) and s["monotone_words"] is True and s["end_ratio"] == 5.0
    assert s["spearman"]["conciseness"] == pytest.approx(-1.0)
    assert s["spearman"]["informativeness"] == pytest.approx(2 / math.sqrt(5))  # ties at 4, 4, 4
    assert math.isnan(s["spearman"]["correctness"])  # the score never moves
    assert s["sign_test"]["words"] == {"up": 3, "down": 0, "ties": 0, "missing": 0, "p_value": 0.25}
    assert s["sign_test"]["scores"]["conciseness"]["down"] == 3
    assert s["sign_test"]["scores"]["correctness"] == {"up": 0, "down": 0, "ties": 3, "missing": 0, "p_value": 1.0}


def test_edge_sweep_flat_and_non_monotone_lengths_missing_scores_and_bad_input():
    def generate_fn(prompts, lam):  # longer at w = 0.5 than at the ends, nothing at w = 0
        n = {0.0: 0, 0.5: 6, 1.0: 4}[lam["b"]]
        return [" ".join(["w"] * n) for _ in prompts]

    def judge(spec, reply):
        return {"a": None if spec == 0 else 2.0, "b": float(word_count(reply))}

    out = edge_sweep(generate_fn, ["x", "y"], [0, 1], judge, ("a", "b"), ("a", "b"), ws=(0.0, 0.5, 1.0))
    s = out["summary"]
    assert s["monotone_words"] is False and s["end_ratio"] == math.inf
    assert s["spearman_words"] == pytest.approx(0.5)
    assert out["points"][0]["scores"]["a"] == 2.0 and math.isnan(out["points"][0]["judged"]["a"][0])
    assert s["sign_test"]["scores"]["a"] == {"up": 0, "down": 0, "ties": 1, "missing": 1, "p_value": 1.0}
    with pytest.raises(ValueError, match="increasing"):
        edge_sweep(generate_fn, ["x"], [0], judge, ("a", "b"), ("a", "b"), ws=(0.5, 0.0))
    with pytest.raises(ValueError, match="specs"):
        edge_sweep(generate_fn, ["x"], [], judge, ("a", "b"), ("a", "b"))
    with pytest.raises(ValueError, match="replies"):
        edge_sweep(lambda p, lam: [], ["x"], [0], judge, ("a", "b"), ("a", "b"), ws=(0.0, 1.0))
