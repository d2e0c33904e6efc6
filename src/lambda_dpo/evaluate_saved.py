"""Held-out listwise figures of a saved model on any preference file (`lambda-dpo evaluate`).

The figures are those training reports on its eval lists (`evaluate_lists`: per aspect,
top-1 / NDCG / Kendall of the implicit reward s = log pi(y | x, c(e_k)) - log pi_ref(y | x) with the
policy conditioned on aspect k's vertex), computed by training's own steps (`training.prepare`:
tokenise, lay out, score the reference, collate) with the run's options from the model directory's
config.yaml (lengths, truncation, score type) and what ran from the resolved settings in lambda_dpo.json
(`training.settings.saved_settings`: dtype, attention kernel, layout, lambda text, embedding length, the
rating scales training fitted). The reference is
what training used: the adapter switched off for a LoRA model, the base checkpoint otherwise.
Beside them, the rating-blind picks (random, shortest, longest reply) on the same lists.

Top-1 at the vertices does not show whether lambda steers (a model that ignores its lambda text
can score as well: research/steering-study.md). With `steering=(a, b)`, Delta = log pi(y | x,
c(e_a)) - log pi(y | x, c(e_b)) on every reply (`lambda_deltas`) is summarised as mean |Delta| and
its within-list Spearman with r_a - r_b (`delta_summary`), for the model and for the untrained base
given exactly the same lambda text (steering by the prompt alone; prompt conditioning only).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch

from .batching import ListCollator, ScoredList
from .data import format_summary, load_lists, summarize
from .generation import SteerableModel, load_steerable
from .lambdas import FixedLambda
from .saved_model import base_model_source, read_model_meta
from .models import load_model
from .precision import float32_label, upcast_to_float32
from .rating_scales import apply_rating_scales
from .targets import ratings_tensor
from .training.prepare import as_lists, build_collator, score_reference, set_up_layout, tokenize
from .training.settings import ResolvedSettings, saved_config, saved_settings
from .evaluation.listwise import evaluate_lists
from .evaluation.delta import BASELINE_KINDS, baseline_top1, delta_summary, lambda_deltas

logger = logging.getLogger(__name__)

__all__ = ["evaluate_saved", "prepare_saved", "saved_scoring"]


class SavedScoring(NamedTuple):
    """A saved model ready to score a file's lists: `prepare_saved` gives the first five; `settings` are the
    run's resolved settings with `eval_dtype` the dtype this evaluation scores in."""

    model: SteerableModel
    collator: ListCollator
    items: list[ScoredList]
    cfg: Any  # the run's config.yaml as a LambdaDPOConfig (what was asked), never written to
    rejected: dict
    settings: ResolvedSettings


def load_reference(meta: dict, sm, settings: ResolvedSettings, cfg, upcast: bool):
    """The reference training used: the policy itself for an adapter (`reference_logps` switches it off), else
    the checkpoint training started from, loaded as training loaded it (dtype, kernel), held in fp32 when
    `upcast`."""
    if meta["adapter"]:
        return sm.model
    reference = load_model(base_model_source(meta), dtype=settings.model_dtype, trust_remote_code=cfg.trust_remote_code,
                           attn_implementation=settings.attn_implementation).eval().to(cfg.device)
    if upcast:
        upcast_to_float32(reference)
    return reference


def _check_dtype(model_dir, settings: ResolvedSettings, dtype: str | None) -> bool:
    """Whether `dtype` asks for fp32 scoring of a bf16/fp16 model (its own weights held in fp32, as training's
    eval_dtype: float32 does, not the checkpoint loaded afresh in fp32); ValueError for any other dtype."""
    upcast = dtype == "float32" and settings.model_dtype in ("bfloat16", "float16")
    if dtype and not upcast and dtype != settings.model_dtype:
        raise ValueError(f"{model_dir} trained in {settings.model_dtype}: it can be scored in that dtype or in "
                         f"float32, not {dtype}")
    return upcast


def saved_scoring(model_dir: str | Path, data: str | Path, *, reference_cache_dir: str | None = "auto",
                  dtype: str | None = None, max_lists: int | None = None) -> SavedScoring:
    """`data` scored with the model in `model_dir` by training's own steps (`training.prepare`: tokenise, set
    up the layout, score the reference, build the collator) under the run's saved settings
    (`training.settings.saved_settings`); arguments as in `evaluate_saved`."""
    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    cfg = saved_config(model_dir, reference_cache_dir=reference_cache_dir, aspects=list(meta["aspects"]),
                       skip_bad_records=True)
    settings = saved_settings(model_dir, cfg)
    upcast = _check_dtype(model_dir, settings, dtype)
    sm = load_steerable(model_dir, trust_remote_code=cfg.trust_remote_code,
                        attn_implementation=settings.attn_implementation)
    if upcast:
        upcast_to_float32(sm.model)
    sm.model.to(cfg.device)  # where training scores: the GPU when there is one
    lists, report = load_lists(str(data), cfg.data_format, skip_bad=True)
    logger.info("evaluation data\n%s", format_summary(summarize(lists, report)))
    lists = as_lists(lists, cfg, str(data))[:max_lists]
    lists = apply_rating_scales(lists, settings.rating_scale)  # the training data's scales, as training's eval
    tokenized, trunc = tokenize(cfg, sm.tokenizer, lists, "eval", cfg.score_cut_ends)
    if not tokenized:
        raise ValueError(f"{data}: no list left to evaluate (rejected: {dict(trunc.rejected) or 'none'}; "
                         f"the model's aspects: {', '.join(sm.aspects)})")
    layout = set_up_layout(sm.model, settings)
    reference = load_reference(meta, sm, settings, cfg, upcast)
    if reference is not sm.model:
        set_up_layout(reference, settings)
    items = score_reference(cfg, reference, tokenized, layout, "eval",
                            float32_label(settings.model_dtype) if upcast else settings.model_dtype)
    del reference
    collator = build_collator(cfg, settings, sm.tokenizer, FixedLambda(sm.aspects), layout, contrast=False)
    settings = dataclasses.replace(settings, eval_dtype="float32" if upcast else settings.model_dtype)
    return SavedScoring(sm, collator, items, cfg, dict(report.rejected + trunc.rejected), settings)


def prepare_saved(model_dir: str | Path, data: str | Path, *, reference_cache_dir: str | None = "auto",
                  dtype: str | None = None, max_lists: int | None = None):
    """(SteerableModel, collator, scored items, the run's config, rejected {reason: count}) to score `data` with
    the model in `model_dir`, built as training builds its eval lists (`saved_scoring`, which also gives the
    settings)."""
    return tuple(saved_scoring(model_dir, data, reference_cache_dir=reference_cache_dir, dtype=dtype,
                               max_lists=max_lists))[:5]


def _steering_pair(steering, aspects) -> tuple[str, str]:
    """(a, b) from a pair or an "a,b" string; ValueError unless two different aspects of `aspects`."""
    pair = [p.strip() for p in steering.split(",")] if isinstance(steering, str) else list(steering)
    if len(pair) != 2 or pair[0] == pair[1] or any(x not in aspects for x in pair):
        raise ValueError(f"steering pair {','.join(map(str, pair))}: name two different aspects of the model "
                         f"({', '.join(aspects)})")
    return pair[0], pair[1]


def steering_summary(sm, collator, items, cfg, pair: tuple[str, str], batch_size: int,
                     model_dir: str | Path, settings: ResolvedSettings) -> dict:
    """{"pair": [a, b], "model": delta_summary, "base": delta_summary or None, "base_note": str}
    for Delta between the vertices of aspects a and b on `items` (module docstring). `settings`: the
    evaluation's (`saved_scoring`: eval_dtype is the dtype it scores in)."""
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
        out["base"] = summary(load_reference(read_model_meta(model_dir), sm, settings, cfg,
                                             upcast=settings.eval_dtype != settings.model_dtype))
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
    sm, collator, items, cfg, rejected, settings = saved_scoring(
        model_dir, data, reference_cache_dir=reference_cache_dir, dtype=dtype, max_lists=max_lists)
    metrics = evaluate_lists(sm.model, collator, items, batch_size=batch_size or cfg.per_device_eval_batch_size,
                             chunk_size=cfg.logprob_chunk_size,
                             score_type=cfg.score_type)
    ratings, mask = ratings_tensor([it.tokens.source for it in items], sm.aspects)
    sources = [it.tokens.source for it in items]
    baselines = {kind: {f"{a}/top1": torch.nanmean(baseline_top1(sources, ratings[..., k], mask, kind).double()).item()
                        for k, a in enumerate(sm.aspects)} for kind in BASELINE_KINDS}
    extra = ({"steering": steering_summary(sm, collator, items, cfg, steering,
                                           batch_size or cfg.per_device_eval_batch_size, model_dir, settings)}
             if steering else {})
    return {"metrics": metrics, "baselines": baselines, "n_lists": len(items), "aspects": list(sm.aspects), **extra,
            "rejected": rejected, "model_dir": str(model_dir), "data": str(data), "dtype": settings.eval_dtype}


def format_evaluation(result: dict) -> str:
    """`evaluate_saved`'s result as text: top-1 / NDCG / Kendall per aspect beside the baselines' top-1, then the
    steering figures when measured."""
    rejected = f" (rejected: {result['rejected']})" if result["rejected"] else ""
    kinds, m = list(result["baselines"]), result["metrics"]
    lines = [f"{result['n_lists']} lists of {result['data']}{rejected}",
             f"{'aspect':<24} {'top1':>6} {'ndcg':>6} {'kendall':>8}  " + " ".join(f"{k + ' top1':>14}" for k in kinds)]
    for a in [*result["aspects"], "mean"]:
        if f"{a}/top1" not in m:
            continue
        picks = " ".join(f"{result['baselines'][k].get(f'{a}/top1', float('nan')):>14.3f}" for k in kinds) \
            if a != "mean" else ""
        lines.append(f"{a:<24} {m[f'{a}/top1']:>6.3f} {m[f'{a}/ndcg']:>6.3f} {m[f'{a}/kendall']:>8.3f}  {picks}")
    if "steering" in result:
        st = result["steering"]
        a, b = st["pair"]
        lines.append(f"\nDelta = log pi(y | x, {a} vertex) - log pi(y | x, {b} vertex), per reply:")
        for who, fig in (("model", st["model"]), ("base model, same lambda text", st["base"])):
            lines.append(f"  {who}: {st['base_note']}" if fig is None else
                         f"  {who}: mean |Delta| {fig['mean_abs_delta']:.3f} nats, Spearman with "
                         f"r_{a} - r_{b} {fig['spearman']:.3f} ({fig['lists']} lists)")
    return "\n".join(lines)
