"""The top-level API: the names a user calls import from `lambda_dpo`, lazily."""

import subprocess
import sys

import pytest
from conftest import REPO

import lambda_dpo

SRC = REPO / "src" / "lambda_dpo"


def test_the_user_names_import_from_the_package():
    from lambda_dpo import (LambdaDPOConfig, LambdaDPOTrainer, LambdaText, export_model, generate, load_lists,
                            load_model, load_steerable, load_tokenizer)
    from lambda_dpo.conditioning import LambdaText as defined
    from lambda_dpo.training import LambdaDPOConfig as config, LambdaDPOTrainer as trainer

    assert (LambdaDPOConfig, LambdaDPOTrainer, LambdaText) == (config, trainer, defined)
    assert all(callable(f) for f in (export_model, generate, load_lists, load_model, load_steerable, load_tokenizer))


def test_all_and_dir_list_every_public_name():
    assert "LambdaDPOTrainer" in lambda_dpo.__all__ and "load_model" in lambda_dpo.__all__
    for name in lambda_dpo.__all__:
        assert getattr(lambda_dpo, name) is not None, name
        assert name in dir(lambda_dpo), name


def test_no_public_name_is_a_submodule_name():
    """Importing a submodule sets the package attribute of its name, which would shadow the function."""
    submodules = {p.stem for p in SRC.glob("*.py")} | {p.parent.name for p in SRC.glob("*/__init__.py")}
    assert not set(lambda_dpo.__all__) & submodules


def test_an_unknown_name_is_an_attribute_error_naming_the_module():
    with pytest.raises(AttributeError, match="module 'lambda_dpo' has no attribute 'LambdaDPOTrainr'"):
        lambda_dpo.LambdaDPOTrainr
    with pytest.raises(ImportError):
        from lambda_dpo import no_such_name  # noqa: F401


def test_importing_the_package_loads_neither_torch_nor_transformers():
    code = ("import sys, lambda_dpo; heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'accelerate', 'peft', 'datasets')); assert not heavy, heavy; "
            "lambda_dpo.LambdaText; assert 'torch' in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]

