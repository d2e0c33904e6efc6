"""The training step: transformers' Trainer with a listwise loss.

The Trainer brings Accelerate (DDP, FSDP, DeepSpeed), mixed precision, checkpoints and logging
callbacks. This class only adds what is specific to lambda-DPO: the loss on implicit rewards of
whole lists, step metrics, and a listwise evaluation.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import defaultdict
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback

from ..atomic import atomic_write_text
from ..batching import ListCollator, ListDataset, ScoredList
from ..conditioning import lambda_prefix, save_lambda_embedding
from ..evaluation.listwise import evaluate_lists
from ..losses import LOSSES, best_reply_nll, lambda_contrast_loss, lambda_dpo_loss, listwise_stats, sequence_scores
from ..saved_model import write_model_files
from ..precision import float32_label, weights_in_float32
from ..layouts import ScoringBatch
from ..logprobs import score_batch
from ..wrappers import unwrap_model
from .config import LambdaDPOConfig
from .guards import NonFiniteGuard
from .prepare import CHECKPOINT_SCORING, adaptive_callback, prepare, score_reference
from .settings import ResolvedSettings, load_policy, scoring_dtype


class _EpochToCollator(TrainerCallback):
    """Tells the collator the epoch, which keys each list's lambda draw (also after a resume)."""

    def __init__(self, collator: ListCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = math.floor(state.epoch or 0)


class LambdaDPOTrainer(Trainer):
    """transformers' Trainer for listwise lambda-DPO, called as TRL's DPOTrainer is:

        LambdaDPOTrainer(model=model, args=LambdaDPOConfig(...), train_dataset=ds, eval_dataset=ds_eval,
                         processing_class=tokenizer)

    model: a causal LM (LoRA is added when `args.use_lora`; an existing adapter is kept) or a name /
    path (loaded by `settings.load_policy`); datasets: a `datasets.Dataset` or records in any supported
    layout (native listwise, UltraFeedback, HelpSteer2 rows, TRL pairwise `prompt`/`chosen`/`rejected`),
    or loaded `PreferenceList`s; processing_class: the tokenizer (loaded with the model when None).
    The lists are validated, tokenised and scored by the reference once, here (`prepare.prepare`).
    `args` is never written to: what its `auto` values became is `self.resolved` (a frozen
    `settings.ResolvedSettings`, logged once). `save_model(dir)` then writes a lambda-dpo model directory
    that `generate` and `export` read, the resolved settings in its lambda_dpo.json.
    Passing `data_collator` instead skips all that: the datasets must then be scored lists.
    """

    args: LambdaDPOConfig
    data_collator: ListCollator

    def __init__(self, model=None, args: LambdaDPOConfig | None = None, data_collator=None, train_dataset=None,
                 eval_dataset=None, processing_class=None, **kwargs):
        self.prepared = None
        self.resolved: ResolvedSettings | None = None  # what runs; None when given a collator (no set-up here)
        if data_collator is None:
            args = args if args is not None else LambdaDPOConfig()
            model, processing_class, choice = load_policy(args, model, processing_class)
            self.prepared = prepare(args, model, processing_class, train_dataset, eval_dataset, choice)
            self.resolved = self.prepared.settings
            model, data_collator = self.prepared.model, self.prepared.collator
            train_dataset = ListDataset(self.prepared.train_items)
            eval_dataset = ListDataset(self.prepared.eval_items) if self.prepared.eval_items else None
        super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)
        self.eval_metrics: dict[str, float] = {}
        self.adaptive = None
        if self.prepared is not None and self.prepared.val_items:  # the adaptive lambda source's scheduler
            self.adaptive = adaptive_callback(self.args, self.log, self.prepared.source, data_collator,
                                              self.prepared.val_items)
            self.add_callback(self.adaptive)
        self.loss_fn = LOSSES[self.args.loss_type]
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self.add_callback(_EpochToCollator(self.data_collator))
        self.nonfinite = NonFiniteGuard(self, self.args.max_nonfinite_steps)  # NaN/inf steps: skip, count, stop
        self.add_callback(self.nonfinite)

    def train(self, *args, **kwargs):
        output = super().train(*args, **kwargs)
        output.metrics["train_nonfinite_steps"] = self.nonfinite.total
        self.nonfinite.raise_if_stopped()  # after the Trainer saved the checkpoint of the last finite weights
        return output

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.nonfinite.check_loss(loss)
        return loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Implicit rewards of every response of every list, then the configured listwise loss."""
        cfg = self.args
        batch = ScoringBatch.from_dict(inputs, "policy_")
        prefix = lambda_prefix(model, inputs["lam"]) if batch.n_prefix else None  # embedding conditioning
        policy_logps, n_tokens = score_batch(model, batch, cfg.logprob_chunk_size, prefix)
        scores = sequence_scores(policy_logps, inputs["ref_logps"], n_tokens, cfg.score_type)
        per_list = self.loss_fn(scores, inputs["target"], inputs["mask"], cfg.beta)
        if inputs["valid"].any():  # the listwise term alone, to read against the logged target_entropy
            self._metrics["loss/listwise"].append(per_list.detach()[inputs["valid"]].mean().item())
        if cfg.rpo_alpha:  # conditioned likelihood of the reply lambda prefers
            nll = best_reply_nll(policy_logps, n_tokens, inputs["target"], inputs["mask"])
            per_list = per_list + cfg.rpo_alpha * nll
            self._metrics["nll_best"].append(nll.detach().mean().item())
        if cfg.contrast_alpha:  # lambda_contrast: the batch is the lists under lambda a, then under lambda b
            half, target, mask = scores.shape[0] // 2, inputs["target"], inputs["mask"]
            rel = lambda_contrast_loss(scores[:half], scores[half:], target[:half], target[half:], mask[:half], cfg.beta)
            per_list = per_list + cfg.contrast_alpha * rel.repeat(2) / 2  # each copy carries half
            self._metrics["loss/contrast"].append(rel.detach().mean().item())
        valid = inputs["valid"].to(per_list.dtype)
        loss = (per_list * valid).sum() / valid.sum().clamp(min=1)
        self._record(scores.detach(), inputs)
        return (loss, {"scores": scores}) if return_outputs else loss

    @torch.no_grad()
    def _record(self, scores: torch.Tensor, inputs: dict) -> None:
        """Step metrics: per-aspect listwise loss, top-1 accuracy, reward margin, lambda stats."""
        mask, valid = inputs["mask"], inputs["valid"]
        stats = listwise_stats(scores, inputs["target"], mask)
        for name, values in stats.items():
            if valid.any():
                self._metrics[name].append(values[valid].mean().item())
        self._metrics["lists_without_target"].append((~valid).sum().item())
        aspects = self.data_collator.aspects
        for k, aspect in enumerate(aspects):
            usable = inputs["aspect_usable"][:, k]
            if usable.any():
                loss_k = lambda_dpo_loss(scores[usable], inputs["aspect_target"][usable, :, k], mask[usable],
                                         self.args.beta)
                self._metrics[f"loss/{aspect}"].append(loss_k.mean().item())
            self._metrics[f"lambda/{aspect}"].append(inputs["lam"][:, k].mean().item())

    def _model_dtype(self) -> str:
        """The policy's dtype: the resolved one, or (given a collator, so no set-up) its weights'."""
        if self.resolved is not None:
            return self.resolved.model_dtype
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    def _fp32_reference(self, items: list[ScoredList]) -> list[ScoredList]:
        """`items` with their reference scored by the fp32 weights (eval_dtype: float32; cached on disk)."""
        scored = score_reference(self.args, self.model, [it.tokens for it in items], self.data_collator.layout,
                                 "eval, float32", dtype=float32_label(self._model_dtype()))
        return [ScoredList(it.tokens, ref.ref_logps, it.index) for it, ref in zip(items, scored)]

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The adapter/model as usual, plus the lambda embedding when conditioning is 'embedding'."""
        self.nonfinite.check_weights(self.model, output_dir)  # never a NaN model on disk
        super().save_model(output_dir, _internal_call)
        out = Path(output_dir or self.args.output_dir)
        if self.is_world_process_zero():
            save_lambda_embedding(unwrap_model(self.model, peft=False), out)
            if _internal_call:  # a checkpoint: how its run scored cut replies (checked when it is resumed)
                atomic_write_text(out / CHECKPOINT_SCORING, json.dumps({"score_cut_ends": self.args.score_cut_ends}))
            if self.resolved is not None and not _internal_call:  # a model directory generate/export can read
                res = self.resolved
                write_model_files(out, self.args, res.aspects, self.eval_metrics, res.lambda_text, res.rating_scale,
                                  resolved=res.as_dict())

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs and self._metrics:
            logs.update({k: sum(v) / len(v) for k, v in self._metrics.items() if v})
            logs["lists_without_target"] = sum(self._metrics.get("lists_without_target", [0]))
            logs["nonfinite_steps"] = self.nonfinite.total
            self._metrics.clear()
        super().log(logs, *args, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Per-aspect top-1 / NDCG / Kendall of the implicit reward on the held-out lists."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None or len(dataset) == 0:
            return {}
        fp32 = scoring_dtype(self.args.eval_dtype, self._model_dtype()) != self._model_dtype()
        with weights_in_float32(self.model) if fp32 else contextlib.nullcontext():
            items = self._fp32_reference(dataset.items) if fp32 else dataset.items
            metrics = evaluate_lists(self.model, self.data_collator, items,
                                     batch_size=self.args.per_device_eval_batch_size,
                                     chunk_size=self.args.logprob_chunk_size, score_type=self.args.score_type)
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in metrics.items()}
        self.eval_metrics = dict(metrics)  # a copy: log() adds the epoch, which is no metric of the model
        self.log(metrics)
        return metrics
