"""Ranking metrics against hand-computed values (and scipy's Kendall tau when scipy is installed)."""

import math

import pytest
import torch

from lambda_dpo.evaluation import kendall_tau, ndcg, top1_accuracy

D = torch.float64


def t(*rows, dtype=D):
    return torch.tensor(rows, dtype=dtype)


def dcg(gains_in_order):
    return sum((2**r - 1) / math.log2(1 + i) for i, r in enumerate(gains_in_order, start=1))


# ---- top-1 ------------------------------------------------------------------------------------


def test_top1_accuracy():
    scores = t([0.1, 2.0, -1.0, 99.0], [3.0, 1.0, 0.0, 0.0], [1.0, 0.0, 2.0, 0.0])
    ratings = t([1, 5, 3, 9], [4, 4, 1, 0], [5, 2, 3, 0])
    mask = t([1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], dtype=torch.bool)
    # list 1: top score (index 1) has rating 5 = max (padding's 99/9 ignored) -> 1
    # list 2: top score index 0 has rating 4, tied for max -> 1
    # list 3: top score index 2 has rating 3 < 5 -> 0
    torch.testing.assert_close(top1_accuracy(scores, ratings, mask), t(1.0, 1.0, 0.0))


def test_top1_skips_unrated_and_one_d():
    # the top-scored response has no rating: it is left out, the next one decides
    assert top1_accuracy(t(5.0, 1.0, 0.0), t(float("nan"), 3.0, 2.0)).item() == 1.0
    assert top1_accuracy(t(0.0, 1.0), t(3.0, 2.0)).item() == 0.0
    assert math.isnan(top1_accuracy(t([1.0, 2.0]), t([float("nan")] * 2))[0].item())


# ---- NDCG -------------------------------------------------------------------------------------


def test_ndcg_by_hand():
    scores, ratings = t(0.3, 0.9, 0.1, 0.5), t(3.0, 1.0, 0.0, 2.0)
    # order by score: idx 1 (r=1), 3 (r=2), 0 (r=3), 2 (r=0); ideal: 3, 2, 1, 0
    expected = dcg([1, 2, 3, 0]) / dcg([3, 2, 1, 0])
    assert ndcg(scores, ratings).item() == pytest.approx(expected, rel=1e-14)
    # explicit numbers: DCG = 1 + 3/log2(3) + 7/2, IDCG = 7 + 3/log2(3) + 1/2
    assert expected == pytest.approx((1 + 3 / math.log2(3) + 3.5) / (7 + 3 / math.log2(3) + 0.5))
    # k = 2: DCG@2 = 1 + 3/log2 3, IDCG@2 = 7 + 3/log2 3
    assert ndcg(scores, ratings, k=2).item() == pytest.approx(dcg([1, 2]) / dcg([3, 2]), rel=1e-14)
    assert ndcg(scores, ratings, k=1).item() == pytest.approx(1 / 7, rel=1e-14)


def test_ndcg_perfect_flat_and_padded():
    scores = t([3.0, 2.0, 1.0, -50.0], [0.5, 0.1, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0])
    ratings = t([5, 3, 1, 100], [2, 2, 0, 0], [0, 0, 0, 0])
    mask = t([1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], dtype=torch.bool)
    torch.testing.assert_close(ndcg(scores, ratings, mask), t(1.0, 1.0, 1.0))
    # HelpSteer-style: all zero ratings -> IDCG = 0, still 1.0 (not NaN)
    assert ndcg(t(0.0, 1.0), t(0.0, 0.0)).item() == 1.0


def test_ndcg_worst_order():
    scores, ratings = t(1.0, 2.0), t(1.0, 0.0)  # best (gain 1) ranked second
    assert ndcg(scores, ratings).item() == pytest.approx(1 / math.log2(3), rel=1e-14)


def test_ndcg_bad_k():
    with pytest.raises(ValueError):
        ndcg(t(1.0, 2.0), t(1.0, 0.0), k=0)


# ---- Kendall tau-b ----------------------------------------------------------------------------

KENDALL_CASES = [
    # scores, ratings, hand value
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 1.0),
    ([3.0, 2.0, 1.0], [1.0, 2.0, 3.0], -1.0),
    ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 2.0, 3.0], 5 / math.sqrt(5 * 6)),  # C-D=5, n0=6, n1=1, n2=0
    ([1.0, 1.0, 2.0, 3.0], [1.0, 2.0, 2.0, 3.0], 4 / 5),  # C-D=4, n1=1, n2=1 -> 4/sqrt(5*5)
    ([2.0, 1.0, 4.0, 3.0], [1.0, 2.0, 3.0, 4.0], (4 - 2) / 6),  # C=4, D=2
]


@pytest.mark.parametrize("s,r,expected", KENDALL_CASES)
def test_kendall_by_hand(s, r, expected):
    assert kendall_tau(t(*s), t(*r)).item() == pytest.approx(expected, rel=1e-14)


def test_kendall_batch_padding_and_undefined():
    scores = t([1.0, 2.0, 3.0, 0.0], [1.0, 2.0, 3.0, 9.0], [1.0, 1.0, 1.0, 0.0], [1.0, 2.0, 0.0, 0.0])
    ratings = t([1.0, 2.0, 3.0, 7.0], [2.0, 2.0, 2.0, 1.0], [1.0, 2.0, 3.0, 0.0], [1.0, float("nan"), 0.0, 0.0])
    mask = t([1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0], dtype=torch.bool)
    got = kendall_tau(scores, ratings, mask)
    assert got[0].item() == 1.0  # padding ignored
    assert math.isnan(got[1].item())  # all ratings tied
    assert math.isnan(got[2].item())  # all scores tied
    assert math.isnan(got[3].item())  # one rated response left
    assert torch.nanmean(got).item() == 1.0


def test_kendall_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        n = int(torch.randint(2, 9, (1,), generator=g))
        s = torch.randint(0, 4, (n,), generator=g).to(D)  # small ranges: plenty of ties
        r = torch.randint(1, 6, (n,), generator=g).to(D)
        ref = stats.kendalltau(s.numpy(), r.numpy()).statistic
        got = kendall_tau(s, r).item()
        if math.isnan(ref):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(ref, rel=1e-12, abs=1e-12)


def test_float32_and_one_d_shapes():
    s, r = torch.tensor([0.2, 0.1, 0.3]), torch.tensor([2.0, 1.0, 3.0])
    for fn in (top1_accuracy, ndcg, kendall_tau):
        out = fn(s, r)
        assert out.shape == () and out.dtype == torch.float32 and out.item() == pytest.approx(1.0)


def test_evaluate_lists_reports_exact_shares_of_lists(monkeypatch):
    """A share of lists is reported exactly: 9 of 10 top-1 hits is 0.9 (the issue's target reads
    '>= 0.90'), not the float32 mean 0.89999998 that once failed it."""
    from types import SimpleNamespace

    from lambda_dpo.data.schema import make_list
    from lambda_dpo.evaluation import listwise

    lists = [make_list([{"role": "user", "content": f"q{i}"}], ["a", "b"], {"x": [2, 1]}, f"f:{i}")
             for i in range(10)]
    scores = torch.tensor([[1.0, 0.0]] * 9 + [[0.0, 1.0]], dtype=torch.float32)  # the last list is missed
    monkeypatch.setattr(listwise, "implicit_rewards", lambda *a, **k: scores)
    items = [SimpleNamespace(tokens=SimpleNamespace(source=lst)) for lst in lists]
    out = listwise.evaluate_lists(torch.nn.Linear(1, 1), SimpleNamespace(aspects=("x",)), items)
    assert out["x/top1"] == 0.9 and out["mean/top1"] == 0.9
    assert torch.tensor([1.0] * 9 + [0.0]).mean().item() != 0.9  # what float32 gives
