"""Held-out listwise figures of a saved model on any preference file (`lambda-dpo evaluate`).

The figures are those training reports on its eval lists (`evaluate_lists`: per aspect,
top-1 / NDCG / Kendall of the implicit reward s = log pi(y | x, c(e_k)) - log pi_ref(y | x) with the
policy conditioned on aspect k's vertex), computed with the run's own settings from the model
directory's config.yaml (lengths, truncation, layout, score type, lambda text), and the ratings rescaled
with the statistics training fitted (`rating_scale`, kept in lambda_dpo.json). The reference is
what training used: the adapter switched off for a LoRA model, the base checkpoint otherwise.
Beside them, the rating-blind picks (random, shortest, longest reply) on the same lists.

Top-1 at the vertices does not show whether lambda steers (a model that ignores its lambda text
can score as well: research/steering-study.md). With `steering=(a, b)`, Delta = log pi(y | x,
c(e_a)) - log pi(y | x, c(e_b)) on every reply (`lambda_deltas`) is summarised as mean |Delta| and
its within-list Spearman with r_a - r_b (`delta_summary`), for the model and for the untrained base
given exactly the same lambda text (steering by the prompt alone; prompt conditioning only).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
import yaml

from .batching import ListCollator
from .data import format_summary, load_lists, summarize
from .generation import load_steerable
from .lambdas import FixedLambda
from .saved_model import CONFIG_FILE, base_model_source, read_model_meta, saved_dtype, saved_rating_scales
from .models import load_model
from .precision import float32_label, upcast_to_float32
from .layouts import choose_layout
from .rating_scales import apply_rating_scales
from .segment_attention import install as install_segments
from .targets import ratings_tensor
from .tokenization import tokenize_lists
from .training.config import load_config
from .training.prepare import as_lists, score_reference
from .evaluation.listwise import evaluate_lists
from .evaluation.delta import BASELINE_KINDS, baseline_top1, delta_summary, lambda_deltas

logger = logging.getLogger(__name__)

__all__ = ["evaluate_saved", "prepare_saved"]


def prepare_saved(model_dir: str | Path, data: str | Path, *, reference_cache_dir: str | None = "auto",
                  dtype: str | None = None, max_lists: int | None = None):
    """(SteerableModel, collator, scored items, config, rejected {reason: count}) to score `data` with
    the model in `model_dir`, built as training builds its eval lists (arguments as in `evaluate_saved`)."""
    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    with warnings.catch_warnings():  # a model saved before `layout` existed names its layout by the old keys
        warnings.filterwarnings("ignore", "config: shared_prompt", FutureWarning)
        cfg = load_config(model_dir / CONFIG_FILE, reference_cache_dir=reference_cache_dir,
                          aspects=list(meta["aspects"]), skip_bad_records=True)
    cfg.model_dtype = saved_dtype(meta)
    if "score_cut_ends" not in yaml.safe_load((model_dir / CONFIG_FILE).read_text()):
        cfg.score_cut_ends = True  # saved before cut replies were read as such: scored as it was trained
    # fp32 scoring of a bf16/fp16 model: the weights it trained with, held in fp32 (as training's
    # eval_dtype: float32 does), not the checkpoint loaded afresh in fp32
    upcast = dtype == "float32" and cfg.model_dtype in ("bfloat16", "float16")
    if dtype and not upcast and dtype != cfg.model_dtype:
        raise ValueError(f"{model_dir} trained in {cfg.model_dtype}: it can be scored in that dtype or in float32, "
                         f"not {dtype}")
    sm = load_steerable(model_dir, trust_remote_code=cfg.trust_remote_code)
    if upcast:
        upcast_to_float32(sm.model)
    sm.model.to(cfg.device)  # where training scores: the GPU when there is one
    lists, report = load_lists(str(data), cfg.data_format, skip_bad=True)
    logger.info("evaluation data\n%s", format_summary(summarize(lists, report)))
    lists = as_lists(lists, cfg, str(data))[:max_lists]
    lists = apply_rating_scales(lists, saved_rating_scales(meta))  # the training data's scales, as training's eval
    tokenized, trunc = tokenize_lists(sm.tokenizer, lists, cfg.max_prompt_length, cfg.max_response_length,
                                      skip_bad=True, truncation=cfg.truncation, score_cut_ends=cfg.score_cut_ends)
    if trunc.open_ends:
        logger.info("%d replies the data marks as cut mid-text are scored without an end of turn", trunc.open_ends)
    if not tokenized:
        raise ValueError(f"{data}: no list left to evaluate (rejected: {dict(trunc.rejected) or 'none'}; "
                         f"the model's aspects: {', '.join(sm.aspects)})")
    layout = choose_layout(sm.model, cfg.layout, False)
    if layout == "packed":  # as training scored: by segment (prepare.py)
        install_segments(sm.model)
    # LoRA: reference_logps switches the adapter off; full weights: the checkpoint training started from
    reference = sm.model if meta["adapter"] else load_model(
        base_model_source(meta), dtype=cfg.model_dtype, trust_remote_code=cfg.trust_remote_code).eval().to(cfg.device)
    if upcast and reference is not sm.model:
        upcast_to_float32(reference)
    if layout == "packed":
        install_segments(reference)
    items = score_reference(cfg, reference, tokenized, layout, "eval",
                            dtype=float32_label(cfg.model_dtype) if upcast else None)
    del reference
    source = FixedLambda(sm.aspects)  # unused: the vertices are passed
    collator = ListCollator(sm.tokenizer, sm.aspects, source, sm.conditioning, cfg.rating_temperature, layout,
                            cfg.embedding_tokens, sm.lambda_text)
    if upcast:
        cfg.model_dtype = "float32"
    return sm, collator, items, cfg, dict(report.rejected + trunc.rejected)


def _steering_pair(steering, aspects) -> tuple[str, str]:
    """(a, b) from a pair or an "a,b" string; ValueError unless two different aspects of `aspects`."""
    pair = [p.strip() for p in steering.split(",")] if isinstance(steering, str) else list(steering)
    if len(pair) != 2 or pair[0] == pair[1] or any(x not in aspects for x in pair):
        raise ValueError(f"steering pair {','.join(map(str, pair))}: name two different aspects of the model "
                         f"({', '.join(aspects)})")
    return pair[0], pair[1]


def steering_summary(sm, collator, items, cfg, pair: tuple[str, str], batch_size: int,
                     model_dir: str | Path) -> dict:
    """{"pair": [a, b], "model": delta_summary, "base": delta_summary or None, "base_note": str}
    for Delta between the vertices of aspects a and b on `items` (module docstring)."""
    a, b = pair
    ratings, mask = ratings_tensor([it.tokens.source for it in items], sm.aspects)
    r_a, r_b = ratings[..., sm.aspects.index(a)], ratings[..., sm.aspects.index(b)]

    def summary(model) -> dict:
        delta = lambda_deltas(model, collator, items, {a: 1.0}, {b: 1.0}, batch_size=batch_size,
                              chunk_size=cfg.logprob_chunk_size)
        return delta_summary(delta, r_a, r_b, mask)

    out = {"pair": [a, b], "model": summary(sm.model), "base": None, "base_note": ""}
    if sm.conditioning == "none":
        out["base_note"] = "conditioning 'none': the model never sees lambda, so Delta is 0 by construction"
    elif sm.conditioning != "prompt":
        out["base_note"] = f"no base comparison for conditioning {sm.conditioning!r} (the base model reads no soft prompt)"
    elif hasattr(sm.model, "disable_adapter"):
        with sm.model.disable_adapter():
            out["base"] = summary(sm.model)
    else:  # full weights: the checkpoint training started from
        meta = read_model_meta(model_dir)
        base = load_model(base_model_source(meta), dtype=saved_dtype(meta),
                          trust_remote_code=cfg.trust_remote_code).eval().to(cfg.device)
        if cfg.model_dtype == "float32" and saved_dtype(meta) != "float32":  # scored in fp32 (`dtype`)
            upcast_to_float32(base)
        out["base"] = summary(base)
    return out


def evaluate_saved(model_dir: str | Path, data: str | Path, *, batch_size: int | None = None,
                   reference_cache_dir: str | None = "auto", dtype: str | None = None,
                   max_lists: int | None = None, steering: tuple[str, str] | None = None) -> dict:
    """Listwise figures of the model saved in `model_dir` on the lists of `data`.

    Args:
        model_dir: a directory written by `lambda-dpo train` (adapter or full weights).
        data: a preference file in any format `load_lists` reads; bad records are skipped and
            counted (``rejected``), aspects the model was not trained on are ignored.
        batch_size: lists per scoring batch (default: the run's per_device_eval_batch_size; in bf16
            the figures move with the batch's padding, so keep the run's to reproduce it).
        reference_cache_dir: where reference log-probs are cached ("auto": the package cache;
            None: not cached).
        dtype: None (the dtype the model trained in) or "float32": a bf16/fp16-trained model's own
            weights held in fp32 for policy and reference, as training's `eval_dtype: float32`
            scores it; bf16 implicit rewards move with the batch's padding (`research/eval_noise.py`).
        max_lists: score only the first lists of `data` (training's `max_eval_lists`).
        steering: two of the model's aspects, (a, b) or "a,b": adds ``"steering"`` (`steering_summary`): how
            much and in which direction moving lambda from b's vertex to a's changes each reply's
            log-prob, for the model and for the base model given the same text.

    Returns ``{"metrics": {aspect/top1, /ndcg, /kendall, mean/...}, "baselines": {kind: {aspect/top1}},
    "n_lists": int, "rejected": {reason: count}, "aspects": [...], "model_dir", "data", "dtype"}``,
    plus ``"steering"`` when `steering` is given.
    """
    if steering is not None:  # checked before anything is loaded or scored
        steering = _steering_pair(steering, read_model_meta(model_dir)["aspects"])
    sm, collator, items, cfg, rejected = prepare_saved(model_dir, data, reference_cache_dir=reference_cache_dir,
                                                       dtype=dtype, max_lists=max_lists)
    metrics = evaluate_lists(sm.model, collator, items, batch_size=batch_size or cfg.per_device_eval_batch_size,
                             chunk_size=cfg.logprob_chunk_size,
                             score_type=cfg.score_type)
    ratings, mask = ratings_tensor([it.tokens.source for it in items], sm.aspects)
    sources = [it.tokens.source for it in items]
    baselines = {kind: {f"{a}/top1": torch.nanmean(baseline_top1(sources, ratings[..., k], mask, kind).double()).item()
                        for k, a in enumerate(sm.aspects)} for kind in BASELINE_KINDS}
    extra = {"steering": steering_summary(sm, collator, items, cfg, steering,
                                          batch_size or cfg.per_device_eval_batch_size, model_dir)} if steering else {}
    return {"metrics": metrics, "baselines": baselines, "n_lists": len(items), "aspects": list(sm.aspects), **extra,
            "rejected": rejected, "model_dir": str(model_dir), "data": str(data), "dtype": cfg.model_dtype}
