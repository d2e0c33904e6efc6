"""From data to what the Trainer needs: lists -> tokens -> reference -> a collator and scored lists.

`prepare` is what `LambdaDPOTrainer` runs when it is given data (TRL's shape:
`LambdaDPOTrainer(model=..., args=LambdaDPOConfig(...), train_dataset=..., processing_class=tok)`);
`run.train` (the CLI) reaches it the same way. Data may be a `datasets.Dataset` or any iterable of
records in a supported layout (native listwise, UltraFeedback, HelpSteer2 rows, TRL pairwise), or
lists already loaded (`PreferenceList`s). The config is only read: what its `auto` values become is
`settings.ResolvedSettings`, resolved once here. `tokenize`, `set_up_layout`, `score_reference` and
`build_collator` are the steps `lambda-dpo evaluate` (`evaluate_saved`) takes too, on a saved model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..batching import ListCollator, ScoredList
from ..conditioning import (EMBEDDING_FILE, LambdaText, aspect_instruction, attach_lambda_embedding,
                            load_lambda_embedding)
from ..data import PreferenceList, format_summary, load_lists, summarize
from ..data.schema import select_aspects
from ..lambdas import LambdaSource, build_lambda_source
from ..models import default_cache_dir
from ..rating_scales import apply_rating_scales, fit_rating_scales, one_hot_warnings
from ..reference import reference_logps
from ..layouts import choose_layout
from ..segment_attention import install as install_segments
from ..sharding import ZERO3_LAYOUT_ERROR
from ..tokenization import TokenizedList, tokenize_lists
from .config import LambdaDPOConfig
from .settings import ModelChoice, ResolvedSettings, choose_model, resolve_settings

logger = logging.getLogger(__name__)


@dataclass
class Prepared:
    """model: the policy (LoRA-wrapped when `use_lora`); items: scored lists for training, evaluation
    and (adaptive source only) the scheduler's held-out validation; aspects: lambda's order."""

    model: Any
    collator: ListCollator
    source: LambdaSource
    aspects: tuple[str, ...]
    train_items: list[ScoredList]
    eval_items: list[ScoredList]
    val_items: list[ScoredList]
    rating_scales: dict = field(default_factory=dict)  # each aspect's fitted `rating_scale`, saved with the model
    settings: ResolvedSettings | None = None  # what runs (`settings.resolve_settings`), saved with the model


def lambda_text(cfg: LambdaDPOConfig) -> LambdaText:
    return LambdaText(cfg.lambda_text, dict(cfg.aspect_instructions or {}), cfg.lambda_text_order)


def infer_aspects(lists: Sequence[PreferenceList]) -> tuple[str, ...]:
    """Aspects in order of first appearance."""
    seen: dict[str, None] = {}
    for lst in lists:
        seen.update(dict.fromkeys(lst.aspects))
    return tuple(seen)


def as_lists(data, cfg: LambdaDPOConfig, name: str) -> list[PreferenceList]:
    """PreferenceLists from a Dataset / records (loaded and validated like a file) or as given;
    restricted to `cfg.aspects` when set (the data's other aspects ignored with one log line)."""
    rows = [] if data is None else data if hasattr(data, "column_names") else list(data)
    if not len(rows):
        return []
    if all(isinstance(r, PreferenceList) for r in rows):
        lists = list(rows)
    else:
        lists, report = load_lists(rows, cfg.data_format, skip_bad=cfg.skip_bad_records)
        logger.info("%s data\n%s", name, format_summary(summarize(lists, report)))
    if not cfg.aspects:
        return lists
    lists, ignored, dropped = select_aspects(lists, cfg.aspects, name)
    if ignored:
        logger.info("%s data: aspects %s are not in `aspects` and are ignored", name, ", ".join(ignored))
    if dropped:
        logger.warning("%s data: %d lists dropped (no_usable_aspect among %s)", name, dropped, cfg.aspects)
    return lists


def rescale_ratings(cfg: LambdaDPOConfig, aspects: Sequence[str], train_lists: list[PreferenceList],
                    eval_lists: list[PreferenceList]) -> tuple[list[PreferenceList], list[PreferenceList], dict]:
    """Both sets of lists under `rating_scale`, its statistics fitted on the training lists alone, and the
    fitted scales (saved with the model, so `lambda-dpo evaluate` applies the same transform); warns per
    aspect whose training targets are nearly one-hot at `rating_temperature` (lambda_dpo.rating_scales)."""
    scales = fit_rating_scales(train_lists, cfg.rating_scale, aspects)  # logged with the resolved settings
    train_lists, eval_lists = apply_rating_scales(train_lists, scales), apply_rating_scales(eval_lists, scales)
    for message in one_hot_warnings(train_lists, cfg.rating_temperature):
        logger.warning("training data: %s", message)
    return train_lists, eval_lists, scales


def with_lora(model, cfg: LambdaDPOConfig):
    """The model with a fresh LoRA adapter when `use_lora` (unless it already has one)."""
    if not cfg.use_lora or hasattr(model, "peft_config"):
        return model
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    set_seed(cfg.seed)  # the adapter's initial weights depend on the seed only, not on earlier RNG use
    targets = cfg.lora_target_modules
    targets = targets if targets == "all-linear" else [t.strip() for t in targets.split(",")]
    return get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                            target_modules=targets, task_type="CAUSAL_LM"))


def score_reference(cfg: LambdaDPOConfig, model, lists: list[TokenizedList], layout: str, name: str,
                    dtype: str) -> list[ScoredList]:
    """Reference log-probs of `lists` (cached); `dtype` names the weights' dtype (the resolved model_dtype,
    or `precision.float32_label` of it for fp32 scoring; it keys the cache). The attention kernel keys it
    too: eager and sdpa round bf16 differently, and a reference from the other kernel would be a silent mix."""
    cache = None if cfg.reference_cache_dir is None else (
        default_cache_dir() / "reference" if cfg.reference_cache_dir == "auto" else Path(cfg.reference_cache_dir))
    settings = {"dtype": dtype, "layout": layout,
                "attn_implementation": getattr(model.config, "_attn_implementation", None)}
    ref = reference_logps(model, lists, cache, settings=settings,
                          batch_size=cfg.reference_batch_size, layout=layout, chunk_size=cfg.logprob_chunk_size,
                          desc=f"reference log-probs ({name})")
    return [ScoredList(tl, r, i) for i, (tl, r) in enumerate(zip(lists, ref))]


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


CHECKPOINT_SCORING = "lambda_dpo_scoring.json"  # written into every checkpoint (LambdaDPOTrainer.save_model)


def check_resume_scoring(cfg: LambdaDPOConfig, open_ends: int) -> None:
    """Refuse to resume, with open-ended cut replies, a checkpoint saved before `score_cut_ends` existed
    (it has no CHECKPOINT_SCORING file): that run scored an end of turn after them, and resuming would
    change its objective mid-run."""
    checkpoint = resume_checkpoint(cfg) if open_ends and not cfg.score_cut_ends else None
    if checkpoint and Path(checkpoint).is_dir() and not (Path(checkpoint) / CHECKPOINT_SCORING).exists():
        raise ValueError(f"config: {checkpoint} was saved before score_cut_ends existed: that run scored an end of "
                         "turn after the replies the data marks as cut. Set score_cut_ends: true to resume it as it "
                         "ran, or start a new output_dir")


def adaptive_callback(cfg, log, source, collator, val_items):
    """The adaptive lambda source's callback, restored from the checkpoint being resumed if any."""
    from .adaptive_lambda import STATE_FILE, AdaptiveLambdaCallback

    callback = AdaptiveLambdaCallback(source, collator, val_items, cfg.adaptive_every, cfg.adaptive_signal,
                                      log=log, batch_size=cfg.per_device_eval_batch_size,
                                      chunk_size=cfg.logprob_chunk_size, score_type=cfg.score_type)
    checkpoint = resume_checkpoint(cfg)
    if checkpoint and (Path(checkpoint) / STATE_FILE).exists():
        callback.load_state_dict(json.loads((Path(checkpoint) / STATE_FILE).read_text()))
    return callback


def _whole_weights(model):
    """DeepSpeed ZeRO-3 partitions the weights as the model loads (zero.Init); the reference needs
    them whole. Every process must enter this (the gather is a collective)."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)


def _check_zero3(layout: str) -> None:
    """Refuse, before the reference pass, a shared-prompt layout under DeepSpeed ZeRO-3 (see ZERO3_LAYOUT_ERROR)."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if layout != "naive" and is_deepspeed_zero3_enabled():
        raise ValueError(f"config: {ZERO3_LAYOUT_ERROR}")


def tokenize(cfg: LambdaDPOConfig, tokenizer, lists: list[PreferenceList], name: str,
             score_cut_ends: bool) -> tuple[list[TokenizedList], Any]:
    """`lists` tokenised under the config's lengths and truncation, with what was cut or rejected logged;
    (tokenised lists, `tokenization.TruncationReport`). Training and `lambda-dpo evaluate` call it."""
    tokenized, trunc = tokenize_lists(tokenizer, lists, cfg.max_prompt_length, cfg.max_response_length,
                                      skip_bad=True, truncation=cfg.truncation, score_cut_ends=score_cut_ends)
    logger.info("%s: %d lists tokenised; %d prompts and %d responses truncated; rejected: %s", name,
                len(tokenized), trunc.prompts_truncated, trunc.responses_truncated, dict(trunc.rejected) or "none")
    if trunc.open_ends:
        logger.info("%s: %d replies the data marks as cut mid-text are scored without an end of turn "
                    "(score_cut_ends: false)", name, trunc.open_ends)
    for reason, example in trunc.examples.items():
        logger.warning("rejected (%s), e.g. %s", reason, example)
    return tokenized, trunc


def set_up_layout(model, settings: ResolvedSettings) -> str:
    """The layout `settings` names, as `layouts` calls it, set up on `model`: a packed row attends by segment,
    installed before the reference pass (its cache key names the attention implementation)."""
    layout = choose_layout(model, settings.layout)
    _check_zero3(layout)
    if layout == "packed":
        logger.info("packed rows attend by segment (%s kernel; lambda_dpo.segment_attention)", install_segments(model))
    return layout


def build_collator(cfg: LambdaDPOConfig, settings: ResolvedSettings, tokenizer, source: LambdaSource,
                   layout: str, contrast: bool = True) -> ListCollator:
    """The collator for the resolved settings: their aspects, conditioning, lambda text and soft-prompt length.
    contrast=False: each list once, whatever `lambda_contrast` (evaluation, which passes its own lambdas)."""
    return ListCollator(tokenizer, settings.aspects, source, settings.conditioning, cfg.rating_temperature, layout,
                        settings.embedding_tokens or 0, settings.lambda_text, contrast and cfg.lambda_contrast,
                        cfg.contrast_candidates if contrast else 1)


def attach_embedding(cfg: LambdaDPOConfig, settings: ResolvedSettings, model, tokenizer) -> None:
    """The lambda embedding (conditioning "embedding"): the checkpoint's when resuming one, else a new one of
    `settings.embedding_tokens` vectors. After the reference pass: the reference never sees the soft prompt."""
    checkpoint = resume_checkpoint(cfg)
    if checkpoint and (Path(checkpoint) / EMBEDDING_FILE).exists():
        module = load_lambda_embedding(model, checkpoint)
        if (module.vertices is not None) != (cfg.embedding_init == "instructions"):
            raise ValueError(f"config: embedding_init={cfg.embedding_init!r}, but the checkpoint {checkpoint} "
                             "was trained with the other initialisation; resume with the setting it was "
                             "trained with (its config.yaml) or start a new output_dir")
        if module.n_tokens != settings.embedding_tokens:
            raise ValueError(f"config: embedding_tokens resolves to {settings.embedding_tokens}, but the checkpoint "
                             f"{checkpoint} has {module.n_tokens}; resume with the settings it was trained with "
                             "(its config.yaml) or start a new output_dir")
        return
    sentences = ([aspect_instruction(a, cfg.aspect_instructions) for a in settings.aspects]
                 if cfg.embedding_init == "instructions" else None)
    attach_lambda_embedding(model, tokenizer, len(settings.aspects), cfg.embedding_tokens, sentences)


def prepare(cfg: LambdaDPOConfig, model, tokenizer, train_data, eval_data=None,
            choice: ModelChoice | None = None) -> Prepared:
    """Lists, the policy, the settings that run (`settings.resolve_settings`, logged once), the reference
    log-probs (scored once, cached) and the collator for `cfg`, which is read and never written. `choice`:
    how the policy was chosen (`settings.load_policy`); None: read off `model`."""
    train_lists, eval_lists = as_lists(train_data, cfg, "training"), as_lists(eval_data, cfg, "eval")
    if not train_lists:
        raise ValueError("no usable training lists (see the rejection summary above)")
    aspects = tuple(cfg.aspects) if cfg.aspects else infer_aspects(train_lists)
    train_lists, eval_lists, scales = rescale_ratings(cfg, aspects, train_lists, eval_lists)
    choice = choice or choose_model(cfg, model)
    model = with_lora(model, cfg)
    if not getattr(cfg, "deepspeed", None):  # score the reference on the training device (DeepSpeed places it itself)
        model.to(cfg.device)
    tokenized = {}
    for name, lists in (("train", train_lists), ("eval", eval_lists)):
        tokenized[name], trunc = tokenize(cfg, tokenizer, lists, name, cfg.score_cut_ends)
        check_resume_scoring(cfg, trunc.open_ends)
    if not tokenized["train"]:
        raise ValueError("no training list survived tokenisation (see the rejections logged above)")
    settings = resolve_settings(cfg, choice, model, tokenizer, tokenized["train"], aspects, scales)
    logger.info("resolved settings (what runs; saved in lambda_dpo.json):\n%s", settings.describe())
    layout = set_up_layout(model, settings)
    # Reference before the first optimiser step: for full fine-tuning these are the initial weights.
    # With several processes the main one computes and caches it; the others then read the cache.
    # Under ZeRO-3 every process first gathers the partitioned weights.
    with _whole_weights(model), cfg.main_process_first(desc="reference log-probs"):
        train_items = score_reference(cfg, model, tokenized["train"], layout, "train", settings.model_dtype)
        eval_items = (score_reference(cfg, model, tokenized["eval"], layout, "eval", settings.model_dtype)
                      if tokenized["eval"] else [])
    source = build_lambda_source(cfg, aspects)
    if cfg.conditioning == "embedding":
        attach_embedding(cfg, settings, model, tokenizer)
    collator = build_collator(cfg, settings, tokenizer, source, layout)
    val_items = []
    if cfg.lambda_source == "adaptive":  # the adaptive source's signal comes from lists it never trains on
        val_items, train_items = train_items[-cfg.adaptive_val_lists:], train_items[:-cfg.adaptive_val_lists]
        train_items = [ScoredList(it.tokens, it.ref_logps, i) for i, it in enumerate(train_items)]
    return Prepared(model, collator, source, aspects, train_items, eval_items, val_items, scales, settings)
