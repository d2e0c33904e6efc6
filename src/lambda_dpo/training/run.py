"""One training run, end to end: records -> lists -> tokens -> reference -> Trainer -> saved model.

Each arrow is a call into one module; this file only wires them and reports what was dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..atomic import atomic_write_text
from ..batching import ListCollator, ListDataset, ScoredList
from ..conditioning import EMBEDDING_FILE, LambdaText, attach_lambda_embedding, load_lambda_embedding
from ..data import PreferenceList, format_summary, load_lists, summarize
from ..data.schema import select_aspects
from ..lambdas import build_lambda_source
from ..model_dir import mark_incomplete, write_model_files
from ..models import default_cache_dir, load_model, load_tokenizer, resolve_model_dtype
from ..reference import reference_logps
from ..scoring import choose_layout
from ..tokenization import TokenizedList, tokenize_lists
from .config import LambdaDPOConfig
from .trainer import LambdaDPOTrainer

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    output_dir: Path
    aspects: tuple[str, ...]
    train_metrics: dict
    eval_metrics: dict
    trainer: LambdaDPOTrainer


def infer_aspects(lists: Sequence[PreferenceList]) -> tuple[str, ...]:
    """Aspects in order of first appearance."""
    seen: dict[str, None] = {}
    for lst in lists:
        seen.update(dict.fromkeys(lst.aspects))
    return tuple(seen)


def split_eval(lists: list[PreferenceList], fraction: float, seed: int) -> tuple[list, list]:
    """Seeded hold-out of ceil(fraction * n) lists (none when fraction is 0)."""
    if fraction <= 0 or len(lists) < 2:
        return lists, []
    order = torch.randperm(len(lists), generator=torch.Generator().manual_seed(seed)).tolist()
    n_eval = min(len(lists) - 1, max(1, math.ceil(fraction * len(lists))))
    held = set(order[:n_eval])
    return [l for i, l in enumerate(lists) if i not in held], [l for i, l in enumerate(lists) if i in held]


def load_data(cfg: LambdaDPOConfig) -> tuple[list[PreferenceList], list[PreferenceList], tuple[str, ...]]:
    """Train and eval lists plus the aspect order; prints each load summary (rejections included).

    With `aspects` set, only those aspects are trained on; the data's other aspects are ignored
    (one log line names them) and lists that rate none of the chosen aspects are dropped and counted.
    """
    if not cfg.train_file:
        raise ValueError("config: train_file is required (a .jsonl/.json/.parquet file or a datasets dir)")

    def load(path: str, name: str) -> list[PreferenceList]:
        lists, report = load_lists(path, cfg.data_format, skip_bad=cfg.skip_bad_records)
        logger.info("%s data\n%s", name, format_summary(summarize(lists, report)))
        if not cfg.aspects:
            return lists
        lists, ignored, dropped = select_aspects(lists, cfg.aspects, path)
        if ignored:
            logger.info("%s data: aspects %s are not in `aspects` and are ignored", name, ", ".join(ignored))
        if dropped:
            logger.warning("%s data: %d lists dropped (no_usable_aspect among %s)", name, dropped, cfg.aspects)
        return lists

    train = load(cfg.train_file, "training")
    if cfg.eval_file:
        evals = load(cfg.eval_file, "eval")
    else:
        train, evals = split_eval(train, cfg.eval_fraction, cfg.seed)
    train = train[: cfg.max_train_lists] if cfg.max_train_lists else train
    evals = evals[: cfg.max_eval_lists] if cfg.max_eval_lists else evals
    aspects = tuple(cfg.aspects) if cfg.aspects else infer_aspects(train)
    if not train:
        raise ValueError(f"{cfg.train_file}: no usable training lists (see the rejection summary above)")
    return train, evals, aspects


def prepare_model(cfg: LambdaDPOConfig):
    """Tokenizer and model (LoRA-wrapped when use_lora)."""
    tokenizer = load_tokenizer(cfg.model_name_or_path, trust_remote_code=cfg.trust_remote_code)
    # `auto` becomes the dtype it picks here, so the reference cache key, config.yaml and lambda_dpo.json
    # (what `generate` loads) name the dtype that actually ran.
    cfg.model_dtype, why = resolve_model_dtype(cfg.model_dtype, cfg.device, trains_base_weights=not cfg.use_lora)
    logger.info("model_dtype: %s (%s)%s", cfg.model_dtype, why,
                "; LoRA weights, optimiser states, log-softmax and loss in fp32, products under autocast"
                if cfg.model_dtype != "float32" and cfg.use_lora else "")
    model = load_model(cfg.model_name_or_path, dtype=cfg.model_dtype, trust_remote_code=cfg.trust_remote_code)
    if cfg.use_lora:
        from peft import LoraConfig, get_peft_model

        targets = cfg.lora_target_modules
        targets = targets if targets == "all-linear" else [t.strip() for t in targets.split(",")]
        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                                 target_modules=targets, task_type="CAUSAL_LM"))
    return tokenizer, model


def lambda_text(cfg: LambdaDPOConfig) -> LambdaText:
    return LambdaText(cfg.lambda_text, dict(cfg.aspect_instructions or {}))


def score_reference(cfg: LambdaDPOConfig, model, lists: list[TokenizedList], layout: str, name: str) -> list[ScoredList]:
    cache = None if cfg.reference_cache_dir is None else (
        default_cache_dir() / "reference" if cfg.reference_cache_dir == "auto" else Path(cfg.reference_cache_dir))
    ref = reference_logps(model, lists, cache, settings={"dtype": cfg.model_dtype, "layout": layout},
                          batch_size=cfg.reference_batch_size, layout=layout, chunk_size=cfg.logprob_chunk_size,
                          desc=f"reference log-probs ({name})")
    return [ScoredList(tl, r, i) for i, (tl, r) in enumerate(zip(lists, ref))]


def adaptive_callback(cfg, trainer, source, collator, val_items):
    """The adaptive lambda source's callback, restored from the checkpoint being resumed if any."""
    from .adaptive_lambda import STATE_FILE, AdaptiveLambdaCallback

    callback = AdaptiveLambdaCallback(source, collator, val_items, cfg.adaptive_every, cfg.adaptive_signal,
                                      log=trainer.log, batch_size=cfg.per_device_eval_batch_size,
                                      chunk_size=cfg.logprob_chunk_size, score_type=cfg.score_type)
    checkpoint = resume_checkpoint(cfg)
    if checkpoint and (Path(checkpoint) / STATE_FILE).exists():
        callback.load_state_dict(json.loads((Path(checkpoint) / STATE_FILE).read_text()))
    return callback


def resume_checkpoint(cfg: LambdaDPOConfig) -> str | None:
    """`resume_from_checkpoint`: a checkpoint dir, or 'latest' for the newest complete one in output_dir.

    Complete = its trainer_state.json (the Trainer writes it after the weights, optimizer, scheduler
    and RNG states) reads as JSON: a run killed while saving leaves a newer, incomplete checkpoint,
    which is skipped with a warning.
    """
    value = cfg.resume_from_checkpoint
    if value in (None, "", False):
        return None
    if str(value).lower() not in {"latest", "true", "auto"}:
        return str(value)
    out = Path(cfg.output_dir)
    found = [p for p in out.iterdir() if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)] if out.is_dir() else []
    for ckpt in sorted(found, key=lambda p: int(p.name.split("-")[1]), reverse=True):
        try:
            if "global_step" in json.loads((ckpt / "trainer_state.json").read_text()):
                return str(ckpt)
        except (OSError, ValueError):
            pass
        logger.warning("skipping incomplete checkpoint %s (no readable trainer_state.json; the run was probably "
                       "stopped while saving it)", ckpt)
    return None


def _whole_weights(model):
    """DeepSpeed ZeRO-3 partitions the weights as the model loads (zero.Init); the reference needs
    them whole. Every process must enter this (the gather is a collective)."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)


def train(cfg: LambdaDPOConfig, callbacks: Sequence = ()) -> RunResult:
    """Run one training job described by `cfg`; returns where the model was saved and the metrics.

    `callbacks`: extra transformers TrainerCallbacks (for tests and monitoring).
    """
    from transformers import set_seed

    set_seed(cfg.seed)  # the adapter's (and soft prompt's) initial weights depend on it, not on earlier RNG use
    train_lists, eval_lists, aspects = load_data(cfg)
    tokenizer, model = prepare_model(cfg)
    if not getattr(cfg, "deepspeed", None):  # score the reference on the training device (DeepSpeed places it itself)
        model.to(cfg.device)
    layout = choose_layout(model, cfg.shared_prompt, cfg.shared_prompt_layout, cfg.gradient_checkpointing)
    logger.info("scoring layout: %s", layout)

    tokenized = {}
    for name, lists in (("train", train_lists), ("eval", eval_lists)):
        tokenized[name], trunc = tokenize_lists(tokenizer, lists, cfg.max_prompt_length, cfg.max_response_length,
                                                skip_bad=True, truncation=cfg.truncation)
        logger.info("%s: %d lists tokenised; %d prompts and %d responses truncated; rejected: %s", name,
                    len(tokenized[name]), trunc.prompts_truncated, trunc.responses_truncated,
                    dict(trunc.rejected) or "none")
        for reason, example in trunc.examples.items():
            logger.warning("rejected (%s), e.g. %s", reason, example)
    # Reference before the first optimiser step: for full fine-tuning these are the initial weights.
    # With several processes the main one computes and caches it; the others then read the cache.
    # Under ZeRO-3 every process first gathers the partitioned weights.
    with _whole_weights(model), cfg.main_process_first(desc="reference log-probs"):
        train_items = score_reference(cfg, model, tokenized["train"], layout, "train")
        eval_items = score_reference(cfg, model, tokenized["eval"], layout, "eval") if tokenized["eval"] else []

    source = build_lambda_source(cfg.lambda_source, aspects, fixed=cfg.lambda_fixed, alpha=cfg.dirichlet_alpha,
                                 table=cfg.lambda_table, seed=cfg.seed, grid_steps=cfg.lambda_grid_steps, adaptive=dict(
                                     n_random=cfg.adaptive_candidates, temperature=cfg.adaptive_temperature,
                                     floor=cfg.adaptive_floor))
    if cfg.conditioning == "embedding":  # after the reference: it never sees the soft prompt
        checkpoint = resume_checkpoint(cfg)
        if checkpoint and (Path(checkpoint) / EMBEDDING_FILE).exists():
            load_lambda_embedding(model, checkpoint)
        else:
            attach_lambda_embedding(model, tokenizer, len(aspects), cfg.embedding_tokens)
    collator = ListCollator(tokenizer, aspects, source, cfg.conditioning, cfg.rating_temperature, layout,
                            cfg.embedding_tokens, lambda_text(cfg), cfg.lambda_contrast)
    val_items = []
    if cfg.lambda_source == "adaptive":  # the adaptive source's signal comes from lists it never trains on
        val_items, train_items = train_items[-cfg.adaptive_val_lists:], train_items[:-cfg.adaptive_val_lists]
        train_items = [ScoredList(it.tokens, it.ref_logps, i) for i, it in enumerate(train_items)]
    trainer = LambdaDPOTrainer(model=model, args=cfg, data_collator=collator, train_dataset=ListDataset(train_items),
                               eval_dataset=ListDataset(eval_items) if eval_items else None,
                               processing_class=tokenizer)
    adaptive = adaptive_callback(cfg, trainer, source, collator, val_items) if val_items else None
    if adaptive:
        trainer.add_callback(adaptive)
    for callback in callbacks:
        trainer.add_callback(callback)
    train_metrics = trainer.train(resume_from_checkpoint=resume_checkpoint(cfg)).metrics
    eval_metrics = trainer.evaluate() if eval_items else {}
    out = Path(cfg.output_dir)
    if trainer.is_world_process_zero():  # lambda_dpo.json marks a complete model: none while the weights are written
        mark_incomplete(out)
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        write_model_files(out, cfg, aspects, eval_metrics, lambda_text(cfg))
        if adaptive:  # candidates and their probabilities over time
            atomic_write_text(out / "lambda_schedule.json", json.dumps(adaptive.state_dict(), indent=1))
    return RunResult(out, aspects, train_metrics, eval_metrics, trainer)
