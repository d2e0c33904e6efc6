"""The held-out signal behind the adaptive lambda source, measured during training.

Every `every` optimiser steps, for each candidate lambda_c the policy is conditioned on lambda_c
and scored on a small validation slice held out from the training lists; the candidate's
performance is the lambda_c-weighted mean over aspects of the listwise NDCG of the implicit
reward against that aspect's ratings. The signal given to `AdaptiveLambda.update` is
- "progress" (default): performance now minus at the previous measurement: sample more the
  trade-offs the model is currently learning fastest;
- "deficit": 1 - performance: sample more the trade-offs the model serves worst.
Cost: M candidates x `len(val_items)` list forwards per update, without gradients.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import torch
from transformers import TrainerCallback

from ..batching import ListCollator, ScoredList
from ..evaluation.listwise import implicit_rewards
from ..evaluation.metrics import ndcg
from ..lambdas import AdaptiveLambda
from ..wrappers import eval_mode
from ..atomic import atomic_write_text
from ..targets import ratings_tensor

STATE_FILE = "lambda_scheduler.json"
ADAPTIVE_SIGNALS = ("progress", "deficit")  # module docstring


def candidate_performance(model, collator: ListCollator, items: Sequence[ScoredList], candidates: torch.Tensor,
                          batch_size: int = 8, chunk_size: int = 1024, score_type: str = "sum") -> torch.Tensor:
    """[M] lambda_c-weighted mean NDCG per candidate under its own conditioning."""
    ratings, mask = ratings_tensor([it.tokens.source for it in items], collator.aspects)
    out = []
    with eval_mode(model):
        for lam in candidates:
            s = implicit_rewards(model, collator, items, lam, batch_size, chunk_size, score_type)
            per_aspect = torch.stack([torch.nanmean(ndcg(s, ratings[..., k], mask)) for k in range(len(lam))])
            rated = ~torch.isnan(per_aspect)
            weights = lam * rated
            out.append((weights * per_aspect.nan_to_num()).sum() / weights.sum().clamp(min=1e-12))
    return torch.stack(out)


class AdaptiveLambdaCallback(TrainerCallback):
    """Measures the signal, updates the source, logs the probabilities, saves them with checkpoints."""

    def __init__(self, source: AdaptiveLambda, collator: ListCollator, val_items: Sequence[ScoredList], every: int,
                 signal: str = "progress", log: Callable[[dict], None] | None = None, **score_kwargs):
        if signal not in ADAPTIVE_SIGNALS:
            raise ValueError(f"adaptive_signal must be 'progress' or 'deficit', got {signal!r}")
        if not val_items:
            raise ValueError("the adaptive lambda source needs a validation slice (adaptive_val_lists >= 1)")
        self.source, self.collator, self.val_items = source, collator, list(val_items)
        self.every, self.signal, self.log, self.score_kwargs = max(1, every), signal, log, score_kwargs
        self.last: torch.Tensor | None = None
        self.batches_trained = 0  # a resumed run draws on from here (see AdaptiveLambda)

    def _measure(self, model) -> torch.Tensor:
        return candidate_performance(model, self.collator, self.val_items, self.source.candidates,
                                     **self.score_kwargs)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.signal == "progress" and self.last is None:
            self.last = self._measure(model)

    def on_substep_end(self, args, state, control, **kwargs):
        self.batches_trained += 1

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.batches_trained += 1
        if state.global_step % self.every:
            return
        perf = self._measure(model)
        signal = perf - self.last if self.signal == "progress" else 1 - perf
        self.last = perf
        probs = self.source.update(signal, state.global_step)
        if self.log is not None:
            should_log = control.should_log  # Trainer.log clears it, which would drop this step's loss log
            self.log({f"lambda_prob/{i}": p for i, p in enumerate(probs.tolist())}
                     | {f"lambda_perf/{i}": v for i, v in enumerate(perf.tolist())}
                     | {"lambda_perf/mean": perf.mean().item()})
            control.should_log = should_log

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / STATE_FILE
        if path.parent.is_dir() and state.is_world_process_zero:
            atomic_write_text(path, json.dumps(self.state_dict()))

    def state_dict(self) -> dict:
        return {"source": self.source.state_dict(), "last": None if self.last is None else self.last.tolist(),
                "candidates": self.source.candidates.tolist(), "batches_trained": self.batches_trained}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the batches after the checkpoint get the probabilities they had in the uninterrupted
        run (it drew the next batch before the checkpoint's update)."""
        self.source.load_state_dict(state["source"])
        self.last = None if state["last"] is None else torch.tensor(state["last"])
        if "batches_trained" in state:  # older checkpoints: every later batch under the saved probabilities
            self.batches_trained = self.source.batches_drawn = int(state["batches_trained"])
