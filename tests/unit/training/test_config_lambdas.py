"""Config loading/overrides and the lambda sources."""

from types import SimpleNamespace

import pytest
import torch

from lambda_dpo.lambdas import (LAMBDA_SOURCES, AdaptiveLambda, DirichletLambda, FixedLambda, GridLambda, TableLambda,
                                build_lambda_source, parse_lambda)
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


KEYS = [(0, i) for i in range(4000)]


def test_fixed_source_is_uniform_by_default_and_normalised():
    assert torch.allclose(FixedLambda(ASPECTS).draw([(0, 0), (0, 1)]), torch.full((2, 3), 1 / 3))
    assert FixedLambda(ASPECTS, {"honesty": 2, "conciseness": 2}).draw([(0, 5)]).tolist() == [[0.0, 0.5, 0.5]]


def test_dirichlet_on_simplex_with_the_right_mean_and_spread():
    draws = DirichletLambda(ASPECTS, alpha=0.5, seed=3).draw(KEYS)
    assert torch.allclose(draws.sum(-1), torch.ones(len(KEYS))) and (draws >= 0).all()
    assert torch.allclose(draws.mean(0), torch.full((3,), 1 / 3), atol=0.02)  # symmetric Dirichlet mean
    # Var of one coordinate of Dirichlet(alpha * 1_K): (1/K)(1 - 1/K) / (K*alpha + 1) = (2/9) / 2.5
    assert draws[:, 0].var().item() == pytest.approx((2 / 9) / 2.5, rel=0.1)


def test_draws_are_a_function_of_seed_and_key_only():
    """What makes resumption and multi-process training exact: no hidden sampler state."""
    src = DirichletLambda(ASPECTS, seed=3)
    keys = [(0, 7), (1, 7), (0, 8)]
    together = src.draw(keys)
    apart = torch.cat([DirichletLambda(ASPECTS, seed=3).draw([k]) for k in reversed(keys)]).flip(0)
    assert torch.equal(together, apart)
    assert not torch.equal(together[0], together[1])  # same list, next epoch: a fresh lambda
    assert not torch.equal(together, DirichletLambda(ASPECTS, seed=4).draw(keys))


def test_table_source_follows_probabilities():
    src = TableLambda(ASPECTS, [{"weights": {"helpfulness": 1}, "prob": 3}, {"weights": "honesty=1", "prob": 1}])
    draws = src.draw(KEYS)
    share = (draws[:, 0] == 1).float().mean().item()
    assert share == pytest.approx(0.75, abs=0.03)
    assert set(map(tuple, draws.tolist())) == {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)}


def test_build_lambda_source_rejects_unknown_kind():
    with pytest.raises(ValueError, match="lambda_source"):
        build_lambda_source(SimpleNamespace(lambda_source="adaptive-ish"), ASPECTS)


def test_every_lambda_source_is_built_from_the_config():
    """The registry is what prepare uses and what the config accepts: each name builds its class from the
    config's fields."""
    expected = {"fixed": FixedLambda, "dirichlet": DirichletLambda, "grid": GridLambda, "table": TableLambda,
                "adaptive": AdaptiveLambda}
    assert set(LAMBDA_SOURCES) == set(expected)
    for name, cls in expected.items():
        cfg = load_config(None, lambda_source=name, aspects=list(ASPECTS), lambda_grid_steps=2, dirichlet_alpha=0.5,
                          lambda_table=[{"weights": {"helpfulness": 1}, "prob": 1}] if name == "table" else None,
                          lambda_fixed="honesty=1" if name == "fixed" else None, seed=3)
        source = build_lambda_source(cfg, ASPECTS)
        assert type(source) is cls and source.seed == 3
    grid = build_lambda_source(load_config(None, lambda_source="grid", lambda_grid_steps=2), ASPECTS)
    assert grid.points.shape == (6, 3)
    assert build_lambda_source(load_config(None, lambda_source="dirichlet", dirichlet_alpha=0.5), ASPECTS).alpha == 0.5
