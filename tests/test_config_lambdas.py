"""Config loading/overrides and the lambda sources."""

import pytest
import torch

from lambda_dpo.lambdas import DirichletLambda, FixedLambda, TableLambda, build_lambda_source, parse_lambda
from lambda_dpo.training.config import load_config

ASPECTS = ("helpfulness", "honesty", "conciseness")


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train_file: data.jsonl\nbeta: 0.3\nlearning_rate: 5e-5\naspects: [a, b]\n")
    cfg = load_config(path, ["beta=0.5", "conditioning=none", "max_steps=3"])
    assert cfg.beta == 0.5 and cfg.conditioning == "none" and cfg.max_steps == 3
    assert cfg.learning_rate == pytest.approx(5e-5)  # YAML reads 5e-5 as a string; it is coerced
    assert cfg.aspects == ["a", "b"] and cfg.remove_unused_columns is False


def test_unknown_key_suggests_the_close_one(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'bta'.*beta"):
        load_config(None, ["bta=0.1"])


@pytest.mark.parametrize("override", ["loss_type=dpo", "conditioning=embeddings", "score_type=max", "beta=0"])
def test_invalid_choices_are_rejected(override):
    with pytest.raises(ValueError, match="config"):
        load_config(None, [override])


def test_config_cannot_construct_python_objects(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("beta: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(Exception, match="constructor|python/object"):
        load_config(path)


def test_parse_lambda():
    assert parse_lambda("helpfulness=3,honesty=1", ASPECTS) == {"helpfulness": 0.75, "honesty": 0.25,
                                                                 "conciseness": 0.0}
    for bad, msg in [("helpfulnes=1", "unknown aspect"), ("helpfulness=-1", ">= 0"), ("helpfulness", "aspect=weight"),
                     ("helpfulness=0", "sum to 0"), ("honesty=x", "not a number")]:
        with pytest.raises(ValueError, match=msg):
            parse_lambda(bad, ASPECTS)


def test_fixed_source_is_uniform_by_default_and_normalised():
    assert torch.allclose(FixedLambda(ASPECTS).sample(2), torch.full((2, 3), 1 / 3))
    assert FixedLambda(ASPECTS, {"honesty": 2, "conciseness": 2}).sample(1).tolist() == [[0.0, 0.5, 0.5]]


def test_dirichlet_on_simplex_reproducible_and_resumable():
    src = DirichletLambda(ASPECTS, alpha=0.5, seed=3)
    first = src.sample(1000)
    assert torch.allclose(first.sum(-1), torch.ones(1000)) and (first >= 0).all()
    assert torch.allclose(first.mean(0), torch.full((3,), 1 / 3), atol=0.03)  # symmetric Dirichlet mean
    state = src.state_dict()
    nxt = src.sample(5)
    other = DirichletLambda(ASPECTS, alpha=0.5, seed=99)
    other.load_state_dict(state)
    assert torch.equal(other.sample(5), nxt)
    assert torch.equal(DirichletLambda(ASPECTS, alpha=0.5, seed=3).sample(1000), first)


def test_table_source_follows_probabilities():
    src = TableLambda(ASPECTS, [{"weights": {"helpfulness": 1}, "prob": 3}, {"weights": "honesty=1", "prob": 1}])
    draws = src.sample(4000)
    share = (draws[:, 0] == 1).float().mean().item()
    assert share == pytest.approx(0.75, abs=0.03)
    assert set(map(tuple, draws.tolist())) == {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)}


def test_build_lambda_source_rejects_unknown_kind():
    with pytest.raises(ValueError, match="lambda_source"):
        build_lambda_source("adaptive-ish", ASPECTS)
