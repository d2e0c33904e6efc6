"""Losses against their formulas (docs/design.md, "Objective"), in float64 where values are compared."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_dpo.losses import (
    LOSSES,
    dpo_all_pairs_loss,
    dpo_best_worst_loss,
    lambda_dpo_loss,
    lipo_lambda_loss,
    listwise_stats,
    plackett_luce_loss,
    sequence_scores,
)

D = torch.float64
ALL = sorted(LOSSES)


def t(*rows, dtype=D):
    return torch.tensor(rows, dtype=dtype)


def random_batch(b=3, n=5, seed=0, pad=True):
    """Distinct scores and distinct targets (no ties), some lists padded."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, n, generator=g, dtype=D)
    mask = torch.ones(b, n, dtype=torch.bool)
    if pad:
        for i in range(b):
            mask[i, n - i :] = False  # list i has n - i real responses
    logits = torch.randn(b, n, generator=g, dtype=D).masked_fill(~mask, float("-inf"))
    target = torch.softmax(logits, dim=-1)
    return scores, target, mask


def test_registry_names():
    assert set(LOSSES) == {"lambda_dpo", "dpo_best_worst", "dpo_all_pairs", "plackett_luce", "lipo_lambda"}


# ---- N = 2, one-hot: every DPO-family loss is DPO --------------------------------------------


@pytest.mark.parametrize("beta", [0.1, 1.0, 2.5])
def test_n2_one_hot_is_dpo(beta):
    scores = t([0.7, -0.4], [-1.3, 2.0], [0.0, 0.0])
    target = t([1.0, 0.0], [1.0, 0.0], [1.0, 0.0])
    mask = torch.ones(3, 2, dtype=torch.bool)
    dpo = -F.logsigmoid(beta * (scores[:, 0] - scores[:, 1]))
    for fn in (lambda_dpo_loss, dpo_best_worst_loss, dpo_all_pairs_loss, plackett_luce_loss):
        torch.testing.assert_close(fn(scores, target, mask, beta), dpo, rtol=1e-12, atol=1e-12)
    # hand value: s1 - s2 = 0 -> log 2
    assert lambda_dpo_loss(scores, target, mask, beta)[2].item() == pytest.approx(math.log(2), abs=1e-15)


def test_lambda_dpo_one_list_by_hand():
    s, p, beta = [1.0, 0.0, -1.0], [0.5, 0.3, 0.2], 0.5
    z = [beta * x for x in s]
    lse = math.log(sum(math.exp(x) for x in z))
    expected = -sum(pi * (zi - lse) for pi, zi in zip(p, z))
    got = lambda_dpo_loss(t(s), t(p), torch.ones(1, 3, dtype=torch.bool), beta)
    assert got.item() == pytest.approx(expected, rel=1e-14)


# ---- gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.1, 1.0, 3.0])
def test_lambda_dpo_gradient_formula(beta):
    scores, target, mask = random_batch(seed=1)
    scores.requires_grad_(True)
    lambda_dpo_loss(scores, target, mask, beta).sum().backward()
    sm = torch.softmax((beta * scores.detach()).masked_fill(~mask, float("-inf")), dim=-1)
    expected = torch.where(mask, beta * (sm - target), 0.0)
    torch.testing.assert_close(scores.grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_gradcheck(name):
    fn = LOSSES[name]
    scores, target, mask = random_batch(seed=2)  # distinct scores: no rank ties for LiPO
    scores.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: fn(s, target, mask, 0.7), (scores,), eps=1e-6, atol=1e-7)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-20, 20), min_size=2, max_size=6).flatmap(
        lambda s: st.tuples(st.just(s), st.lists(st.floats(0.01, 1.0), min_size=len(s), max_size=len(s)))
    ),
    st.floats(0.01, 5.0),
)
def test_lambda_dpo_cross_entropy_properties(sp, beta):
    """Loss >= entropy of the target (Gibbs), gradient sums to 0 over the list, all finite."""
    s, w = sp
    scores = t(s).requires_grad_(True)
    p = t(w) / sum(w)
    loss = lambda_dpo_loss(scores, p, torch.ones(1, len(s), dtype=torch.bool), beta)
    loss.sum().backward()
    entropy = -(p * p.log()).sum()
    assert loss.item() >= entropy.item() - 1e-9
    assert abs(scores.grad.sum().item()) < 1e-9
    assert torch.isfinite(scores.grad).all()


# ---- invariances ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_permutation_invariance(name):
    fn = LOSSES[name]
    scores, target, mask = random_batch(b=4, n=6, seed=3)
    base = fn(scores, target, mask, 1.3)
    for seed in range(5):
        perm = torch.randperm(6, generator=torch.Generator().manual_seed(seed))
        got = fn(scores[:, perm], target[:, perm], mask[:, perm], 1.3)
        torch.testing.assert_close(got, base, rtol=1e-12, atol=1e-12)


def test_linearity_in_target():
    scores, _, mask = random_batch(b=4, n=5, seed=4)
    g = torch.Generator().manual_seed(5)
    p = [torch.softmax(torch.randn(4, 5, generator=g, dtype=D).masked_fill(~mask, float("-inf")), -1)
         for _ in range(3)]
    lam = [0.2, 0.5, 0.3]
    mixed = lambda_dpo_loss(scores, sum(l * pk for l, pk in zip(lam, p)), mask, 0.9)
    separate = sum(l * lambda_dpo_loss(scores, pk, mask, 0.9) for l, pk in zip(lam, p))
    torch.testing.assert_close(mixed, separate, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("pad_score", [0.0, 1e30, -1e30, float("inf"), float("-inf"), float("nan")])
def test_padding_is_ignored(name, pad_score):
    fn = LOSSES[name]
    scores, target, mask = random_batch(b=2, n=4, seed=6, pad=False)
    base_s = scores.clone().requires_grad_(True)
    base = fn(base_s, target, mask, 1.1)
    base.sum().backward()

    pad = 3
    s2 = torch.cat([scores, torch.full((2, pad), pad_score, dtype=D)], dim=1).requires_grad_(True)
    t2 = torch.cat([target, torch.zeros(2, pad, dtype=D)], dim=1)
    m2 = torch.cat([mask, torch.zeros(2, pad, dtype=torch.bool)], dim=1)
    got = fn(s2, t2, m2, 1.1)
    got.sum().backward()
    torch.testing.assert_close(got, base, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(s2.grad).all()
    torch.testing.assert_close(s2.grad[:, :4], base_s.grad, rtol=1e-12, atol=1e-12)
    assert (s2.grad[:, 4:] == 0).all()


@pytest.mark.parametrize("name", ALL)
def test_padding_target_values_are_ignored(name):
    """Even a non-zero target on padding (a caller bug) does not leak into the loss."""
    fn = LOSSES[name]
    scores, target, mask = random_batch(b=3, n=5, seed=7)
    junk = torch.where(mask, target, torch.tensor(5.0, dtype=D))
    torch.testing.assert_close(fn(scores, junk, mask, 1.0), fn(scores, target, mask, 1.0))


@pytest.mark.parametrize("name", ALL)
def test_ragged_batch_matches_lists_one_by_one(name):
    fn = LOSSES[name]
    g = torch.Generator().manual_seed(8)
    lists = []
    for n in (2, 5, 3):
        s = torch.randn(n, generator=g, dtype=D)
        p = torch.softmax(torch.randn(n, generator=g, dtype=D), -1)
        lists.append((s, p))
    n_max = 5
    scores = torch.full((3, n_max), -7.0, dtype=D)
    target = torch.zeros(3, n_max, dtype=D)
    mask = torch.zeros(3, n_max, dtype=torch.bool)
    for b, (s, p) in enumerate(lists):
        scores[b, : len(s)], target[b, : len(s)], mask[b, : len(s)] = s, p, True
    batched = fn(scores, target, mask, 0.8)
    for b, (s, p) in enumerate(lists):
        alone = fn(s[None], p[None], torch.ones(1, len(s), dtype=torch.bool), 0.8)
        torch.testing.assert_close(batched[b : b + 1], alone, rtol=1e-12, atol=1e-12)


# ---- hand-computed values ---------------------------------------------------------------------


def test_plackett_luce_n3_by_hand():
    # target order: response 2 (0.5), response 3 (0.3), response 1 (0.2) -> s_() = (2, 0, 1)
    scores, target = t([1.0, 2.0, 0.0]), t([0.2, 0.5, 0.3])
    mask = torch.ones(1, 3, dtype=torch.bool)
    e = math.e
    expected = (math.log(e**2 + 1 + e) - 2) + (math.log(1 + e) - 0) + 0
    assert plackett_luce_loss(scores, target, mask, 1.0).item() == pytest.approx(expected, rel=1e-14)
    # with beta = 0.5: utilities (1, 0, 0.5)
    b = 0.5
    expected_b = (math.log(e + 1 + e**0.5) - 1) + math.log(1 + e**0.5)
    assert plackett_luce_loss(scores, target, mask, b).item() == pytest.approx(expected_b, rel=1e-14)


def test_plackett_luce_ties_in_target_break_by_index():
    scores, target = t([0.0, 1.0, 3.0]), t([0.4, 0.4, 0.2])  # order 1, 2, 3
    mask = torch.ones(1, 3, dtype=torch.bool)
    e = math.e
    expected = (math.log(1 + e + e**3) - 0) + (math.log(e + e**3) - 1)
    assert plackett_luce_loss(scores, target, mask, 1.0).item() == pytest.approx(expected, rel=1e-14)


def test_lipo_lambda_n3_by_hand():
    # s = (0.5, 1.0, -0.2): ranks by score tau = (2, 1, 3); target (0.5, 0.3, 0.2), N = 3
    # psi = 3 * target = (1.5, 0.9, 0.6); G = 2^psi - 1; D(t) = log2(1 + t)
    scores, target, beta = t([0.5, 1.0, -0.2]), t([0.5, 0.3, 0.2]), 0.8
    mask = torch.ones(1, 3, dtype=torch.bool)
    G = [2**1.5 - 1, 2**0.9 - 1, 2**0.6 - 1]
    inv_d = [1 / math.log2(3), 1 / math.log2(2), 1 / math.log2(4)]
    s = [0.5, 1.0, -0.2]

    def term(i, j):  # target_i > target_j
        delta = abs(G[i] - G[j]) * abs(inv_d[i] - inv_d[j])
        return delta * math.log1p(math.exp(-beta * (s[i] - s[j])))

    expected = term(0, 1) + term(0, 2) + term(1, 2)
    assert lipo_lambda_loss(scores, target, mask, beta).item() == pytest.approx(expected, rel=1e-13)


def test_lipo_n2_one_hot():
    # psi = (2, 0), G = (3, 0); s1 > s2 -> ranks (1, 2): Delta = 3 * (1 - 1/log2 3)
    scores, target, mask = t([0.3, -0.1]), t([1.0, 0.0]), torch.ones(1, 2, dtype=torch.bool)
    delta = 3 * (1 - 1 / math.log2(3))
    expected = delta * math.log1p(math.exp(-(0.3 + 0.1)))
    assert lipo_lambda_loss(scores, target, mask, 1.0).item() == pytest.approx(expected, rel=1e-14)


def test_dpo_all_pairs_by_hand():
    scores, target = t([0.5, 1.0, -0.2]), t([0.5, 0.25, 0.25])  # ordered pairs: (1,2), (1,3)
    mask = torch.ones(1, 3, dtype=torch.bool)
    nll = lambda d: math.log1p(math.exp(-d))
    expected = (nll(0.5 - 1.0) + nll(0.5 + 0.2)) / 2
    assert dpo_all_pairs_loss(scores, target, mask, 1.0).item() == pytest.approx(expected, rel=1e-14)


def test_dpo_best_worst_by_hand():
    scores, target = t([0.5, 1.0, -0.2]), t([0.2, 0.5, 0.3])  # best 2, worst 1
    mask = torch.ones(1, 3, dtype=torch.bool)
    expected = math.log1p(math.exp(-2.0 * (1.0 - 0.5)))
    assert dpo_best_worst_loss(scores, target, mask, 2.0).item() == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("name", ["dpo_best_worst", "dpo_all_pairs", "lipo_lambda"])
def test_flat_target_gives_zero(name):
    scores = t([0.5, 1.0, -0.2, 9.0], [3.0, -1.0, 0.0, 0.0]).requires_grad_(True)
    target = t([1 / 3, 1 / 3, 1 / 3, 0.0], [0.5, 0.5, 0.0, 0.0])
    mask = t([1, 1, 1, 0], [1, 1, 0, 0], dtype=torch.bool)
    loss = LOSSES[name](scores, target, mask, 1.0)
    assert (loss == 0).all()
    loss.sum().backward()
    assert (scores.grad == 0).all()


def test_zero_target_row_gives_zero_lambda_dpo_loss():
    """A list without a target (mix_targets' invalid rows) contributes nothing."""
    scores, mask = t([0.5, 1.0]), torch.ones(1, 2, dtype=torch.bool)
    assert lambda_dpo_loss(scores, torch.zeros(1, 2, dtype=D), mask, 1.0).item() == 0.0


def test_float32_runs():
    scores, target, mask = random_batch(seed=9)
    for fn in LOSSES.values():
        out = fn(scores.float(), target.float(), mask, 1.0)
        assert out.dtype == torch.float32 and out.shape == (3,) and torch.isfinite(out).all()


# ---- helpers ----------------------------------------------------------------------------------


def test_sequence_scores():
    pol, ref, n = t(-10.0, -20.0, 0.0), t(-12.0, -18.0, 0.0), torch.tensor([4, 2, 0])
    torch.testing.assert_close(sequence_scores(pol, ref, n), t(2.0, -2.0, 0.0))
    torch.testing.assert_close(sequence_scores(pol, ref, n, "mean"), t(0.5, -1.0, 0.0))
    torch.testing.assert_close(sequence_scores(pol[:1], ref[:1], 4, "mean"), t(0.5))
    with pytest.raises(ValueError):
        sequence_scores(pol, ref, n, "max")


def test_listwise_stats():
    scores = t([0.1, 2.0, -1.0, 50.0], [3.0, 1.0, 0.0, 0.0])
    target = t([0.2, 0.7, 0.1, 0.0], [0.1, 0.6, 0.3, 0.0])
    mask = t([1, 1, 1, 0], [1, 1, 1, 0], dtype=torch.bool)
    stats = listwise_stats(scores, target, mask)
    torch.testing.assert_close(stats["top1_accuracy"], t(1.0, 0.0))
    torch.testing.assert_close(stats["reward_margin"], t(2.0 - (-1.0), 1.0 - 3.0))
    p = target[:, :3]
    torch.testing.assert_close(stats["target_entropy"], -(p * p.log()).sum(-1))


def test_target_entropy_is_the_least_lambda_dpo_loss():
    """The loss at scores with softmax(beta s) = p equals the logged entropy; any other scores give more."""
    target = t([0.5, 0.5, 0.0, 0.0], [0.7, 0.2, 0.1, 0.0], [1.0, 0.0, 0.0, 0.0])
    mask = t([1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0], dtype=torch.bool)
    beta = 0.1
    fitted = torch.where(target > 0, target.clamp(min=1e-30).log() / beta, -1e4)  # a zero target: far below
    entropy = listwise_stats(fitted, target, mask)["target_entropy"]
    torch.testing.assert_close(entropy, t(math.log(2), -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)), 0.0))
    torch.testing.assert_close(lambda_dpo_loss(fitted, target, mask, beta), entropy, atol=1e-5, rtol=0)
    assert (lambda_dpo_loss(torch.randn(3, 4) * 20, target, mask, beta) > entropy).all()
