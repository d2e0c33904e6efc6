"""`rating_scale`: ratings in any units rescaled before the targets, fitted on the training lists, applied
unchanged to the eval lists and to `lambda-dpo evaluate`; the warning when targets are nearly one-hot."""

import json
import logging
import math
from pathlib import Path

import pytest
from conftest import REPO
import torch

from lambda_dpo.cli import main
from lambda_dpo.data import PreferenceList, load_lists
from lambda_dpo.saved_model import MODEL_CARD, read_model_meta, saved_rating_scales
from lambda_dpo.rating_scales import (RATING_SCALES, apply_rating_scales, fit_rating_scales, one_hot_shares,
                                      one_hot_warnings, parse_rating_scale)
from lambda_dpo.targets import aspect_targets, mix_targets, ratings_tensor
from lambda_dpo.training.config import load_config
from lambda_dpo.training.prepare import rescale_ratings

DEMO = REPO / "src/lambda_dpo/resources/demo/train.jsonl"


def pl(**ratings) -> PreferenceList:
    n = len(next(iter(ratings.values())))
    return PreferenceList(({"role": "user", "content": "q"},), tuple(f"reply {i}" for i in range(n)),
                          {a: tuple(r) for a, r in ratings.items()})


def col(lists, aspect):
    return [list(lst.ratings[aspect]) for lst in lists]


# ------------------------------------------------------------------------------------------ each scale


TRAIN = [pl(a=[0, 50, 100, None], b=[2, 6, 4, 4]), pl(a=[25, 25, 75, 100], b=[None, 4, 4, 4])]


def test_minmax_maps_the_training_range_to_1_5_and_keeps_missing_ratings():
    fit = fit_rating_scales(TRAIN, "minmax", ["a", "b"])
    assert fit == {"a": {"scale": "minmax", "min": 0, "max": 100}, "b": {"scale": "minmax", "min": 2, "max": 6}}
    out = apply_rating_scales(TRAIN, fit)
    assert col(out, "a") == [[1, 3, 5, None], [2, 2, 4, 5]]
    assert col(out, "b") == [[1, 5, 3, 3], [None, 3, 3, 3]]
    assert out[0].responses == TRAIN[0].responses and TRAIN[0].ratings["a"] == (0, 50, 100, None)  # a copy


def test_zscore_is_in_standard_deviations_of_the_training_ratings():
    # b's present ratings: 2, 6, 4, 4, 4, 4, 4: mean 4, population variance (4 + 4) / 7
    fit = fit_rating_scales(TRAIN, {"b": "zscore"}, ["a", "b"])
    std = math.sqrt(8 / 7)
    assert fit["a"] == {"scale": "as_is"} and fit["b"]["mean"] == pytest.approx(4)
    assert fit["b"]["std"] == pytest.approx(std)
    out = apply_rating_scales(TRAIN, fit)
    assert col(out, "a") == col(TRAIN, "a")  # not named: as is
    assert col(out, "b")[0] == pytest.approx([-2 / std, 2 / std, 0, 0])
    assert col(out, "b")[1][0] is None and col(out, "b")[1][1:] == [0, 0, 0]


def test_rank_within_each_list_worst_is_1_and_ties_share_their_average_rank():
    lists = [pl(a=[3, 5, 5, None, 1]), pl(a=[7, 7, 7])]
    fit = fit_rating_scales(lists, "rank", ["a"])
    assert fit == {"a": {"scale": "rank"}}
    assert col(apply_rating_scales(lists, fit), "a") == [[2, 3.5, 3.5, None, 1], [2, 2, 2]]


def test_as_is_changes_nothing_and_degenerate_statistics_are_harmless():
    assert apply_rating_scales(TRAIN, fit_rating_scales(TRAIN, "as_is", ["a", "b"])) == TRAIN
    flat = [pl(a=[4, 4]), pl(a=[4, None])]
    assert col(apply_rating_scales(flat, fit_rating_scales(flat, "minmax", ["a"])), "a") == [[3, 3], [3, None]]
    assert col(apply_rating_scales(flat, fit_rating_scales(flat, "zscore", ["a"])), "a") == [[0, 0], [0, None]]


def test_eval_lists_take_the_training_statistics():
    cfg = load_config(None, rating_scale="minmax")
    evals = [pl(a=[150, -50, None], b=[4, 8, 2])]
    train, evals_out, fit = rescale_ratings(cfg, ("a", "b"), TRAIN, evals)
    assert fit["a"] == {"scale": "minmax", "min": 0, "max": 100}
    assert col(evals_out, "a") == [[7, -1, None]]  # the training range 0..100, not the eval's -50..150
    assert col(evals_out, "b") == [[3, 7, 1]]
    assert col(train, "a") == [[1, 3, 5, None], [2, 2, 4, 5]]


def test_option_values_are_checked_where_they_are_given():
    assert parse_rating_scale("a=minmax, b=rank") == {"a": "minmax", "b": "rank"}
    assert load_config(None, ["rating_scale={a: zscore}"]).rating_scale == {"a": "zscore"}
    assert load_config(None).rating_scale == "as_is" == RATING_SCALES[0]
    with pytest.raises(ValueError, match="rating_scale='percent' is not one of as_is, minmax, zscore, rank"):
        load_config(None, rating_scale="percent")
    with pytest.raises(ValueError, match="one of as_is, minmax, zscore, rank"):
        load_config(None, rating_scale={"a": "log"})
    with pytest.raises(ValueError, match=r"names aspect\(s\) \['c'\] that are not trained on"):
        fit_rating_scales(TRAIN, {"c": "minmax"}, ["a", "b"])


# ------------------------------------------------------------- any units train to the same targets


def _one_to_five() -> list[PreferenceList]:
    """Lists rated 1-5 on two aspects, both spanning 1..5 over the data, with a missing rating."""
    return [pl(h=[1, 3, 5, 2], c=[5, 4, 1, 2]), pl(h=[4, 3, 2], c=[3, None, 1]), pl(h=[4, 5], c=[1, 5])]


def _rescaled(lists, f) -> list[PreferenceList]:
    return [pl(**{a: [None if v is None else f(v) for v in r] for a, r in lst.ratings.items()}) for lst in lists]


@pytest.mark.parametrize("units", ["0-100", "reward reals"])
def test_other_units_under_minmax_train_to_the_same_targets_as_1_to_5(units):
    f = (lambda r: 25 * (r - 1)) if units == "0-100" else (lambda r: -3.2 + (r - 1) * (7.9 + 3.2) / 4)
    base, other = _one_to_five(), _rescaled(_one_to_five(), f)
    cfg = load_config(None, rating_scale="minmax")  # tau: the default 0.5
    aspects = ("h", "c")
    scaled, _, fit = rescale_ratings(cfg, aspects, other, [])
    assert [fit[a]["min"] for a in aspects] == pytest.approx([f(1)] * 2)
    assert [fit[a]["max"] for a in aspects] == pytest.approx([f(5)] * 2)
    lam = torch.tensor([[0.7, 0.3], [0.0, 1.0], [0.5, 0.5]])
    targets = []
    for lists in (base, scaled):
        ratings, mask = ratings_tensor(lists, aspects)
        p, usable = aspect_targets(ratings, mask, cfg.rating_temperature)
        mixed, valid = mix_targets(p, usable, lam)
        targets.append((p, usable, mixed, valid))
    (p0, u0, m0, v0), (p1, u1, m1, v1) = targets
    assert torch.equal(u0, u1) and torch.equal(v0, v1)
    assert torch.allclose(p0, p1, atol=1e-6, rtol=0) and torch.allclose(m0, m1, atol=1e-6, rtol=0)
    # as they are, the same lists train to other (one-hot) targets
    raw, mask = ratings_tensor(other, aspects)
    assert not torch.allclose(aspect_targets(raw, mask, cfg.rating_temperature)[0], p0, atol=1e-2)


# ------------------------------------------------------------------------------ the one-hot warning


def _demo_on_0_100(path: Path) -> Path:
    """The demo's training lists with every rating r (1-5) written as 25 (r - 1) (0-100)."""
    with open(DEMO) as src, open(path, "w") as out:
        for line in src:
            record = json.loads(line)
            record["ratings"] = {a: [25 * (v - 1) for v in r] for a, r in record["ratings"].items()}
            out.write(json.dumps(record) + "\n")
    return path


def test_demo_data_does_not_warn_at_the_default_temperature():
    lists, _ = load_lists(str(DEMO), "auto")
    shares = one_hot_shares(lists, 0.5)
    # measured when the threshold was chosen: 14 %, 33 %, 26 %, 8 % of the lists with unequal ratings
    assert {a: round(s["share"], 2) for a, s in shares.items()} == {
        "instruction_following": 0.14, "correctness": 0.33, "conciseness": 0.26, "informativeness": 0.08}
    assert one_hot_warnings(lists, 0.5) == []


def test_validate_data_warns_on_0_100_ratings_and_not_under_minmax(tmp_path, capsys):
    path = str(_demo_on_0_100(tmp_path / "percent.jsonl"))
    assert main(["validate-data", path, "--json"]) == 0
    targets = json.loads(capsys.readouterr().out)["targets"]
    assert targets["rating_temperature"] == 0.5 and targets["rating_scale"] == "as_is"
    assert {a: s["share"] for a, s in targets["nearly_one_hot"].items()} == dict.fromkeys(
        ["instruction_following", "correctness", "conciseness", "informativeness"], 1.0)
    assert len(targets["warnings"]) == 4
    message = targets["warnings"][1]
    for needle in ("'correctness'", "100% of its lists (115/115", "rating_temperature 0.5", "0..100",
                   "Fix: `rating_scale: minmax`", "a larger `rating_temperature`"):
        assert needle in message, needle

    assert main(["validate-data", path]) == 0  # the text summary says the same
    text = capsys.readouterr().out
    assert text.count("WARNING: aspect") == 4 and "correctness            100% of the lists" in text

    assert main(["validate-data", path, "--rating-scale", "minmax", "--json"]) == 0
    targets = json.loads(capsys.readouterr().out)["targets"]
    assert targets["warnings"] == [] and targets["nearly_one_hot"]["correctness"]["share"] == pytest.approx(38 / 115)
    assert main(["validate-data", path, "--rating-temperature", "20", "--json"]) == 0  # 20 / 25: 0.8 per point
    assert json.loads(capsys.readouterr().out)["targets"]["warnings"] == []


def test_training_warns_at_start(caplog):
    lists = _rescaled(_one_to_five(), lambda r: 25 * (r - 1))
    with caplog.at_level(logging.WARNING, logger="lambda_dpo.training.prepare"):
        rescale_ratings(load_config(None), ("h", "c"), lists, [])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and "training data: aspect 'h'" in warned[0] and "rating_scale: minmax" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lambda_dpo.training.prepare"):
        rescale_ratings(load_config(None, rating_scale="minmax"), ("h", "c"), lists, [])
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


# ------------------------------------------------------------------- saved with the model, reapplied


def test_saved_model_keeps_its_scales_and_evaluate_applies_them(tiny_llama_dir, tmp_path):
    """0-100 training data, a held-out file with ratings outside the training range: the model directory
    keeps the fitted statistics, and `evaluate` reproduces training's eval figures only with them (NDCG's
    gains 2^r - 1 differ between 0-100 and 1-5)."""
    from lambda_dpo.evaluate_saved import evaluate_saved
    from lambda_dpo.training.run import train

    def write(path, rows):
        path.write_text("".join(json.dumps({"prompt": p, "responses": [f"{p} {w}" for w in ("yes", "no", "maybe")],
                                            "ratings": {"quality": q, "style": s}}) + "\n" for p, q, s in rows))
        return str(path)

    train_file = write(tmp_path / "train.jsonl", [("Is rain wet?", [0, 60, 100], [10, 30, 50]),
                                                  ("Is fire hot?", [40, 20, 80], [50, None, 20])])
    eval_file = write(tmp_path / "eval.jsonl", [("Is ice cold?", [120, 60, -20], [15, 45, 5]),
                                                ("Is sand dry?", [10, 90, 50], [20, 40, 30])])
    cfg = load_config(None, train_file=train_file, eval_file=eval_file, model_name_or_path=tiny_llama_dir,
                      output_dir=str(tmp_path / "m"), max_steps=2, learning_rate=5e-2, beta=0.5,
                      per_device_train_batch_size=2, reference_cache_dir=None, model_dtype="float32", seed=0,
                      rating_scale={"quality": "minmax", "style": "zscore"})
    result = train(cfg)
    meta = read_model_meta(tmp_path / "m")
    style = [10, 30, 50, 50, 20]
    mean = sum(style) / 5
    std = math.sqrt(sum((v - mean) ** 2 for v in style) / 5)
    assert meta["rating_scale"]["quality"] == {"scale": "minmax", "min": 0, "max": 100}
    assert meta["rating_scale"]["style"] == {"scale": "zscore", "mean": pytest.approx(mean), "std": pytest.approx(std)}
    assert saved_rating_scales(meta) == meta["rating_scale"]
    # the held-out figures are metrics only (transformers' Trainer adds the epoch when it logs them)
    assert "epoch" not in meta["eval_metrics"] and "| epoch |" not in (tmp_path / "m" / MODEL_CARD).read_text()

    expected = {k.removeprefix("eval_"): v for k, v in result.eval_metrics.items() if "/" in k}
    assert math.isfinite(expected["quality/ndcg"])
    got = evaluate_saved(tmp_path / "m", eval_file, reference_cache_dir=None)["metrics"]
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key
    # without the saved scales the 0-100 ratings give other NDCG figures: the check above has teeth
    unscaled = dict(meta, rating_scale={})
    (tmp_path / "m" / "lambda_dpo.json").write_text(json.dumps(unscaled))
    plain = evaluate_saved(tmp_path / "m", eval_file, reference_cache_dir=None)["metrics"]
    assert plain["quality/ndcg"] != pytest.approx(expected["quality/ndcg"], abs=1e-6)
