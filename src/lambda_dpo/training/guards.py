"""Numerical faults: a NaN/inf loss or gradient never reaches the weights, and never reaches disk.

`NonFiniteGuard` is a Trainer callback. Just before each optimiser step (after gradient
accumulation, all-reduce and clipping) it checks the step's losses and gradients:

- finite: nothing happens;
- not finite: every gradient is dropped (`zero_grad(set_to_none=True)`). PyTorch's optimisers
  skip parameters whose `.grad` is None, so the step changes neither the weights nor the
  optimiser state (AdamW applies no weight decay and no moment update to them). The step is
  counted (`nonfinite_steps` in the logs, `train_nonfinite_steps` in the train metrics);
- `max_consecutive` faults in a row: a checkpoint is saved (the weights of the last finite step)
  and `train()` raises `NonFiniteError` naming it.

With several processes the decision is reduced over all of them, so they all skip together.
Limits: under fp16 with a GradScaler, gradient overflow is the scaler's job (it skips the step
and lowers the scale; inf gradients are expected while it calibrates), so only non-finite
losses are counted. Under DeepSpeed the gradients live inside the engine: the guard sees the
loss only and cannot drop the step (it still counts and stops the run).

`check_weights` is called before every save: weights with a NaN/inf are never written.
"""

from __future__ import annotations

import os

import torch
from transformers import TrainerCallback


class NonFiniteError(RuntimeError, ValueError):
    """Training produced NaN/inf values (a ValueError too, so the CLI prints it without a traceback)."""


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t  # FSDP2 DTensor shards


def all_finite(tensors) -> bool:
    """True when every tensor (None entries ignored) holds only finite values."""
    flags = [torch.isfinite(_local(t)).all() for t in tensors if t is not None and t.numel()]
    return bool(torch.stack(flags).all()) if flags else True


class NonFiniteGuard(TrainerCallback):
    def __init__(self, trainer, max_consecutive: int):
        self.trainer, self.max_consecutive = trainer, max_consecutive
        self.total = 0  # skipped steps in this train() call
        self.consecutive = 0
        self.loss_bad = False  # a non-finite loss among this step's micro-batches
        self.error: str | None = None  # set when the run must stop

    def check_loss(self, loss: torch.Tensor) -> None:
        """Called after each micro-batch's backward."""
        if not torch.isfinite(loss.detach()).all():
            self.loss_bad = True

    def on_train_begin(self, args, state, control, **kwargs):
        self.total, self.consecutive, self.loss_bad, self.error = 0, 0, False, None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        accelerator = self.trainer.accelerator
        bad = self.loss_bad
        if not bad and accelerator.scaler is None:
            bad = not all_finite(p.grad for p in model.parameters())
        self.loss_bad = False
        if accelerator.num_processes > 1:  # every process takes the same decision
            flag = torch.tensor([float(bad)], device=accelerator.device)
            bad = bool(accelerator.reduce(flag, reduction="sum").item() > 0)
        if not bad:
            self.consecutive = 0
            return
        model.zero_grad(set_to_none=True)  # the optimiser skips parameters without a gradient
        self.total += 1
        self.consecutive += 1
        step = state.global_step + 1
        if self.consecutive >= self.max_consecutive:
            checkpoint = os.path.join(args.output_dir, f"checkpoint-{step}")
            self.error = (f"training stopped at step {step}: {self.consecutive} consecutive optimiser steps had a "
                          f"non-finite (NaN/inf) loss or gradient ({self.total} in this run). Each was skipped, so "
                          f"the weights are those of the last finite step; they are saved in {checkpoint} "
                          "(resume with resume_from_checkpoint=latest). Fix: lower learning_rate or beta, check "
                          "the data summary, prefer bfloat16/float32 over float16, or raise max_nonfinite_steps")
            control.should_save = True
            control.should_training_stop = True

    def check_weights(self, model, output_dir: str | None) -> None:
        """Raise instead of saving weights that hold a NaN/inf (trainable parameters are checked)."""
        params = [p for p in model.parameters() if p.requires_grad]
        if not all_finite(params):
            names = [n for n, p in model.named_parameters() if p.requires_grad and not all_finite([p])][:3]
            raise NonFiniteError(f"refusing to save non-finite weights to {output_dir} (NaN/inf in {', '.join(names)}"
                                 f"{', ...' if len(names) == 3 else ''}); resume from the last checkpoint instead")

    def raise_if_stopped(self) -> None:
        if self.error:
            raise NonFiniteError(self.error)
