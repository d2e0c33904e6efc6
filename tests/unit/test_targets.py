"""Targets from ratings: softmax(r / tau), missing ratings, lambda renormalisation."""

import math

import pytest
import torch

from lambda_dpo.data.schema import PreferenceList
from lambda_dpo.targets import aspect_targets, mix_targets, ratings_tensor

D = torch.float64
ASPECTS = ("helpfulness", "honesty", "truthfulness")


def plist(ratings, n=None):
    n = n or len(next(iter(ratings.values())))
    return PreferenceList(
        prompt=({"role": "user", "content": "q"},),
        responses=tuple(f"answer {i}" for i in range(n)),
        ratings={a: tuple(v) for a, v in ratings.items()},
    )


def softmax(xs, tau=1.0):
    e = [math.exp(x / tau) for x in xs]
    return [v / sum(e) for v in e]


LISTS = [
    plist({"helpfulness": [1, 2, 3], "honesty": [3, 1, 2], "truthfulness": [5, 5, 4]}),
    plist({"helpfulness": [4, None], "honesty": [2, 1], "truthfulness": [1, 2]}),  # helpfulness missing
    plist({"honesty": [1, 2, 3, 4]}),  # only honesty
]


def build(lists=LISTS, tau=1.0):
    ratings, mask = ratings_tensor(lists, ASPECTS, dtype=D)
    p, usable = aspect_targets(ratings, mask, tau)
    return ratings, mask, p, usable


def test_ratings_tensor_layout():
    ratings, mask = ratings_tensor(LISTS, ASPECTS, dtype=D)
    assert ratings.shape == (3, 4, 3) and ratings.dtype == D
    assert mask.tolist() == [[True, True, True, False], [True, True, False, False], [True] * 4]
    assert ratings[0, :3, 0].tolist() == [1, 2, 3]
    assert math.isnan(ratings[1, 1, 0]) and ratings[1, 0, 0].item() == 4  # None stays missing
    assert torch.isnan(ratings[2, :, 0]).all() and torch.isnan(ratings[2, :, 2]).all()  # absent aspect
    assert torch.isnan(ratings[0, 3]).all()  # padding
    assert ratings_tensor(LISTS[:1], ASPECTS)[0].dtype == torch.get_default_dtype()


def test_usable_matches_schema():
    _, _, _, usable = build()
    for b, lst in enumerate(LISTS):
        assert [a for a, u in zip(ASPECTS, usable[b].tolist()) if u] == list(lst.usable_aspects())


@pytest.mark.parametrize("tau", [1.0, 0.5, 2.0])
def test_softmax_exact(tau):
    _, _, p, usable = build(tau=tau)
    for b, lst in enumerate(LISTS):
        for k, a in enumerate(ASPECTS):
            if usable[b, k]:
                expected = softmax(lst.ratings[a], tau) + [0.0] * (4 - lst.n)
                torch.testing.assert_close(p[b, :, k], torch.tensor(expected, dtype=D), rtol=1e-14, atol=0)
            else:
                assert (p[b, :, k] == 0).all()
    assert not torch.isnan(p).any()


def test_no_nan_anywhere():
    ratings, mask, p, usable = build()
    lam = torch.tensor([0.2, 0.3, 0.5], dtype=D)
    p_lam, valid = mix_targets(p, usable, lam)
    for x in (p, p_lam):
        assert torch.isfinite(x).all()
    # a list with every aspect missing somewhere: no usable aspect, still no NaN
    bad = plist({"helpfulness": [None, 1], "honesty": [2, None]})
    _, _, p2, usable2 = build([bad])
    p2_lam, valid2 = mix_targets(p2, usable2, lam)
    assert not usable2.any() and not valid2.any()
    assert torch.isfinite(p2).all() and (p2_lam == 0).all()


def test_missing_rating_drops_aspect_and_renormalises():
    _, _, p, usable = build()
    lam = torch.tensor([0.2, 0.3, 0.5], dtype=D)
    p_lam, valid = mix_targets(p, usable, lam)
    assert valid.tolist() == [True, True, True]
    # list 0: every aspect usable, lambda unchanged
    exp0 = [0.2 * h + 0.3 * o + 0.5 * tr for h, o, tr in
            zip(softmax([1, 2, 3]), softmax([3, 1, 2]), softmax([5, 5, 4]))]
    torch.testing.assert_close(p_lam[0, :3], torch.tensor(exp0, dtype=D), rtol=1e-14, atol=0)
    # list 1: helpfulness missing -> lambda' = (0, 0.3, 0.5) / 0.8 = (0, 0.375, 0.625)
    exp1 = [0.375 * o + 0.625 * tr for o, tr in zip(softmax([2, 1]), softmax([1, 2]))]
    torch.testing.assert_close(p_lam[1, :2], torch.tensor(exp1, dtype=D), rtol=1e-14, atol=0)
    assert (p_lam[1, 2:] == 0).all()
    # list 2: only honesty -> lambda' = (0, 1, 0)
    torch.testing.assert_close(p_lam[2], torch.tensor(softmax([1, 2, 3, 4]), dtype=D), rtol=1e-14, atol=0)
    # every valid row is a distribution over the real responses
    torch.testing.assert_close(p_lam.sum(-1), torch.ones(3, dtype=D))


def test_all_weight_on_missing_aspect_is_invalid():
    _, _, p, usable = build()
    lam = torch.tensor([1.0, 0.0, 0.0], dtype=D)  # all on helpfulness
    p_lam, valid = mix_targets(p, usable, lam)
    assert valid.tolist() == [True, False, False]
    assert (p_lam[1:] == 0).all()
    torch.testing.assert_close(p_lam[0, :3], torch.tensor(softmax([1, 2, 3]), dtype=D))


def test_per_list_lambda():
    _, _, p, usable = build()
    lam = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]], dtype=D)
    p_lam, valid = mix_targets(p, usable, lam)
    assert valid.all()
    torch.testing.assert_close(p_lam[0, :3], torch.tensor(softmax([3, 1, 2]), dtype=D))
    torch.testing.assert_close(p_lam[1, :2], torch.tensor(softmax([1, 2]), dtype=D))
    torch.testing.assert_close(p_lam[2], torch.tensor(softmax([1, 2, 3, 4]), dtype=D))


def test_negative_lambda_rejected():
    _, _, p, usable = build()
    with pytest.raises(ValueError):
        mix_targets(p, usable, torch.tensor([1.2, -0.2, 0.0], dtype=D))


def test_small_tau_near_one_hot():
    lists = [plist({"helpfulness": [1, 2, 3]}), plist({"helpfulness": [4, 4, 1]})]
    ratings, mask = ratings_tensor(lists, ["helpfulness"], dtype=D)
    p, _ = aspect_targets(ratings, mask, tau=0.01)
    torch.testing.assert_close(p[:, :, 0], torch.tensor([[0, 0, 1], [0.5, 0.5, 0]], dtype=D), atol=1e-30, rtol=0)
    assert torch.isfinite(p).all()
    # large tau -> near uniform
    p_big, _ = aspect_targets(ratings, mask, tau=1e6)
    torch.testing.assert_close(p_big[:, :, 0], torch.full((2, 3), 1 / 3, dtype=D), atol=1e-6, rtol=0)


def test_bad_tau():
    ratings, mask = ratings_tensor(LISTS, ASPECTS)
    for tau in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            aspect_targets(ratings, mask, tau)


def test_padding_values_ignored():
    ratings, mask = ratings_tensor(LISTS, ASPECTS, dtype=D)
    p, usable = aspect_targets(ratings, mask)
    junk = torch.where(mask.unsqueeze(-1), ratings, torch.tensor(1e6, dtype=D))
    p2, usable2 = aspect_targets(junk, mask)
    assert torch.equal(p, p2) and torch.equal(usable, usable2)
