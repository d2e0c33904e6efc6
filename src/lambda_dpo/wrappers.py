"""The model as a call receives it: inside distributed and PEFT wrappers, and in training mode.

`unwrap_model` reaches the transformers model (or the PEFT model) under the wrappers; `eval_mode`
runs a block with dropout off and restores the mode the model was in.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["unwrap_model", "eval_mode"]


def unwrap_model(model, *, peft: bool = True) -> torch.nn.Module:
    """The model under its distributed wrappers (DDP, FSDP, DeepSpeed, torch.compile) and, with
    `peft`, under PEFT's wrapper too: the transformers model whose weights, config and input
    embeddings are the base ones (LoRA layers are injected in place). With peft=False the PEFT
    model itself, where what we attach to it (the lambda embedding) lives."""
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model)
    return model.get_base_model() if peft and hasattr(model, "get_base_model") else model


@contextlib.contextmanager
def eval_mode(model):
    """Run the block with `model` in eval mode (no dropout), then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
