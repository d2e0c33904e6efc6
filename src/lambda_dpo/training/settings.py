"""What a run runs: the user's config plus the machine and the data, resolved once into a frozen record.

`LambdaDPOConfig` is what was asked, `auto` values included, and nothing writes into it. What those
values become (docs/design.md, "Settings resolved once"):

- `choose_model` / `load_policy`, before the model loads: its name, dtype and attention kernel, each
  with the reason (`precision.resolve_model_dtype`, `resolve_attn_implementation`); for a model the
  caller loaded, what that model is. `load_policy` is the one place a policy is loaded by name
  (`LambdaDPOTrainer`, and through it `lambda-dpo train` and the demo).
- `resolve_settings`, once the training lists are tokenised: `ResolvedSettings`, the whole record
  (layout, aspects, lambda text with every sentence, embedding tokens, rating scales, eval dtype, ...).
  `training.prepare` logs it once as one block (`describe`) before the reference pass, the Trainer
  keeps it (`LambdaDPOTrainer.resolved`) and `saved_model` writes it into lambda_dpo.json (the keys
  loaders read at the top level, as before; the others under "resolved").
- `saved_settings`: the record of a saved model directory, for `lambda-dpo evaluate`; directories
  written before the record existed (format v1) are read from lambda_dpo.json and config.yaml, which
  then held the resolved layout, kernel and embedding length.
"""

from __future__ import annotations

import dataclasses
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..conditioning import LambdaText, aspect_instruction, embedding_length
from ..layouts import PACKED_AUTO_MAX_TOKENS, as_option, choose_layout
from ..models import load_model, load_tokenizer
from ..precision import resolve_attn_implementation, resolve_model_dtype
from ..rating_scales import describe_rating_scales
from ..saved_model import (CONFIG_FILE, read_model_meta, saved_dtype, saved_lambda_text, saved_rating_scales,
                           saved_resolved, with_every_sentence)
from .config import LambdaDPOConfig, load_config


@dataclass(frozen=True)
class ModelChoice:
    """The policy's name, dtype and attention kernel, each with why (for the settings block)."""

    name: str
    dtype: str
    dtype_why: str
    attn_implementation: str | None
    attn_why: str


def choose_model(cfg: LambdaDPOConfig, model: Any = None) -> ModelChoice:
    """What to load for `model` (None: the config's model_name_or_path; a str: that name), from the config
    and the device; for a model the caller loaded, what it is (its name, its weights' dtype under
    `model_dtype: auto`, its kernel)."""
    if model is None or isinstance(model, str):
        dtype, dtype_why = resolve_model_dtype(cfg.model_dtype, cfg.device, trains_base_weights=not cfg.use_lora)
        if dtype != "float32" and cfg.use_lora:
            dtype_why += "; LoRA weights, optimiser states, log-softmax and loss in fp32, products under autocast"
        attn, attn_why = resolve_attn_implementation(cfg.attn_implementation, dtype, cfg.device,
                                                     cfg.max_prompt_length + cfg.max_response_length)
        return ModelChoice(model or cfg.model_name_or_path, dtype, dtype_why, attn, attn_why)
    name = getattr(model.config, "_name_or_path", None) or cfg.model_name_or_path  # the saved model names its base
    if cfg.model_dtype == "auto":
        dtype, dtype_why = str(next(model.parameters()).dtype).removeprefix("torch."), "auto: the model passed in"
    else:
        dtype, dtype_why = cfg.model_dtype, "set in the config (the model was passed in)"
    return ModelChoice(name, dtype, dtype_why, getattr(model.config, "_attn_implementation", None),
                       "the model passed in")


def load_policy(cfg: LambdaDPOConfig, model: Any = None, tokenizer: Any = None) -> tuple[Any, Any, ModelChoice]:
    """(model, tokenizer, choice): the model `model` names (or the config's) loaded in the dtype and with the
    kernel `choose_model` picks, or `model` itself when it is already loaded; the tokenizer from the same
    name when none is given. `trust_remote_code` reaches both loaders from here alone."""
    choice = choose_model(cfg, model)
    if model is None or isinstance(model, str):
        model = load_model(choice.name, dtype=choice.dtype, trust_remote_code=cfg.trust_remote_code,
                           attn_implementation=choice.attn_implementation)
    if tokenizer is None:
        tokenizer = load_tokenizer(choice.name, trust_remote_code=cfg.trust_remote_code)
    return model, tokenizer, choice


@dataclass(frozen=True)
class ResolvedSettings:
    """What runs, as opposed to what was asked: no value here is `auto`. `layout` is a value of the
    `layout` option; `lambda_text` has every aspect's sentence written out; `embedding_tokens` is None
    without embedding conditioning; `rating_scale` is each aspect's scale as fitted on the training lists;
    `eval_dtype` is the dtype held-out lists are scored in."""

    base_model: str
    model_dtype: str
    model_dtype_why: str
    attn_implementation: str | None
    attn_implementation_why: str
    layout: str
    layout_why: str
    aspects: tuple[str, ...]
    conditioning: str
    lambda_text: LambdaText
    embedding_tokens: int | None
    rating_scale: Mapping[str, Mapping]
    eval_dtype: str
    device: str | None

    def as_dict(self) -> dict:
        """Plain JSON values (what `saved_model.model_meta` writes into lambda_dpo.json)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**out, "aspects": list(self.aspects), "lambda_text": self.lambda_text.to_dict(),
                "rating_scale": {a: dict(s) for a, s in self.rating_scale.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "ResolvedSettings":
        return cls(**{**d, "aspects": tuple(d["aspects"]), "lambda_text": LambdaText.from_dict(d["lambda_text"]),
                      "rating_scale": {a: dict(s) for a, s in d["rating_scale"].items()}})

    def describe(self) -> str:
        """The block logged once at the start of a run: one line per setting, with why where there is a choice."""
        text = self.lambda_text
        lines = [f"base_model: {self.base_model}", f"model_dtype: {self.model_dtype} ({self.model_dtype_why})",
                 f"attn_implementation: {self.attn_implementation} ({self.attn_implementation_why})",
                 f"layout: {self.layout} ({self.layout_why})", f"aspects: {', '.join(self.aspects)}",
                 f"conditioning: {self.conditioning}",
                 f"lambda_text: {text.style}, lines in {text.order} order" if self.conditioning == "prompt" else None,
                 f"embedding_tokens: {self.embedding_tokens}" if self.embedding_tokens is not None else None,
                 "rating_scale: " + ("; ".join(describe_rating_scales(self.rating_scale).splitlines()) or "as_is"),
                 f"eval_dtype: {self.eval_dtype}", f"device: {self.device}"]
        return "\n".join("  " + line for line in lines if line is not None)


def scoring_dtype(requested: str, model_dtype: str) -> str:
    """The dtype held-out lists are scored in: fp32 for `eval_dtype: float32` with bf16/fp16 weights, else
    the model's."""
    return "float32" if requested == "float32" and model_dtype in ("bfloat16", "float16") else model_dtype


def _layout(cfg: LambdaDPOConfig, model, tokenized_train: Sequence) -> tuple[str, str]:
    """(the layout option that runs, why), as `layouts.choose_layout` picks it for the training lists."""
    row_tokens = statistics.median(len(tl.prompt_ids) + sum(map(len, tl.response_ids)) for tl in tokenized_train)
    layout = as_option(choose_layout(model, cfg.layout, cfg.gradient_checkpointing, row_tokens))
    if layout == cfg.layout:
        return layout, "set in the config"
    if layout == "per_response":  # choose_layout's fallback
        return layout, f"{cfg.layout}: the shared-prompt layouts are not verified for this architecture"
    if layout == "packed" and row_tokens > PACKED_AUTO_MAX_TOKENS:
        return layout, "auto: gradient checkpointing, which drops the prompt's key/value cache"
    return layout, (f"auto: a training list's prompt and responses: median {row_tokens:g} tokens, packed into one "
                    f"row by `auto` up to {PACKED_AUTO_MAX_TOKENS}")


def resolve_settings(cfg: LambdaDPOConfig, choice: ModelChoice, model, tokenizer, tokenized_train: Sequence,
                     aspects: Sequence[str], rating_scales: Mapping[str, Mapping]) -> ResolvedSettings:
    """The record of what runs for `cfg` on this machine, with the policy `model` (LoRA-wrapped, on its device)
    that `choice` describes, its tokenizer, the tokenised training lists and the rating scales fitted on them."""
    layout, layout_why = _layout(cfg, model, tokenized_train)
    n_prefix = None
    if cfg.conditioning == "embedding":  # instruction sentences longer than embedding_tokens set the length
        sentences = ([aspect_instruction(a, cfg.aspect_instructions) for a in aspects]
                     if cfg.embedding_init == "instructions" else None)
        n_prefix = embedding_length(tokenizer, cfg.embedding_tokens, sentences)
    text = with_every_sentence(LambdaText(cfg.lambda_text, dict(cfg.aspect_instructions or {}), cfg.lambda_text_order),
                               aspects)
    return ResolvedSettings(choice.name, choice.dtype, choice.dtype_why, choice.attn_implementation, choice.attn_why,
                            layout, layout_why, tuple(aspects), cfg.conditioning, text, n_prefix,
                            {a: dict(s) for a, s in rating_scales.items()}, scoring_dtype(cfg.eval_dtype, choice.dtype),
                            str(cfg.device))


def saved_config(model_dir: str | Path, **overrides) -> LambdaDPOConfig:
    """The run's config.yaml (with `overrides`); a model saved before `score_cut_ends` existed scored an end of
    turn after cut replies, so it reads as score_cut_ends: true."""
    path = Path(model_dir) / CONFIG_FILE
    if "score_cut_ends" not in (yaml.safe_load(path.read_text()) or {}):
        overrides = {"score_cut_ends": True, **overrides}
    with warnings.catch_warnings():  # a model saved before `layout` existed names its layout by the old keys
        warnings.filterwarnings("ignore", "config: shared_prompt", FutureWarning)
        return load_config(path, **overrides)


def saved_settings(model_dir: str | Path, cfg: LambdaDPOConfig | None = None) -> ResolvedSettings:
    """The resolved settings of a saved model (format v2: `saved_model.saved_resolved`); for format v1, what
    lambda_dpo.json and the config.yaml of that time (`cfg`, else read here) held: config.yaml then named the
    layout, kernel and embedding length that ran (one saved before the layout was recorded says `auto`, which
    `layouts.choose_layout` decides again, as it did then)."""
    meta = read_model_meta(model_dir)
    if saved_resolved(meta) is not None:
        return ResolvedSettings.from_dict(saved_resolved(meta))
    cfg = cfg or saved_config(model_dir)
    dtype, v1 = saved_dtype(meta), "as saved (lambda_dpo.json format v1)"
    attn = None if cfg.attn_implementation == "auto" else cfg.attn_implementation
    return ResolvedSettings(meta["base_model"], dtype, v1, attn, v1 if attn else "transformers' default", cfg.layout,
                            v1, tuple(meta["aspects"]), meta["conditioning"],
                            saved_lambda_text(meta),
                            cfg.embedding_tokens if meta["conditioning"] == "embedding" else None,
                            saved_rating_scales(meta), scoring_dtype(cfg.eval_dtype, dtype), None)
