"""Bootstrap means over seeds and prompts, and win / tie / loss shares of paired scores."""

import math

import numpy as np
import pytest

from lambda_dpo.evaluation.intervals import bootstrap_mean, win_tie_loss


def test_a_constant_has_a_zero_width_interval():
    assert bootstrap_mean(np.full((3, 5), 2.5)) == {"mean": 2.5, "lo": 2.5, "hi": 2.5}


def test_mean_ignores_missing_cells_and_the_interval_holds_it():
    v = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, 5.0]])
    out = bootstrap_mean(v)
    assert out["mean"] == pytest.approx(3.0)
    assert out["lo"] < out["mean"] < out["hi"]
    assert 1.0 <= out["lo"] and out["hi"] <= 5.0


def test_seed_to_seed_spread_widens_the_interval():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.1, (3, 40))
    same = bootstrap_mean(noise)
    shifted = bootstrap_mean(noise + np.array([[-1.0], [0.0], [1.0]]))  # seeds disagree
    assert (shifted["hi"] - shifted["lo"]) > 5 * (same["hi"] - same["lo"])


def test_more_prompts_narrow_the_interval():
    rng = np.random.default_rng(2)
    few, many = bootstrap_mean(rng.normal(0, 1, (1, 20))), bootstrap_mean(rng.normal(0, 1, (1, 2000)))
    assert (many["hi"] - many["lo"]) < (few["hi"] - few["lo"]) / 4
    # one seed: the ordinary bootstrap of a mean, whose 95% half-width is about 1.96 sd / sqrt(n)
    assert (many["hi"] - many["lo"]) / 2 == pytest.approx(1.96 / math.sqrt(2000), rel=0.15)


def test_all_missing_is_nan_and_a_flat_array_is_refused():
    assert math.isnan(bootstrap_mean(np.full((2, 2), np.nan))["mean"])
    with pytest.raises(ValueError, match=r"\[seeds, items\]"):
        bootstrap_mean([1.0, 2.0])


def test_win_tie_loss_shares_leave_out_missing_pairs():
    a = np.array([[3.0, 2.0, 1.0, np.nan], [5.0, 5.0, 5.0, 5.0]])
    b = np.array([[2.0, 2.0, 2.0, 1.0], [4.0, 4.0, 5.0, 5.0]])
    out = win_tie_loss(a, b)
    assert out["win"]["mean"] == pytest.approx(3 / 7)
    assert out["tie"]["mean"] == pytest.approx(3 / 7)
    assert out["loss"]["mean"] == pytest.approx(1 / 7)
    with pytest.raises(ValueError, match="equal shapes"):
        win_tie_loss(a, b[:, :2])
