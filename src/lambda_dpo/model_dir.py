"""What a lambda-dpo model directory contains: written by `train`, read by `generate`.

A directory saved by `lambda-dpo train` holds

    adapter_model.safetensors, adapter_config.json    the LoRA adapter (use_lora), or the full
        or model.safetensors, config.json             model's weights (use_lora: false)
    tokenizer files                                   the tokenizer and its chat template
    lambda_embedding.safetensors                      conditioning "embedding" only
                                                      (`conditioning.EMBEDDING_FILE`)
    config.yaml                                       every LambdaDPOConfig field of the run
    README.md                                         a model card: aspects, how to pass lambda
    lambda_dpo.json                                   `MODEL_META`: what `generate` needs

The Trainer writes the weights and tokenizer; this module writes and reads the last three. Each is
written atomically, lambda_dpo.json last, and it is removed before the weights are (re)written, so
its presence means the directory is complete.

lambda_dpo.json ("format": MODEL_FORMAT) keys: aspects (the order of lambda), conditioning,
lambda_header, lambda_text (`LambdaText.to_dict`, with every aspect's sentence as training rendered
it, so a later change of the library's default sentences cannot change what the model reads),
adapter (bool), base_model (as configured), base_model_path (resolved when trained), model_dtype,
loss_type, beta, score_type, lambda_source, rating_temperature, eval_metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import yaml

from .atomic import atomic_write_text
from .conditioning import LAMBDA_HEADER, LambdaText, aspect_instruction, format_lambda
from .lambdas import uniform_lambda
from .models import resolve_model_path

MODEL_META = "lambda_dpo.json"
MODEL_FORMAT = "lambda-dpo-model-v1"
CONFIG_FILE = "config.yaml"
MODEL_CARD = "README.md"


def with_every_sentence(text: LambdaText, aspects: Sequence[str]) -> LambdaText:
    """`text` with every aspect's sentence written out (the user's, else the default it renders today)."""
    return LambdaText(text.style, {a: aspect_instruction(a, text.instructions) for a in aspects}, text.order)


def model_meta(cfg, aspects: Sequence[str], eval_metrics: dict, lambda_text: LambdaText) -> dict:
    """The content of lambda_dpo.json for a run configured by `cfg` (a `LambdaDPOConfig`, read by
    attribute: this module sits below training/ and does not import it)."""
    return {"format": MODEL_FORMAT, "aspects": list(aspects), "conditioning": cfg.conditioning,
            "lambda_header": LAMBDA_HEADER, "lambda_text": with_every_sentence(lambda_text, aspects).to_dict(),
            "adapter": cfg.use_lora,
            "base_model": cfg.model_name_or_path, "base_model_path": resolve_model_path(cfg.model_name_or_path),
            "model_dtype": cfg.model_dtype, "loss_type": cfg.loss_type, "beta": cfg.beta,
            "score_type": cfg.score_type, "lambda_source": cfg.lambda_source,
            "rating_temperature": cfg.rating_temperature, "eval_metrics": eval_metrics}


def mark_incomplete(out: str | Path) -> None:
    """Remove lambda_dpo.json before the weights are (re)written: a directory without it is not a model."""
    (Path(out) / MODEL_META).unlink(missing_ok=True)


def write_model_files(out: str | Path, cfg, aspects: Sequence[str], eval_metrics: dict,
                      lambda_text: LambdaText) -> None:
    """config.yaml (the full run config), the model card and lambda_dpo.json, in that order.

    Each is written atomically; lambda_dpo.json last, so its presence means the directory is complete.
    """
    out = Path(out)
    meta = model_meta(cfg, aspects, eval_metrics, lambda_text)
    atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(_plain(cfg.lambda_dpo_fields()), sort_keys=False))
    atomic_write_text(out / MODEL_CARD, model_card(meta))
    atomic_write_text(out / MODEL_META, json.dumps(meta, indent=2))


def read_model_meta(model_dir: str | Path) -> dict:
    """lambda_dpo.json of `model_dir`; FileNotFoundError (saying what to do) when it is not a model directory."""
    model_dir = Path(model_dir)
    meta_path = model_dir / MODEL_META
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} not found: {model_dir} is not a lambda-dpo model directory "
                                "(train one with `lambda-dpo train CONFIG.yaml`)")
    return json.loads(meta_path.read_text())


def saved_dtype(meta: dict) -> str:
    """The dtype the model was trained in (files written before model_dtype existed: float32)."""
    return meta.get("model_dtype", "float32")


def base_model_source(meta: dict) -> str:
    """Where an adapter's base weights load from: the path resolved at training time if it still
    exists, else the configured name (resolved again on this machine)."""
    return meta["base_model_path"] if Path(meta["base_model_path"]).is_dir() else meta["base_model"]


def saved_lambda_text(meta: dict) -> LambdaText:
    """How lambda was written in training (files written before lambda_text existed: "weights")."""
    return LambdaText.from_dict(meta.get("lambda_text"))


def _plain(d: dict) -> dict:
    return {k: (v if isinstance(v, (str, int, float, bool, list, dict, type(None))) else str(v)) for k, v in d.items()}


def model_card(meta: dict) -> str:
    example = ",".join(f"{a}={w:.2f}" for a, w in uniform_lambda(meta["aspects"]).items())
    half = {a: (0.5 if i < 2 else 0.0) for i, a in enumerate(meta["aspects"])}
    shown = saved_lambda_text(meta).render(half).replace("\n", "\n    ")
    steer = {
        "prompt": "Pass lambda with `--lambda`; it is written into the system message exactly as in training "
                  f"(here for {format_lambda(half)}):\n\n    {shown}\n\n"
                  "Any serving stack can steer it by putting that text at the end of the system message (as the "
                  "whole system message when there is none).",
        "embedding": "Pass lambda with `--lambda`; it reaches the model as learned soft-prompt vectors "
                     "(`lambda_embedding.safetensors`), so steering needs lambda-dpo's `generate`, not plain text.",
    }.get(meta["conditioning"], "This model was trained without lambda conditioning: it represents one fixed "
                                "mixture, and lambda passed at inference has no effect.")
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in meta["eval_metrics"].items() if isinstance(v, float))
    return f"""---
library_name: {"peft" if meta["adapter"] else "transformers"}
base_model: {meta["base_model"]}
tags: [lambda-dpo, dpo, preference-alignment]
---
# lambda-DPO model

Trained with [lambda-dpo](https://github.com/) ({meta["loss_type"]}, beta={meta["beta"]},
scores: {meta["score_type"]} of response log-probs, lambda source: {meta["lambda_source"]}).

**Aspects** (the order of lambda): {", ".join(meta["aspects"])}

**Conditioning**: `{meta["conditioning"]}`. {steer}

```bash
lambda-dpo generate --model THIS_DIR --lambda {example} "Your prompt"
```

## Held-out metrics (implicit reward vs ratings, conditioned on each aspect's vertex)

| metric | value |
|---|---|
{metrics or "| (no eval split) | |"}
"""
