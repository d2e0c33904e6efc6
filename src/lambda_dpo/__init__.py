"""lambda-dpo: multi-preference, lambda-weighted, listwise DPO for small causal language models.

The names a user calls are importable from the package itself, as TRL's are
(``from lambda_dpo import LambdaDPOConfig, LambdaDPOTrainer``). Each is imported on first use
(PEP 562), so ``import lambda_dpo`` loads neither torch nor transformers.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it (relative to this package). No name here may be that of a
# submodule (`evaluate_saved`, say): importing the submodule would set the package attribute to the module.
_EXPORTS = {
    "LambdaDPOConfig": "training.config",
    "load_config": "training.config",
    "LambdaDPOTrainer": "training.trainer",
    "train": "training.run",
    "load_model": "models",
    "load_tokenizer": "models",
    "load_lists": "data",
    "PreferenceList": "data",
    "LambdaText": "conditioning",
    "load_steerable": "generation",
    "generate": "generation",
    "SteerableModel": "generation",
    "export_model": "export",
    "sweep_edge": "evaluation.protocol",
    "steerability": "evaluation.protocol",
    "memory_estimate": "memory",
    "label": "labeling",
    "LabelConfig": "labeling",
    "load_label_config": "labeling",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
